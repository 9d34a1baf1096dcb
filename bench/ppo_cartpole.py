"""PPO on CartPole-v1: rltasks against Stable-Baselines3, in the same run.

What is measured, for each implementation and seed, with rl-zoo3's CartPole hyperparameters
(8 envs, n_steps 32, batch 256, 20 epochs per rollout, gae_lambda 0.8, gamma 0.98,
ent_coef 0, lr 1e-3 and clip_range 0.2 both decayed linearly to 0, Adam eps 1e-5, 64x64 tanh
MLPs, grad-norm clip 0.5):

- **steps/s**: env steps of the whole training divided by its wall time (rollouts *and*
  updates), one torch thread;
- **s to 475**: training wall seconds until the deterministic policy first scores a mean
  return >= 475 over 10 evaluation episodes (CartPole-v1 counts as solved at 475);
- **final return**: that evaluation at the end of training.

Both implementations train the same budget: ``--steps`` rounded up to whole 4096-step epochs
(100k -> 25 epochs = 102,400 steps = 400 rollouts of 8x32), and both evaluate at the same
points, every 4096 steps after the update that completes them, plus at the end. Evaluation
time is excluded from the training clock for both. Ours: ``task.fit(e)`` epoch by epoch
(``steps_per_epoch=4096``, ``horizon=epochs`` so the linear schedules end with training)
then ``task.evaluate(10)``; the clock is the sum of the ``fit`` calls. SB3: ``PPO.learn`` with
a callback that evaluates with ``evaluate_policy(model, eval_env, 10, deterministic=True)``
on a separate 10-env eval env at rollout start once 4096 more steps are done (i.e. after the
previous update), and subtracts its own time from the clock. Building the agents (networks,
envs) is outside the clock for both.

Runs are sequential in one process, ``rltasks`` then ``sb3`` (then ``rltasks-sync``, ours on
gymnasium's ``SyncVectorEnv`` instead of its numpy-vectorized CartPole) for each seed.

    .venv/bin/python bench/ppo_cartpole.py [--seeds 0 1 2] [--steps 100000]

Needs the bench extra: ``pip install -e '.[bench]'`` (stable-baselines3).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

import rltasks

ENV = "CartPole-v1"
NUM_ENVS = 8
STEPS_PER_EPOCH = 4096  # also the evaluation period of both implementations
EVAL_EPISODES = 10
SOLVED = 475.0
TARGET_SPS = 2.0  # rltasks/sb3 steps per second, from the issue
TARGET_T475 = 0.5  # rltasks time to 475 as a fraction of SB3's, from the issue
HP = {"n_steps": 32, "batch_size": 256, "update_epochs": 20, "gae_lambda": 0.8,
      "gamma": 0.98, "ent_coef": 0.0, "lr": 1e-3, "clip_range": 0.2}


@dataclass
class Result:
    """One training run: throughput, time to solve, evaluation curve."""

    impl: str
    seed: int
    env_steps: int = 0
    train_seconds: float = 0.0
    seconds_to_solved: float | None = None
    evals: list[tuple[int, float]] = field(default_factory=list)  # (env steps, return)

    @property
    def sps(self) -> float:
        return self.env_steps / self.train_seconds

    @property
    def final_return(self) -> float:
        return self.evals[-1][1]

    def record_eval(self, env_steps: int, mean_return: float, train_seconds: float) -> None:
        self.evals.append((env_steps, mean_return))
        if self.seconds_to_solved is None and mean_return >= SOLVED:
            self.seconds_to_solved = train_seconds


def run_rltasks(seed: int, epochs: int, vectorization: str = "auto") -> Result:
    """Ours: ``fit`` epoch by epoch, evaluating between epochs off the clock."""
    torch.set_num_threads(1)
    task = rltasks.make_task("ppo", env=ENV, num_envs=NUM_ENVS, seed=seed,
                             steps_per_epoch=STEPS_PER_EPOCH, horizon=epochs,
                             vectorization=vectorization)
    torch.set_num_threads(1)  # make_task sets RLTASKS_THREADS (default 1); insist
    task.init(**HP, lr_schedule="linear", clip_schedule="linear")
    result = Result("rltasks" if vectorization == "auto" else f"rltasks-{vectorization}", seed)
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            task.fit(epoch)
            result.train_seconds += time.perf_counter() - start
            score = task.evaluate(EVAL_EPISODES)["return_mean"]
            result.record_eval(task.env_steps, score, result.train_seconds)
        result.env_steps = task.env_steps
    finally:
        task.close()
    return result


def linear(initial: float) -> Callable[[float], float]:
    """rl-zoo3's ``lin_<value>``: ``initial`` times the fraction of training remaining."""
    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial
    return schedule


