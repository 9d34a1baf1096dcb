"""Hunt quality: does a hunt over rltasks' curated space find agents as good as rl-zoo3's?

For each row (task, env) it runs, on this machine:

1. a seeded TPE hunt (``orion hunt``, Orion's TPE with ``seed`` 1 and 8 random initial
   points) of ``--trials`` trials (24) over the task's curated space for that env
   (``make_task(task, env=env).get_space()``, what ``spaces/<task>.yaml`` holds for the env
   its header names), every trial at the row's fixed budget (``--epochs`` x
   ``--steps-per-epoch``; the epoch is a multiple of the largest rollout the space can draw,
   so no trial trains more steps than another), ``--workers`` at a time (2);
2. ``rltasks best NAME --reeval 5 --top 1``: the winner (the trial with the best final
   evaluation) retrained on 5 fresh seeds, 1000-1004;
3. rl-zoo3's published hyperparameters for that env (``ZOO``, spelled out below from
   rl-zoo3's ``hyperparams/<algo>.yml``) trained on the same 5 seeds at the same budget.

It prints, per row, the mean +- std of the final deterministic evaluation (10 episodes, the
true return) of the winner and of the zoo setting over those seeds, every seed's, the hunt's
wall time and the target verdict: the winner at least matches the zoo ("meets" when its
mean is at least the zoo's; otherwise a one-sided Mann-Whitney U test of "the winner's
finals are stochastically smaller than the zoo's" at the 5% level says whether the gap is
more than the seed spread: "within the spread (p = ...)" or "below the zoo").

    .venv/bin/python bench/hunt_quality.py [--rows ppo:CartPole-v1 dqn:Acrobot-v1 ...]
        [--trials 24] [--seeds 5] [--workers 2] [--out bench/out/hunt_quality]

Everything (Orion's PickledDB, the trials, the reruns) goes under ``--out/<task>-<env>``;
rerunning resumes what is there. Budgets are what this 2-core machine allows (PPO on
Acrobot trains 196,608 steps, not the zoo's 1M); the zoo setting gets the same budget.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import rltasks

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
FIRST_SEED = 1000  # the reeval's fresh seeds, away from the hunt's (0)


@dataclass(frozen=True)
class Row:
    """A (task, env) row: the fixed per-trial budget and rl-zoo3's setting for the env."""

    task: str
    env: str
    epochs: int
    steps_per_epoch: int
    zoo: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.task}-{self.env.lower().replace('-', '')}"

    @property
    def budget(self) -> int:
        return self.epochs * self.steps_per_epoch


#: rl-zoo3's hyperparams/{ppo,dqn,sac}.yml for these envs, in rltasks' names (``lin_X`` is
#: a linear schedule from X; run options such as num_envs and normalisation included)
ROWS = {row.name: row for row in [
    # 8 envs x n_steps up to 2048: an epoch of 16,384 steps holds whole rollouts of any draw
    Row("ppo", "CartPole-v1", 6, 16_384, {
        "num_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
        "update_epochs": 20, "ent_coef": 0.0, "lr": 1e-3, "lr_schedule": "linear",
        "clip_range": 0.2, "clip_schedule": "linear"}),
    Row("ppo", "Acrobot-v1", 6, 32_768, {
        "num_envs": 16, "norm_obs": True, "norm_reward": True, "n_steps": 256,
        "gae_lambda": 0.94, "gamma": 0.99, "update_epochs": 4, "ent_coef": 0.0}),
    Row("dqn", "Acrobot-v1", 5, 20_000, {
        "lr": 6.3e-4, "batch_size": 128, "buffer_size": 50_000, "learning_starts": 0,
        "gamma": 0.99, "target_update": 250, "train_freq": 4, "gradient_steps": 4,
        "eps_decay": 12_000, "eps_initial": 1.0, "eps_min": 0.1, "hidden": 256, "layers": 2}),
    Row("sac", "Pendulum-v1", 4, 5_000, {"lr": 1e-3}),
]}


def tpe_config(path: Path) -> Path:
    path.write_text(yaml.safe_dump({"experiment": {"algorithm": {"tpe": {
        "seed": 1, "n_initial_points": 8}}}}))
    return path


def space_file(row: Row, path: Path) -> Path:
    """The curated space of ``row.task`` for ``row.env``, as an Orion config file."""
    task = rltasks.make_task(row.task, env=row.env)
    try:
        space = task.get_space()
    finally:
        task.close()
    path.write_text(yaml.safe_dump({k: f"orion~{v}" for k, v in space.items()}))
    return path


def environ(out: Path) -> dict[str, str]:
    return {**os.environ, "ORION_DB_TYPE": "pickleddb", "ORION_DB_ADDRESS": str(out / "db.pkl"),
            "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONWARNINGS": "ignore"}


