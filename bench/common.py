"""What the benchmarks share: the training clock, evaluation, the table and ratios.

Each bench (``ppo_cartpole.py``, ``a2c_cartpole.py``, ``dqn_cartpole.py``, ``sac_pendulum.py``,
``td3_pendulum.py``) builds its two agents with the same hyperparameters and hands them to the
runners here, which measure the same things the same way for every algorithm:

- **steps/s**: env steps of the whole training divided by its wall time (rollouts *and*
  updates), one torch thread;
- **s to 475**: training wall seconds until the deterministic policy first scores a mean
  return >= 475 over 10 evaluation episodes (CartPole-v1 counts as solved at 475; another
  env passes its own ``env`` and threshold ``Result.solved``, e.g. Pendulum-v1 and -200);
- **final return**: the final policy's mean true return over ``FINAL_EPISODES`` (50)
  deterministic episodes, scored by ``final_evaluation`` the same way for both libraries:
  rltasks' own vector env and evaluation loop, from start states drawn from the run's seed
  alone, so that the two libraries' policies of one seed meet the same 50 starts and
  different seeds meet different ones. (Before 2026-12-04 the final return was each
  library's last 10-episode evaluation; SB3's eval env, seeded ``seed + 10_000`` with one
  seed per env rank, met 9 of the same 10 start states on consecutive seeds, so its five
  "independent" finals shared one draw of start states. On Pendulum that draw is easy:
  rltasks' own PPO policy of seed 0 scored -130 on 50 episodes of SB3's eval env and -178
  on 500 episodes of either evaluator. SB3's curve evaluations now start at
  ``sb3_eval_seed(seed)``, disjoint across seeds.)

Both implementations evaluate at the same points, every ``eval_every`` env steps after the
update that completes them, plus at the end, and evaluation time is off the clock for both.
Ours: ``task.fit(e)`` epoch by epoch (an epoch is ``eval_every`` steps), then
``task.evaluate(10)``; the clock is the sum of the ``fit`` calls. SB3: one ``learn`` call
with a callback that, at rollout start once ``eval_every`` more steps are done (i.e. after
the previous update), runs ``evaluate_policy(model, eval_env, 10, deterministic=True)`` on a
separate 10-env eval env and subtracts its own time from the clock. Building the agents
(networks, envs) is outside the clock for both.

``bench_main`` is every bench's command line (``--seeds``, ``--steps``, ``--impls``): it rounds
the budget up to whole epochs and runs the chosen implementations through ``run_bench``.

Not a bench itself: the scripts next to it import it (``bench/`` is on ``sys.path`` when one
runs ``python bench/<name>.py``).
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
from typing import Any

import torch

import rltasks
from rltasks.task import Task

ENV = "CartPole-v1"
EVAL_EPISODES = 10
SOLVED = 475.0
FINAL_EPISODES = 50
FINAL_SEED = 1_000_003  # the final evaluation's start states derive from it and the run's seed


@dataclass
class Result:
    """One training run: throughput, time to solve, evaluation curve."""

    impl: str
    seed: int
    solved: float = SOLVED  # the mean eval return that counts as solved
    env_steps: int = 0
    train_seconds: float = 0.0
    seconds_to_solved: float | None = None
    evals: list[tuple[int, float]] = field(default_factory=list)  # (env steps, return)
    final: float | None = None  # final_evaluation's score of the final policy

    @property
    def sps(self) -> float:
        return self.env_steps / self.train_seconds

    @property
    def final_return(self) -> float:
        """``final_evaluation``'s score, or the last evaluation when there is none."""
        return self.evals[-1][1] if self.final is None else self.final

    def record_eval(self, env_steps: int, mean_return: float, train_seconds: float) -> None:
        self.evals.append((env_steps, mean_return))
        if self.seconds_to_solved is None and mean_return >= self.solved:
            self.seconds_to_solved = train_seconds


def final_evaluation(env_id: str, seed: int, act: Callable[[Any], Any],
                     normalize: Callable[[Any], Any]) -> float:
    """Mean true return of ``act`` (deterministic, on ``normalize``d observations) over
    ``FINAL_EPISODES`` episodes, one per env of rltasks' own sync vector env, from start states
    derived from ``seed`` alone: the same episodes for both libraries' runs of one seed."""
    from rltasks.envs.loader import VecLoader, derive_seed, evaluate_policy

    loader = VecLoader(env_id, num_envs=FINAL_EPISODES, vectorization="sync")
    return evaluate_policy(loader, act, derive_seed(FINAL_SEED, seed), normalize)["return_mean"]


# -- rltasks ---------------------------------------------------------------------------------
def make_task(algo: str, env: str = ENV, **kwargs: Any) -> Task:
    """``rltasks.make_task`` on one torch thread."""
    torch.set_num_threads(1)
    task = rltasks.make_task(algo, env=env, **kwargs)
    torch.set_num_threads(1)  # make_task sets RLTASKS_THREADS (default 1); insist
    return task


