"""Fidelity: does rltasks learn as well as Stable-Baselines3 at the same settings, across seeds?

For each pair (algorithm, env) both libraries train with the identical hyperparameters of the
pair's bench (``bench/<pair>.py``: rl-zoo3's where it has them), ``--seeds`` seeds each, the
same budget; both are evaluated deterministically (10 episodes) every epoch. Per pair it
prints every seed's final evaluation, the median and inter-quartile range of both, and a
verdict from a one-sided Mann-Whitney U test of "rltasks' finals are stochastically smaller
than SB3's" at the 5% level: "worse than SB3" when the test rejects, else "no worse than
SB3 (p = ...)". With few seeds the test has little power: 5 seeds each can reject only
when rltasks' finals sit nearly all below SB3's (the smallest p at 5 v 5 is 0.004). The
learning curves of every seed go to ``--out/<pair>.png`` (the plot extra's matplotlib).

Two kinds of pairs. ``dqn-cartpole``, ``ppo-cartpole``, ``a2c-cartpole``, ``sac-pendulum``,
``td3-pendulum`` and ``ddpg-pendulum`` reuse their bench's two runners (``bench/<pair>.py``,
each with its settings spelled out). The others (``ZOO_PAIRS``: Acrobot, PPO on Pendulum,
LunarLander, SAC on MountainCarContinuous) train the task's own per-env defaults, rl-zoo3's set
for that env (for DQN on Acrobot, rl-zoo3's set given explicitly), and hand the same settings
to SB3 name by name (``zoo_scores.sb3_model``, with SB3's orthogonal init, which is ours),
evaluating after each of 10 equal epochs. SAC on MountainCarContinuous is rl-zoo3's set:
gSDE (``use_sde``, ``log_std_init=-3.67``) at a fixed entropy coefficient of 0.1.

    .venv/bin/python bench/fidelity.py --pairs dqn-cartpole --seeds 0 1 2 3 4 [--out bench/out]
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import zoo_scores
from common import Result

from rltasks.tasks import REGISTRY

#: pair -> (bench module, default env steps)
PAIRS = {"dqn-cartpole": ("dqn_cartpole", 50_000), "ppo-cartpole": ("ppo_cartpole", 100_000),
         "a2c-cartpole": ("a2c_cartpole", 500_000), "sac-pendulum": ("sac_pendulum", 20_000),
         "td3-pendulum": ("td3_pendulum", 20_000), "ddpg-pendulum": ("ddpg_pendulum", 20_000)}
#: rl-zoo3's Acrobot-v1 DQN set (its LunarLander set too, which is DQN's LunarLander-v3
#: default); not DQN's Acrobot default, which stays the class's (tests/learning use it)
ZOO_DQN_ACROBOT = dict(REGISTRY["dqn"].ENV_DEFAULTS["LunarLander-v3"])
#: pair -> (task, env, env steps[, hyperparameters over the task's per-env defaults]): the
#: task's per-env defaults against SB3 (zoo_scores)
ZOO_PAIRS = {"dqn-acrobot": ("dqn", "Acrobot-v1", 100_000, ZOO_DQN_ACROBOT),
             "ppo-acrobot": ("ppo", "Acrobot-v1", 204_800),
             "a2c-acrobot": ("a2c", "Acrobot-v1", 204_800),
             "ppo-pendulum": ("ppo", "Pendulum-v1", 102_400),
             "ppo-lunarlander": ("ppo", "LunarLander-v3", 1_003_520),
             "dqn-lunarlander": ("dqn", "LunarLander-v3", 100_000),
             "sac-mountaincar": ("sac", "MountainCarContinuous-v0", 50_000)}
ZOO_EVALS = 10
ALPHA = 0.05


def runners(pair: str, steps: int | None) -> dict[str, Callable[[int], Result]]:
    """``{"rltasks": run(seed), "sb3": run(seed)}`` for ``pair``."""
    if pair in ZOO_PAIRS:
        algo, env, default, *given = ZOO_PAIRS[pair]
        budget, hparams = steps or default, (given or [None])[0]
        return {"rltasks": lambda seed: zoo_scores.run_rltasks(algo, env, seed, budget,
                                                                ZOO_EVALS, hparams),
                "sb3": lambda seed: zoo_scores.run_sb3(algo, env, seed, budget, ZOO_EVALS,
                                                       ortho_init=True, hparams=hparams)}
    module_name, default_steps = PAIRS[pair]
    bench = importlib.import_module(module_name)
    epochs = math.ceil((steps or default_steps) / bench.STEPS_PER_EPOCH)
    return {"rltasks": lambda seed: bench.run_rltasks(seed, epochs),
            "sb3": lambda seed: bench.run_sb3(seed, epochs)}


def run_pair(pair: str, seeds: list[int], steps: int | None,
             impls: tuple[str, ...] = ("rltasks", "sb3")) -> dict[str, list[Result]]:
    """Every seed of the implementations ``impls`` of ``pair``, sequentially, printed as
    they end."""
    results: dict[str, list[Result]] = {"rltasks": [], "sb3": []}
    for seed in seeds:
        for impl, run in runners(pair, steps).items():
            if impl not in impls:
                continue
            result = run(seed)
            results[impl].append(result)
            print(f"  {pair} {impl:<7} seed {seed}: final {result.final_return:.1f} after "
                  f"{result.env_steps} steps ({result.train_seconds:.0f} s)", flush=True)
    return results


def verdict(ours: list[float], theirs: list[float]) -> str:
    """One-sided Mann-Whitney U: are our finals stochastically smaller than SB3's?"""
    from scipy.stats import mannwhitneyu

    if len(ours) < 2 or len(theirs) < 2:
        return "too few seeds for a verdict"
    p = mannwhitneyu(ours, theirs, alternative="less").pvalue
    return f"worse than SB3 (p = {p:.3f})" if p < ALPHA else f"no worse than SB3 (p = {p:.3f})"


