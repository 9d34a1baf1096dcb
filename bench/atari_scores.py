"""Atari scores at an equal budget: PPO of rltasks and of SB3, the same settings, the same seeds.

    .venv/bin/python bench/atari_scores.py [--env PongNoFrameskip-v4] [--steps 245760]
        [--seeds 0 1] [--episodes 5] [--workers 2]

Both train rl-zoo3's Atari PPO set (8 envs, 128 steps, 4 epochs of minibatch 256, lr 2.5e-4
and clip 0.1 annealed linearly to 0 over the budget, entropy 0.01, value weight 0.5) for
``--steps`` env steps (4 frames each) on each seed, one process per run (``--workers`` at a
time, one torch thread each). rltasks runs its ALE defaults (the same set) on ale-py's vector
env in epochs of 8,192 steps; SB3 ``make_atari_env`` + ``VecFrameStack(4)``. Each final
policy then plays ``--episodes`` whole games deterministically on its own library's env
(rltasks' ``evaluate``; SB3's ``evaluate_policy`` on a Monitor-wrapped env: true game
scores both). Printed: every run's score and wall time, and per library the mean and spread
over seeds, next to rl-zoo3's published score after 10M steps.
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
EPOCH = 8192


def rltasks_run(env: str, seed: int, steps: int, episodes: int) -> float:
    import rltasks

    epochs = steps // EPOCH
    task = rltasks.make_task("ppo", env=env, seed=seed, steps_per_epoch=EPOCH,
                             horizon=epochs).init()
    try:
        task.fit(epochs)
        return float(task.evaluate(episodes)["return_mean"])
    finally:
        task.close()


def sb3_run(env: str, seed: int, steps: int, episodes: int) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecFrameStack

    from rltasks.envs import check_env_id

    check_env_id(env)  # registers ale-py's ids
    venv = VecFrameStack(make_atari_env(env, n_envs=8, seed=seed), 4)
    model = PPO("CnnPolicy", venv, n_steps=128, batch_size=256, n_epochs=4,
                learning_rate=lambda left: 2.5e-4 * left, clip_range=lambda left: 0.1 * left,
                ent_coef=0.01, vf_coef=0.5, seed=seed, verbose=0, device="cpu")
    model.learn(steps)
    eval_env = VecFrameStack(make_atari_env(env, n_envs=1, seed=seed + 1000), 4)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
    return float(mean)


def one(job: tuple[str, str, int, int, int]) -> dict[str, Any]:
    lib, env, seed, steps, episodes = job
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    score = (rltasks_run if lib == "rltasks" else sb3_run)(env, seed, steps, episodes)
    return {"lib": lib, "seed": seed, "score": score,
            "minutes": (time.perf_counter() - start) / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="PongNoFrameskip-v4")
    parser.add_argument("--steps", type=int, default=30 * EPOCH)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    steps = args.steps // EPOCH * EPOCH
    print(f"atari scores: PPO on {args.env}, {steps} steps ({4 * steps} frames) a run, seeds "
          f"{args.seeds}, load average {os.getloadavg()[0]:.2f}", flush=True)
    jobs = [(lib, args.env, seed, steps, args.episodes)  # SB3's slower runs first: balanced
            for lib in ("sb3", "rltasks") for seed in args.seeds]
    runs = []
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for run in pool.imap_unordered(one, jobs):
            print(json.dumps(run), flush=True)
            runs.append(run)
    for lib in ("rltasks", "sb3"):
        scores = [r["score"] for r in runs if r["lib"] == lib]
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        print(f"{lib}: {statistics.mean(scores):.2f} +- {spread:.2f} over {len(scores)} seeds "
              f"({', '.join(f'{s:.1f}' for s in scores)}), "
              f"{statistics.mean(r['minutes'] for r in runs if r['lib'] == lib):.1f} min a run",
              flush=True)
    if args.env in PUBLISHED:
        mean, std = PUBLISHED[args.env]
        print(f"published (rl-zoo3, 10M steps): {mean} +- {std}", flush=True)


if __name__ == "__main__":
    main()