def train_rltasks(task: Task, epochs: int, result: Result) -> Result:
    """Ours: ``fit`` epoch by epoch, evaluating between epochs off the clock; closes the task."""
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            task.fit(epoch)
            result.train_seconds += time.perf_counter() - start
            score = task.evaluate(EVAL_EPISODES)["return_mean"]
            result.record_eval(task.env_steps, score, result.train_seconds)
        result.env_steps = task.env_steps
        result.final = final_evaluation(task.env_id, result.seed, task.act,
                                        task.loader.normalize_obs)
    finally:
        task.close()
    return result


# -- Stable-Baselines3 -----------------------------------------------------------------------
def sb3_envs(num_envs: int, seed: int, env: str = ENV) -> tuple[Any, Any]:
    """SB3's training vec env and a separate 10-env evaluation env, on one torch thread."""
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    return (make_vec_env(env, n_envs=num_envs, seed=seed),
            make_vec_env(env, n_envs=EVAL_EPISODES, seed=sb3_eval_seed(seed)))


def sb3_eval_seed(seed: int) -> int:
    """The first seed of SB3's 10-env eval env (one seed per env rank): disjoint across runs."""
    return 10_000 + EVAL_EPISODES * seed


def train_sb3(model: Any, total_steps: int, eval_every: int, eval_env: Any,
              result: Result, before_eval: Callable[[], None] | None = None) -> Result:
    """SB3: one ``learn`` call; a callback evaluates every ``eval_every`` steps off the clock
    (``before_eval`` runs first, e.g. to copy VecNormalize statistics to ``eval_env``).

    Closes the model's env and ``eval_env``.
    """
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    clock = {"start": 0.0, "paused": 0.0}

    def evaluate(env_steps: int) -> None:
        now = time.perf_counter()
        train_seconds = now - clock["start"] - clock["paused"]
        if before_eval is not None:
            before_eval()
        score, _ = evaluate_policy(model, eval_env, EVAL_EPISODES, deterministic=True)
        result.record_eval(env_steps, float(score), train_seconds)
        clock["paused"] += time.perf_counter() - now

    class EvalEvery(BaseCallback):
        """Evaluate at the start of a rollout once ``eval_every`` more steps (and their
        update) are done."""

        def _on_rollout_start(self) -> None:
            if self.num_timesteps >= eval_every * (len(result.evals) + 1):
                evaluate(self.num_timesteps)

        def _on_step(self) -> bool:
            return True

    try:
        clock["start"] = time.perf_counter()
        model.learn(total_steps, callback=EvalEvery())
        result.train_seconds = time.perf_counter() - clock["start"] - clock["paused"]
        result.env_steps = model.num_timesteps
        evaluate(model.num_timesteps)  # the last epoch's evaluation, after its update
        if before_eval is not None:
            before_eval()
        vec_normalize = model.get_vec_normalize_env()
        result.final = final_evaluation(
            sb3_env_id(model), result.seed, lambda obs: model.predict(obs, deterministic=True)[0],
            vec_normalize.normalize_obs if vec_normalize is not None else (lambda obs: obs))
    finally:
        model.get_env().close()
        eval_env.close()
    return result


def sb3_env_id(model: Any) -> str:
    """The gymnasium id of the env an SB3 model trains on (under its VecEnv wrappers)."""
    venv = model.get_env()
    while hasattr(venv, "venv"):
        venv = venv.venv
    return venv.envs[0].spec.id


# -- the report ------------------------------------------------------------------------------
def fmt_seconds(values: list[float | None]) -> str:
    """Mean over the seeds that reached the threshold, with the count when some did not."""
    reached = [v for v in values if v is not None]
    if not reached:
        return "not reached"
    text = f"{statistics.fmean(reached):.1f}"
    return text if len(reached) == len(values) else f"{text} ({len(reached)}/{len(values)})"


def mean_t475(results: list[Result]) -> float | None:
    reached = [r.seconds_to_solved for r in results if r.seconds_to_solved is not None]
    return statistics.fmean(reached) if reached else None