def run(command: list[str], env: dict[str, str], log: Path) -> float:
    """Run ``command`` from the project root, output to ``log``; its wall seconds."""
    print(f"  $ {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    with log.open("a") as sink:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=sink, stderr=sink).returncode
    if code != 0:
        raise SystemExit(f"exit {code}: {shlex.join(command)} (its output is in {log})")
    return time.perf_counter() - start


def budget_args(row: Row) -> list[str]:
    return ["--env", row.env, "--epochs", str(row.epochs),
            "--steps-per-epoch", str(row.steps_per_epoch)]


def hunt(row: Row, out: Path, trials: int, workers: int) -> dict[str, Any]:
    """The TPE hunt, then its winner's rerun on the fresh seeds (``rltasks best --reeval``)."""
    env = environ(out)
    wall = run(["orion", "hunt", "-n", row.name, "-c", str(tpe_config(out / "tpe.yaml")),
                "--exp-max-trials", str(trials), "--n-workers", str(workers),
                "--working-dir", str(out / "trials"), "python", f"scripts/{row.task}.py",
                "--config", str(space_file(row, out / "space.yaml")), *budget_args(row)],
               env, out / "hunt.log")
    best = json.loads(subprocess.run(
        ["rltasks", "best", row.name, "--json"], cwd=ROOT, env=env, check=True,
        capture_output=True, text=True).stdout)
    return {"wall": wall, "best": best}


def reeval(row: Row, out: Path, seeds: int) -> dict[str, Any]:
    """The winner on ``seeds`` fresh seeds (``rltasks best NAME --reeval``), its row."""
    env = environ(out)
    proc = subprocess.run(["rltasks", "best", row.name, "--reeval", str(seeds), "--top", "1",
                           "--reeval-seed", str(FIRST_SEED), "--reeval-dir",
                           str(out / "reeval"), "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    (out / "reeval.log").write_text(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"the reeval of {row.name} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.splitlines()[-1])[0]


def zoo(row: Row, out: Path, seeds: int) -> list[float]:
    """rl-zoo3's setting on the same seeds and budget: every seed's final return."""
    settings = [f"--{k.replace('_', '-')}={v}" for k, v in row.zoo.items()]
    workdir = out / "zoo"
    run([PYTHON, f"scripts/{row.task}.py", *budget_args(row), *settings, "--seeds", str(seeds),
         "--seed", str(FIRST_SEED), "--workdir", str(workdir)], environ(out), out / "zoo.log")
    results = json.loads((workdir / "results.json").read_text())
    return [float(s["return_mean"]) for s in results["per_seed"]]


def verdict(winner: list[float], tuned: list[float]) -> str:
    """Does the winner at least match the zoo? (see the module's docstring)"""
    if statistics.fmean(winner) >= statistics.fmean(tuned):
        return "meets"
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(winner, tuned, alternative="less").pvalue)
    return f"within the spread (p = {p:.2f})" if p >= 0.05 else f"below the zoo (p = {p:.3f})"


def spread(values: list[float]) -> str:
    return f"{statistics.fmean(values):.1f} +- {statistics.pstdev(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "hunt_quality")
    args = parser.parse_args()
    print(f"hunt quality: {args.trials}-trial seeded TPE hunts, {args.workers} workers, winner "
          f"and rl-zoo3 on seeds {FIRST_SEED}-{FIRST_SEED + args.seeds - 1}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    table = []
    for name in args.rows:
        row, out = ROWS[name], args.out / name
        out.mkdir(parents=True, exist_ok=True)
        found = hunt(row, out, args.trials, args.workers)
        winner = reeval(row, out, args.seeds)
        tuned = zoo(row, out, args.seeds)
        line = {"row": name, "budget": row.budget, "hunt_wall": found["wall"],
                "hunt_best": -found["best"]["objective"], "winner": winner["returns"],
                "zoo": tuned, "params": found["best"]["params"],
                "verdict": verdict(winner["returns"], tuned)}
        (out / "row.json").write_text(json.dumps(line, indent=1))
        print(f"  {name}: winner {spread(winner['returns'])}, zoo {spread(tuned)}, hunt "
              f"{found['wall'] / 60:.1f} min, {line['verdict']}", flush=True)
        table.append(line)
    print("\n| task | env | steps per trial | hunt wall (min) | hunt's best (seed 0) | winner, "
          "5 fresh seeds | rl-zoo3, same seeds | target |")
    print("| --- | --- | ---: | ---: | ---: | --- | --- | --- |")
    for line in table:
        row = ROWS[line["row"]]
        print(f"| {row.task} | {row.env} | {row.budget:,} | {line['hunt_wall'] / 60:.1f} | "
              f"{line['hunt_best']:.1f} | {spread(line['winner'])} | {spread(line['zoo'])} | "
              f"{line['verdict']} |")
    for line in table:
        print(f"{line['row']}: winner {line['params']}; per seed {line['winner']}, zoo "
              f"{line['zoo']}")


if __name__ == "__main__":
    sys.exit(main())
