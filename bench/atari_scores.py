"""Atari scores at an equal budget: PPO or DQN of rltasks and of SB3, the same settings and seeds.

    .venv/bin/python bench/atari_scores.py [--algo ppo] [--env PongNoFrameskip-v4] [--epochs 2]
        [--seeds 0 1] [--episodes 5] [--workers 2] [--libs sb3 rltasks rltasks-bfloat16]

PPO: both train rl-zoo3's Atari PPO set (8 envs, 128 steps, 4 epochs of minibatch 256, lr 2.5e-4
and clip 0.1 annealed linearly to 0 over the budget, entropy 0.01, value weight 0.5) for
``--epochs`` of rltasks' default Atari epoch (216,064 env steps of 4 frames) on each seed,
one process per run (``--workers`` at a time, one torch thread each). rltasks runs its ALE
defaults (the same set) on ale-py's vector env; SB3 ``make_atari_env`` + ``VecFrameStack(4)``.
Each final policy then plays ``--episodes`` whole games deterministically on its own
library's env (rltasks' ``evaluate``; SB3's ``evaluate_policy`` on a Monitor-wrapped env:
true game scores both). Printed: every run's final score, the mean score of its last 10
training games (stochastic policy) and its wall time, and per library the mean and spread
over seeds, next to rl-zoo3's published score after 10M steps.

``--libs sb3-rltasks-env``: SB3's PPO or DQN trained on rltasks' own training env (an SB3
``VecEnv`` over rltasks' ``VecLoader``: ale-py's vector env, a lost life terminal, rewards
clipped, FIRE after a lost life), evaluated as SB3's runs are. It tells a gap in the env
from a gap in the learner: SB3 learning as well here as on its own env clears rltasks' env.

DQN (``--algo dqn``): both train rl-zoo3's Atari DQN set (1 env, a 100,000-transition
buffer, lr 1e-4, batch 32, an update every 4 steps, the target copied every 1,000, epsilon
to 0.01, Huber loss, gradients clipped at norm 10) for ``--epochs`` epochs of
``--steps-per-epoch`` (25,000 by default), with the two settings the zoo ties to its 10M-step
budget scaled to this one: learning starts after 10% of it (the zoo's 100,000 of 10M would
leave nothing here) and epsilon decays over 10% of it (the zoo's ``exploration_fraction``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
from typing import Any

#: rl-zoo3's benchmark.md, PPO after 10M steps (40M frames), stochastic policy
PUBLISHED = {"PongNoFrameskip-v4": (20.989, 0.105), "BreakoutNoFrameskip-v4": (398.033, 33.328)}
#: rl-zoo3's Atari PPO set in SB3's names, besides lr 2.5e-4 and clip range 0.1 (annealed
#: to 0 here; bench/lockstep.py keeps them constant)
SB3_PPO = {"n_steps": 128, "batch_size": 256, "n_epochs": 4, "ent_coef": 0.01, "vf_coef": 0.5}
#: rltasks' default Atari epoch for PPO: 8 envs x 27,008 steps; the DQN rows' epoch
EPOCH = {"ppo": 216_064, "dqn": 25_000}


def dqn_settings(steps: int) -> dict[str, int]:
    """The two DQN settings scaled to the budget (rltasks' names)."""
    return {"learning_starts": steps // 10, "eps_decay": steps // 10}


def rltasks_run(algo: str, env: str, seed: int, steps: int, episodes: int, epoch_steps: int,
                precision: str = "float32") -> tuple[float, float]:
    import rltasks

    hp = dqn_settings(steps) if algo == "dqn" else {}
    task = rltasks.make_task(algo, env=env, seed=seed, steps_per_epoch=epoch_steps,
                             horizon=steps // epoch_steps).init(precision=precision, **hp)
    try:
        games: list[float] = []
        for epoch in range(1, steps // epoch_steps + 1):
            task.fit(epoch)
            games += task.epoch_returns
        last = games[-10:] or [float("nan")]  # no game ended: nan
        return float(task.evaluate(episodes)["return_mean"]), float(sum(last) / len(last))
    finally:
        task.close()


def rltasks_vec_env(env: str, num_envs: int, seed: int) -> Any:
    """rltasks' training env (``VecLoader``, ``train=True``) as an SB3 ``VecEnv``: whole games
    in ``info["episode"]`` (SB3's Monitor's), a lost life ends SB3's episode."""
    import numpy as np
    from stable_baselines3.common.vec_env import VecEnv

    from rltasks.envs import VecLoader

    class RltasksVecEnv(VecEnv):
        def __init__(self) -> None:
            self.loader = VecLoader(env, num_envs=num_envs, vectorization="ale")
            super().__init__(num_envs, self.loader.single_observation_space,
                             self.loader.single_action_space)
            self.actions = np.zeros(num_envs, np.int64)

        def reset(self) -> Any:
            return self.loader.reset(seed)

        def step_async(self, actions: Any) -> None:
            self.actions = np.asarray(actions, np.int64)

        def step_wait(self) -> Any:
            obs, rew, term, trunc, final = self.loader.step(self.actions, train=True)
            infos: list[dict[str, Any]] = [{} for _ in range(num_envs)]
            games = self.loader.pop_episodes()  # in the order of the envs that ended one
            ended = np.flatnonzero(self.loader._ep_length == 0) if games else []
            for i, (score, length, _) in zip(ended, games, strict=True):
                infos[i]["episode"] = {"r": score, "l": length, "t": 0.0}
            for i in np.flatnonzero(term | trunc):
                infos[i]["terminal_observation"] = obs[i] if final is None else final[i]
                infos[i]["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
            return obs, rew, term | trunc, infos

        def close(self) -> None:
            self.loader.close()

        def get_attr(self, name: str, indices: Any = None) -> list[Any]:
            return [None] * num_envs

        def set_attr(self, name: str, value: Any, indices: Any = None) -> None:
            pass

        def env_method(self, *args: Any, **kwargs: Any) -> list[Any]:
            return [None] * num_envs

        def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
            return [False] * num_envs

    return RltasksVecEnv()


def sb3_model(algo: str, env: str, seed: int, steps: int, own_env: bool = True) -> Any:
    """SB3's model for ``algo`` with the settings rltasks' run has, on SB3's Atari env or
    (``own_env=False``) on rltasks' (``rltasks_vec_env``)."""
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    def make_env(n: int) -> Any:
        if own_env:
            return VecFrameStack(make_atari_env(env, n_envs=n, seed=seed), 4)
        return rltasks_vec_env(env, n, seed)

    if algo == "dqn":
        venv = make_env(1)
        hp = dqn_settings(steps)
        return DQN("CnnPolicy", venv, buffer_size=100_000, learning_rate=1e-4, batch_size=32,
                   learning_starts=hp["learning_starts"], target_update_interval=1000,
                   train_freq=4, gradient_steps=1, exploration_final_eps=0.01,
                   exploration_fraction=hp["eps_decay"] / steps, seed=seed, verbose=0,
                   device="cpu")
    return PPO("CnnPolicy", make_env(8), **SB3_PPO, learning_rate=lambda left: 2.5e-4 * left,
               clip_range=lambda left: 0.1 * left, seed=seed, verbose=0, device="cpu")


def sb3_run(algo: str, env: str, seed: int, steps: int, episodes: int, epoch_steps: int,
            own_env: bool = True) -> tuple[float, float]:
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecFrameStack

    from rltasks.envs import check_env_id

    del epoch_steps  # SB3 has no epochs: it resets its games once
    check_env_id(env)  # registers ale-py's ids
    model = sb3_model(algo, env, seed, steps, own_env)
    model.learn(steps)
    eval_env = VecFrameStack(make_atari_env(env, n_envs=1, seed=seed + 1000), 4)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
    last = [info["r"] for info in list(model.ep_info_buffer)[-10:]] or [float("nan")]
    return float(mean), float(sum(last) / len(last))


def one(job: tuple[str, str, str, int, int, int, int]) -> dict[str, Any]:
    algo, lib, env, seed, steps, episodes, epoch_steps = job
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    if lib.startswith("sb3"):  # sb3 or sb3-rltasks-env
        score, games = sb3_run(algo, env, seed, steps, episodes, epoch_steps, lib == "sb3")
    else:  # rltasks or rltasks-bfloat16
        score, games = rltasks_run(algo, env, seed, steps, episodes, epoch_steps,
                                   lib.partition("-")[2] or "float32")
    return {"lib": lib, "seed": seed, "score": score, "last_games": games,
            "minutes": (time.perf_counter() - start) / 60}


def spread(values: Any) -> str:
    """``mean +- std (each value)`` of ``values``."""
    values = list(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"{statistics.mean(values):.2f} +- {std:.2f} "
            f"({', '.join(f'{v:.1f}' for v in values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo", choices=("ppo", "dqn"))
    parser.add_argument("--env", default="PongNoFrameskip-v4")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="rltasks' epoch (PPO: its Atari default; DQN: 25,000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--libs", nargs="+", default=["sb3", "rltasks"],
                        choices=["sb3", "rltasks", "rltasks-bfloat16", "sb3-rltasks-env"],
                        help="rltasks-bfloat16: rltasks with precision='bfloat16'; "
                             "sb3-rltasks-env: SB3 trained on rltasks' env")
    args = parser.parse_args()
    args.steps_per_epoch = args.steps_per_epoch or EPOCH[args.algo]
    steps = args.epochs * args.steps_per_epoch
    print(f"atari scores: {args.algo} on {args.env}, {steps} steps ({4 * steps} frames) a "
          f"run, seeds {args.seeds}, load average {os.getloadavg()[0]:.2f}", flush=True)
    jobs = [(args.algo, lib, args.env, seed, steps, args.episodes,  # SB3's first
             args.steps_per_epoch) for lib in args.libs for seed in args.seeds]
    runs = []
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for run in pool.imap_unordered(one, jobs):
            print(json.dumps(run), flush=True)
            runs.append(run)
    for lib in args.libs:
        mine = [r for r in runs if r["lib"] == lib]
        print(f"{lib}: final {spread(r['score'] for r in mine)}, last 10 training games "
              f"{spread(r['last_games'] for r in mine)}, over {len(mine)} seeds, "
              f"{statistics.mean(r['minutes'] for r in mine):.1f} min a run", flush=True)
    if args.algo == "ppo" and args.env in PUBLISHED:
        mean, std = PUBLISHED[args.env]
        print(f"published (rl-zoo3, 10M steps): {mean} +- {std}", flush=True)


if __name__ == "__main__":
    main()