def run_bench(title: str, runners: dict[str, Callable[[int], Result]], seeds: list[int],
              eval_every: int, target_sps: float, target_t475: float | None = None
              ) -> dict[str, list[Result]]:
    """Print the header, run every implementation for every seed (sequentially, in this
    order), then print the table and the rltasks/sb3 ratios against the targets."""
    import stable_baselines3

    print(f"{title}, seeds {seeds}")
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, python "
          f"{platform.python_version()}, torch {torch.__version__}, "
          f"stable-baselines3 {stable_baselines3.__version__}, torch threads 1 "
          f"(load average before: {os.getloadavg()[0]:.2f})", flush=True)
    results: dict[str, list[Result]] = {impl: [] for impl in runners}
    for seed in seeds:
        for impl, runner in runners.items():
            r = runner(seed)
            results[impl].append(r)
            curve = " ".join(f"{ret:.0f}" for _, ret in r.evals)
            print(f"  {impl:<13} seed {seed}: {r.env_steps} steps in {r.train_seconds:.1f} s, "
                  f"{r.sps:.0f} steps/s, s to {r.solved:g}: {fmt_seconds([r.seconds_to_solved])}"
                  f"; eval every {eval_every}: {curve}", flush=True)
    print(f"(load average after: {os.getloadavg()[0]:.2f})")
    print()
    print_report(results, seeds, target_sps, target_t475)
    return results


def print_report(results: dict[str, list[Result]], seeds: list[int], target_sps: float,
                 target_t475: float | None = None) -> None:
    """The table (means over seeds) and the rltasks/sb3 ratios with their targets."""
    n = len(seeds)
    solved = next(iter(results.values()))[0].solved
    print(f"mean over {n} seed{'s' if n > 1 else ''} {seeds}; s to {solved:g}: "
          f"training wall seconds, (k/n) = reached by k of n seeds")
    print(f"| impl | steps/s | s to {solved:g} | final eval return |")
    print("|---|---:|---:|---:|")
    for impl, rs in results.items():
        final = statistics.fmean(r.final_return for r in rs)
        print(f"| {impl} | {statistics.fmean(r.sps for r in rs):.0f} "
              f"| {fmt_seconds([r.seconds_to_solved for r in rs])} | {final:.1f} |")
    print()
    if "rltasks" in results and "sb3" in results:
        ours, base = results["rltasks"], results["sb3"]
        sps_ratio = statistics.fmean(r.sps for r in ours) / statistics.fmean(r.sps for r in base)
        print(f"steps/s     rltasks/sb3 = {sps_ratio:.2f}x   (target >= {target_sps:g}x)")
        t_ours, t_base = mean_t475(ours), mean_t475(base)
        if target_t475 is None:
            target = "(no target)"
        else:
            target = (f"(target >= {1 / target_t475:g}x, i.e. rltasks <= {target_t475:g}x "
                      f"sb3's time)")
        if t_ours is None or t_base is None:
            if target_t475 is not None:
                target = f"(target: rltasks <= {target_t475:g}x sb3's)"
            print(f"time to {solved:g} sb3/rltasks: n/a (rltasks {fmt_seconds([t_ours])}, "
                  f"sb3 {fmt_seconds([t_base])})   {target}")
        else:
            print(f"time to {solved:g} sb3/rltasks = {t_base / t_ours:.2f}x   {target}")
    print("targets are from the issue; they are reported, not asserted")


# -- the command line ------------------------------------------------------------------------
Runner = Callable[[int, int], Result]  # (seed, epochs) -> one run's result


def bench_main(description: str, name: str, run_rltasks: Runner, run_sb3: Runner, *,
               default_steps: int, steps_per_epoch: int, target_sps: float,
               target_t475: float | None = None, title_suffix: str = "",
               extra_impls: dict[str, Runner] | None = None,
               default_impls: list[str] | None = None) -> None:
    """A bench's ``main``: parse ``--seeds``/``--steps``/``--impls``, round the budget up to
    whole ``steps_per_epoch`` epochs and ``run_bench`` the chosen implementations.

    The title is ``"<name>, rl-zoo3 hyperparameters, <steps> env steps (<epochs> x
    <steps_per_epoch>)<title_suffix>"``. ``extra_impls`` adds choices after ``rltasks`` and
    ``sb3`` (e.g. ``rltasks-sync``); ``default_impls`` is ``["rltasks", "sb3"]`` unless given.
    """
    runners: dict[str, Runner] = {"rltasks": run_rltasks, "sb3": run_sb3, **(extra_impls or {})}
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=default_steps,
                        help=f"env steps per run, rounded up to whole {steps_per_epoch}-step "
                             f"epochs")
    parser.add_argument("--impls", nargs="+", default=default_impls or ["rltasks", "sb3"],
                        choices=list(runners))
    args = parser.parse_args()
    epochs = math.ceil(args.steps / steps_per_epoch)
    chosen: dict[str, Callable[[int], Result]] = {
        impl: (lambda seed, run=runners[impl]: run(seed, epochs)) for impl in args.impls}
    run_bench(f"{name}, rl-zoo3 hyperparameters, {epochs * steps_per_epoch} env steps "
              f"({epochs} x {steps_per_epoch}){title_suffix}", chosen, args.seeds,
              steps_per_epoch, target_sps, target_t475)
