"""Atari: rltasks against SB3 at the same settings, and the replay buffer's memory.

    .venv/bin/python bench/atari.py [--env PongNoFrameskip-v4] [--ppo-rollouts 3]
        [--dqn-steps 6000] [--replay 100000] [--env-steps 8000]
        [--parts envs ppo dqn replay] [--vectorizations ale envpool]
        [--precisions float32 bfloat16]

- **envs**: 8 envs stepped with random actions, preprocessing included: rltasks' loader on
  ale-py's vector env and on EnvPool's against SB3's ``make_atari_env`` + ``VecFrameStack``.
- **ppo**: CleanRL's ``ppo_atari.py`` settings (8 envs, 128 steps, 4 epochs of minibatch 256,
  lr 2.5e-4, clip 0.1, entropy 0.01), Nature CNN. rltasks runs ale-py's C++ vector env
  (``vectorization='ale'``) and EnvPool's (``'envpool'``); SB3 its ``make_atari_env``
  (gymnasium's env with SB3's ``AtariWrapper``) in a ``DummyVecEnv`` with
  ``VecFrameStack(4)``: the same preprocessing.
  Env steps per second of the whole training (rollouts and updates), same number of steps,
  in one epoch (a reset-mode Atari run resets its games every epoch, as SB3 does once: 0.55 s
  for 8 games, 2% of an epoch of 8,192 steps).
- **dqn**: rl-zoo3's Atari set with a 10k buffer (1 env, an update every 4 steps, batch 32,
  target every 1,000, lr 1e-4), learning from step 1,000: env steps per second.
- **replay**: ``--replay`` Atari-shaped transitions (4 x 84 x 84 uint8, an episode every
  ~1,000 steps) in rltasks' frame-sharing buffer: bytes per transition against a buffer
  that stores both stacks (SB3's default) and SB3's ``optimize_memory_usage`` (one stack),
  and the time and size of writing that full buffer as a checkpoint, with the peak memory
  the write allocates (tracemalloc) against building the file's bytes in memory first and
  writing them (the baseline, in the same run), and the time and peak of loading it.

One torch thread; the ratios are against SB3 measured in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import torch

import rltasks
from rltasks import checkpoint
from rltasks.buffers import ReplayBuffer
from rltasks.envs import VecLoader, check_env_id

PPO = {"n_steps": 128, "batch_size": 256, "update_epochs": 4, "lr": 2.5e-4, "clip_range": 0.1,
       "ent_coef": 0.01, "vf_coef": 0.5, "max_grad_norm": 0.5, "gamma": 0.99,
       "gae_lambda": 0.95}
DQN = {"buffer_size": 10_000, "learning_starts": 1000, "train_freq": 4, "gradient_steps": 1,
       "batch_size": 32, "target_update": 1000, "lr": 1e-4, "eps_decay": 10_000,
       "eps_min": 0.01, "double": False, "n_step": 1}


def ppo_rltasks(env: str, rollouts: int, vectorization: str, precision: str) -> float:
    task = rltasks.make_task("ppo", env=env, num_envs=8, seed=0, vectorization=vectorization,
                             steps_per_epoch=rollouts * 8 * PPO["n_steps"]
                             ).init(**PPO, precision=precision)
    start = time.perf_counter()
    task.fit(1)
    seconds = time.perf_counter() - start
    task.close()
    return task.env_steps / seconds


def ppo_sb3(env: str, rollouts: int) -> float:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    venv = VecFrameStack(make_atari_env(env, n_envs=8, seed=0), 4)
    model = SB3PPO("CnnPolicy", venv, n_steps=PPO["n_steps"], batch_size=PPO["batch_size"],
                   n_epochs=PPO["update_epochs"], learning_rate=PPO["lr"],
                   clip_range=PPO["clip_range"], ent_coef=PPO["ent_coef"],
                   vf_coef=PPO["vf_coef"], max_grad_norm=PPO["max_grad_norm"],
                   gamma=PPO["gamma"], gae_lambda=PPO["gae_lambda"], seed=0, verbose=0,
                   device="cpu")
    steps = rollouts * 8 * PPO["n_steps"]
    start = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - start)


def dqn_rltasks(env: str, steps: int, vectorization: str, precision: str) -> float:
    task = rltasks.make_task("dqn", env=env, num_envs=1, seed=0, vectorization=vectorization,
                             steps_per_epoch=steps).init(**DQN, precision=precision)
    start = time.perf_counter()
    task.fit(1)
    seconds = time.perf_counter() - start
    task.close()
    return steps / seconds


def dqn_sb3(env: str, steps: int) -> float:
    from stable_baselines3 import DQN as SB3DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    venv = VecFrameStack(make_atari_env(env, n_envs=1, seed=0), 4)
    model = SB3DQN("CnnPolicy", venv, buffer_size=DQN["buffer_size"],
                   learning_starts=DQN["learning_starts"], train_freq=DQN["train_freq"],
                   gradient_steps=DQN["gradient_steps"], batch_size=DQN["batch_size"],
                   target_update_interval=DQN["target_update"], learning_rate=DQN["lr"],
                   exploration_fraction=DQN["eps_decay"] / steps,
                   exploration_final_eps=DQN["eps_min"], seed=0, verbose=0, device="cpu")
    start = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - start)


def env_steps(env: str, steps: int, vectorization: str | None) -> float:
    """Env steps per second of 8 envs under random actions, preprocessing included: the
    loader of ``vectorization``, or (None) SB3's ``make_atari_env`` + ``VecFrameStack``."""
    rng = np.random.default_rng(0)
    if vectorization is None:
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        venv = VecFrameStack(make_atari_env(env, n_envs=8, seed=0), 4)
        venv.reset()
        act, step = venv.action_space.n, venv.step
    else:
        venv = VecLoader(env, 8, vectorization)
        venv.reset(0)
        act, step = venv.single_action_space.n, venv.step
    start = time.perf_counter()
    for _ in range(steps // 8):
        step(rng.integers(act, size=8))
    seconds = time.perf_counter() - start
    venv.close()
    return steps / seconds


def replay(n: int) -> dict[str, float]:
    """Fill a frame-sharing buffer with ``n`` Atari-shaped transitions; its bytes per
    transition and the time and size of its checkpoint."""
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(n, (4, 84, 84), (), np.int64, 1, obs_dtype=np.uint8, frames=4)
    stack = [rng.integers(0, 256, (84, 84), np.uint8) for _ in range(4)]
    start = time.perf_counter()
    for _ in range(n):
        obs = np.stack(stack)[None]
        done = rng.random() < 1e-3
        stack = stack[1:] + [rng.integers(0, 256, (84, 84), np.uint8)]
        nxt = np.stack(stack)[None]
        buf.add(obs, np.zeros(1, np.int64), np.zeros(1, np.float32), nxt, np.array([done]),
                np.array([done]))
        if done:
            stack = [rng.integers(0, 256, (84, 84), np.uint8) for _ in range(4)]
    fill = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "buffer.ckpt"
        write, write_peak = traced(lambda: checkpoint.save(path, buf.state_dict()))
        size = os.path.getsize(path)
        whole, whole_peak = traced(lambda: in_memory_save(Path(tmp) / "whole.ckpt",
                                                          buf.state_dict()))
        read, read_peak = traced(lambda: checkpoint.load(path))
    stack_bytes = 4 * 84 * 84
    return {"transitions": n, "bytes_per_transition": buf.store.nbytes() / n,
            "both_stacks": 2 * stack_bytes, "one_stack": stack_bytes,
            "fill_us_per_transition": fill / n * 1e6, "checkpoint_seconds": write,
            "checkpoint_mb": size / 2**20, "write_peak_mb": write_peak / 2**20,
            "whole_seconds": whole, "whole_peak_mb": whole_peak / 2**20,
            "load_seconds": read, "load_peak_mb": read_peak / 2**20}


def traced(work: Callable[[], object]) -> tuple[float, int]:
    """Seconds ``work`` takes and the peak bytes it allocates (numpy and python objects)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        work()
        return time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def in_memory_save(path: Path, state: dict) -> None:
    """The baseline: the same file, its bytes built whole in memory, then written."""
    payload = checkpoint.encode(state)
    data = msgpack.packb({"format": checkpoint.FORMAT, "payload": payload,
                          "sha256": hashlib.sha256(payload).hexdigest()})
    checkpoint.write_atomic(path, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="PongNoFrameskip-v4")
    parser.add_argument("--ppo-rollouts", type=int, default=3)
    parser.add_argument("--dqn-steps", type=int, default=6000)
    parser.add_argument("--replay", type=int, default=100_000)
    parser.add_argument("--env-steps", type=int, default=8000)
    parser.add_argument("--parts", nargs="+", default=["envs", "ppo", "dqn", "replay"])
    parser.add_argument("--vectorizations", nargs="+", default=["ale", "envpool"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"],
                        choices=["float32", "bfloat16"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"atari bench on {args.env}, load average {os.getloadavg()[0]:.2f}", flush=True)
    check_env_id(args.env)  # registers ale-py's ids, which SB3's make_atari_env needs
    if "envs" in args.parts:
        sb3 = env_steps(args.env, args.env_steps, None)
        for vec in args.vectorizations:
            ours = env_steps(args.env, args.env_steps, vec)
            print(f"envs ({vec}): rltasks {ours:.0f} steps/s, SB3 {sb3:.0f} steps/s, ratio "
                  f"{ours / sb3:.2f}", flush=True)
    for part, ours_of, sb3_of, size in (("ppo", ppo_rltasks, ppo_sb3, args.ppo_rollouts),
                                        ("dqn", dqn_rltasks, dqn_sb3, args.dqn_steps)):
        if part in args.parts:
            sb3 = sb3_of(args.env, size)
            for vec in args.vectorizations:
                for precision in args.precisions:
                    ours = ours_of(args.env, size, vec, precision)
                    print(f"{part} ({vec}, {precision}): rltasks {ours:.0f} steps/s, SB3 "
                          f"{sb3:.0f} steps/s, ratio {ours / sb3:.2f}", flush=True)
    if "replay" in args.parts:
        r = replay(args.replay)
        print(f"replay: {r['transitions']} transitions, {r['bytes_per_transition']:.0f} bytes "
              f"each (both stacks {r['both_stacks']}, one stack {r['one_stack']}: "
              f"{r['both_stacks'] / r['bytes_per_transition']:.1f}x and "
              f"{r['one_stack'] / r['bytes_per_transition']:.1f}x less); filled at "
              f"{r['fill_us_per_transition']:.0f} us a transition", flush=True)
        print(f"checkpoint: {r['checkpoint_mb']:.0f} MB written in "
              f"{r['checkpoint_seconds']:.1f} s allocating {r['write_peak_mb']:.1f} MB at peak; "
              f"built in memory first: {r['whole_seconds']:.1f} s, {r['whole_peak_mb']:.0f} MB "
              f"({r['whole_peak_mb'] / max(r['write_peak_mb'], 1e-3):.0f}x more); loaded in "
              f"{r['load_seconds']:.1f} s, {r['load_peak_mb']:.0f} MB at peak "
              f"({r['load_peak_mb'] / r['checkpoint_mb']:.1f}x the file)", flush=True)


if __name__ == "__main__":
    main()