def run_sb3(seed: int, epochs: int) -> Result:
    """SB3: one ``learn`` call; a callback evaluates every 4096 steps and stops its clock."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    result = Result("sb3", seed)
    env = make_vec_env(ENV, n_envs=NUM_ENVS, seed=seed)
    eval_env = make_vec_env(ENV, n_envs=EVAL_EPISODES, seed=seed + 10_000)
    model = PPO("MlpPolicy", env, n_steps=HP["n_steps"], batch_size=HP["batch_size"],
                n_epochs=HP["update_epochs"], gae_lambda=HP["gae_lambda"], gamma=HP["gamma"],
                ent_coef=HP["ent_coef"], learning_rate=linear(HP["lr"]),
                clip_range=linear(HP["clip_range"]), device="cpu", seed=seed, verbose=0)
    clock = {"start": 0.0, "paused": 0.0}

    def evaluate(env_steps: int) -> None:
        now = time.perf_counter()
        train_seconds = now - clock["start"] - clock["paused"]
        score, _ = evaluate_policy(model, eval_env, EVAL_EPISODES, deterministic=True)
        result.record_eval(env_steps, float(score), train_seconds)
        clock["paused"] += time.perf_counter() - now

    class EvalEvery(BaseCallback):
        """Evaluate at the start of a rollout once 4096 more steps (and their update) are done."""

        def _on_rollout_start(self) -> None:
            if self.num_timesteps >= STEPS_PER_EPOCH * (len(result.evals) + 1):
                evaluate(self.num_timesteps)

        def _on_step(self) -> bool:
            return True

    clock["start"] = time.perf_counter()
    model.learn(epochs * STEPS_PER_EPOCH, callback=EvalEvery())
    result.train_seconds = time.perf_counter() - clock["start"] - clock["paused"]
    result.env_steps = model.num_timesteps
    evaluate(model.num_timesteps)  # the last epoch's evaluation, after its update
    env.close()
    eval_env.close()
    return result


def fmt_seconds(values: list[float | None]) -> str:
    """Mean over the seeds that reached 475, with the count when some did not."""
    reached = [v for v in values if v is not None]
    if not reached:
        return "not reached"
    text = f"{statistics.fmean(reached):.1f}"
    return text if len(reached) == len(values) else f"{text} ({len(reached)}/{len(values)})"


def mean_t475(results: list[Result]) -> float | None:
    reached = [r.seconds_to_solved for r in results if r.seconds_to_solved is not None]
    return statistics.fmean(reached) if reached else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=100_000,
                        help="env steps per run, rounded up to whole 4096-step epochs")
    parser.add_argument("--impls", nargs="+", default=["rltasks", "sb3", "rltasks-sync"],
                        choices=["rltasks", "sb3", "rltasks-sync"])
    args = parser.parse_args()
    epochs = math.ceil(args.steps / STEPS_PER_EPOCH)
    runners: dict[str, Callable[[int], Result]] = {
        "rltasks": lambda s: run_rltasks(s, epochs),
        "sb3": lambda s: run_sb3(s, epochs),
        "rltasks-sync": lambda s: run_rltasks(s, epochs, "sync"),
    }
    import stable_baselines3

    print(f"PPO {ENV}, rl-zoo3 hyperparameters, {epochs * STEPS_PER_EPOCH} env steps "
          f"({epochs} x {STEPS_PER_EPOCH}), seeds {args.seeds}")
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, python "
          f"{platform.python_version()}, torch {torch.__version__}, "
          f"stable-baselines3 {stable_baselines3.__version__}, torch threads 1 "
          f"(load average before: {os.getloadavg()[0]:.2f})", flush=True)
    results: dict[str, list[Result]] = {impl: [] for impl in args.impls}
    for seed in args.seeds:
        for impl in args.impls:
            r = runners[impl](seed)
            results[impl].append(r)
            curve = " ".join(f"{ret:.0f}" for _, ret in r.evals)
            print(f"  {impl:<13} seed {seed}: {r.env_steps} steps in {r.train_seconds:.1f} s, "
                  f"{r.sps:.0f} steps/s, s to {SOLVED:.0f}: {fmt_seconds([r.seconds_to_solved])}"
                  f"; eval every {STEPS_PER_EPOCH}: {curve}", flush=True)
    print(f"(load average after: {os.getloadavg()[0]:.2f})")
    print()
    n = len(args.seeds)
    print(f"mean over {n} seed{'s' if n > 1 else ''} {args.seeds}; s to {SOLVED:.0f}: "
          f"training wall seconds, (k/n) = reached by k of n seeds")
    print(f"| impl | steps/s | s to {SOLVED:.0f} | final eval return |")
    print("|---|---:|---:|---:|")
    for impl, rs in results.items():
        final = statistics.fmean(r.final_return for r in rs)
        print(f"| {impl} | {statistics.fmean(r.sps for r in rs):.0f} "
              f"| {fmt_seconds([r.seconds_to_solved for r in rs])} | {final:.1f} |")
    print()
    if "rltasks" in results and "sb3" in results:
        ours, base = results["rltasks"], results["sb3"]
        sps_ratio = statistics.fmean(r.sps for r in ours) / statistics.fmean(r.sps for r in base)
        print(f"steps/s     rltasks/sb3 = {sps_ratio:.2f}x   (target >= {TARGET_SPS:g}x)")
        t_ours, t_base = mean_t475(ours), mean_t475(base)
        if t_ours is None or t_base is None:
            print(f"time to {SOLVED:.0f} sb3/rltasks: n/a (rltasks {fmt_seconds([t_ours])}, "
                  f"sb3 {fmt_seconds([t_base])})   (target: rltasks <= {TARGET_T475:g}x sb3's)")
        else:
            print(f"time to {SOLVED:.0f} sb3/rltasks = {t_base / t_ours:.2f}x   (target >= "
                  f"{1 / TARGET_T475:g}x, i.e. rltasks <= {TARGET_T475:g}x sb3's time)")
    print("targets are from the issue; they are reported, not asserted")


if __name__ == "__main__":
    main()