def summary(values: list[float]) -> str:
    """Median [inter-quartile range] of ``values``."""
    if len(values) < 2:
        return f"{values[0]:.1f}"
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{statistics.median(values):.1f} [{q1:.1f}, {q3:.1f}]"


def plot(pair: str, results: dict[str, list[Result]], out: Path) -> Path:
    """Every seed's learning curve of both implementations, one PNG per pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for impl, color in (("rltasks", "tab:blue"), ("sb3", "tab:orange")):
        for i, result in enumerate(results[impl]):
            steps, returns = zip(*result.evals, strict=True)
            ax.plot(steps, returns, color=color, alpha=0.6, marker="o", markersize=2,
                    label=impl if i == 0 else None)
    ax.set(title=pair, xlabel="env steps", ylabel="deterministic eval return (10 episodes)")
    ax.legend()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{pair}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", choices=[*PAIRS, *ZOO_PAIRS], default=list(PAIRS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=None,
                        help="env steps per run (default: each pair's bench budget)")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--impls", nargs="+", choices=("rltasks", "sb3"),
                        default=["rltasks", "sb3"],
                        help="run only these sides (each side's runs are deterministic on one "
                             "machine: the other side's finals of the same day can be reused)")
    args = parser.parse_args()
    header = ("| pair | seeds | env steps | rltasks final, median [IQR] | SB3 final, median "
              "[IQR] | one-sided Mann-Whitney U, 5% | curves |\n"
              "| --- | ---: | ---: | --- | --- | --- | --- |")
    rows = []
    for pair in args.pairs:
        results = run_pair(pair, args.seeds, args.steps, tuple(args.impls))
        if len(args.impls) < 2:
            continue  # one side: its per-seed lines above, no verdict
        ours = [r.final_return for r in results["rltasks"]]
        theirs = [r.final_return for r in results["sb3"]]
        rows.append(f"| {pair} | {len(args.seeds)} | {results['rltasks'][0].env_steps} | "
                    f"{summary(ours)} | {summary(theirs)} | {verdict(ours, theirs)} | "
                    f"{plot(pair, results, args.out)} |")
        print(f"{header}\n{rows[-1]}", flush=True)  # each pair's row as soon as it is done
    print(f"\nall pairs:\n{header}")
    print("\n".join(rows))

if __name__ == "__main__":
    main()
