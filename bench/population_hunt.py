"""A 16-trial hunt end to end (issue 16): ``orion hunt --n-workers 2`` against the population
worker (``python -m rltasks.orion.population``), the same trials, the same budget.

A seeded random search draws the same ``--trials`` configurations of PPO (``--algo``; or
DQN) on CartPole-v1 for every mode (PPO's lr, gamma, clip range and entropy weight; DQN's
lr, gamma, final epsilon and target interval: scalars, so that all trials can train as one
population; the shapes are the task's CartPole defaults), each trial
``--epochs`` epochs of ``--steps-per-epoch`` env steps, in a fresh Orion database per mode:

- ``hunt``: ``orion hunt --n-workers 2``, one process per trial, two at a time;
- ``population``: one population worker, ``--population`` = the number of trials;
- ``population-x2``: two population workers on the same experiment at once, each with
  half the trials (one per core), started by one command as ``orion hunt`` starts its
  workers (``--n-workers 2``: forked once the experiment is built; before 2026-12-08, two
  commands started 1 s apart).

Printed per mode: the wall time of the whole hunt, the completed trials (Orion may run a
few past ``--exp-max-trials`` when several workers reserve at once), the time per completed
trial and its ratio to ``hunt``'s, and on how many configurations both ran the objective
equals the one ``hunt`` recorded (each population member ends with the bits of its solo
run).

    .venv/bin/python bench/population_hunt.py [--algo ppo] [--trials 16] [--epochs 4]
        [--steps-per-epoch 2048] [--modes hunt population population-x2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: each task's space of scalars (so that every trial can join one population; the shapes at
#: the task's CartPole defaults)
SPACES = {
    "ppo": """lr: 'orion~loguniform(1e-4, 3e-3)'
gamma: 'orion~uniform(0.95, 0.999)'
clip_range: 'orion~uniform(0.1, 0.3)'
ent_coef: 'orion~loguniform(1e-5, 1e-2)'
""",
    "dqn": """lr: 'orion~loguniform(1e-4, 3e-3)'
gamma: 'orion~uniform(0.95, 0.999)'
eps_min: 'orion~uniform(0.0, 0.2)'
target_update: 'orion~choices([10, 100, 1000])'
""",
}
ALGORITHM = "experiment:\n  algorithms:\n    random:\n      seed: 1\n"


def hunt_args(algo: str, root: Path, trials: int, epochs: int, steps: int) -> list[str]:
    (root / "space.yaml").write_text(SPACES[algo])
    (root / "orion.yaml").write_text(ALGORITHM)
    return ["-n", "bench", "-c", str(root / "orion.yaml"), "--exp-max-trials", str(trials),
            "--working-dir", str(root / "work"), sys.executable, f"scripts/{algo}.py",
            "--config", str(root / "space.yaml"), "--epochs", str(epochs),
            "--steps-per-epoch", str(steps), "--eval-episodes", "5"]


def run_mode(algo: str, mode: str, trials: int, epochs: int, steps: int
             ) -> tuple[float, dict]:
    """The hunt's wall time and each trial's objective by its parameters."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "ORION_DB_TYPE": "pickleddb",
               "ORION_DB_ADDRESS": str(root / "db.pkl"), "PYTHONWARNINGS": "ignore",
               "RLTASKS_THREADS": "1"}
        args = hunt_args(algo, root, trials, epochs, steps)
        worker = [sys.executable, "-m", "rltasks.orion.population"]
        commands = {
            "hunt": [[str(Path(sys.executable).parent / "orion"), "hunt", "--n-workers", "2",
                      *args]],
            "population": [[*worker, "--population", str(trials), *args]],
            "population-x2": [[*worker, "--population", str((trials + 1) // 2),
                               "--n-workers", "2", *args]],
        }[mode]
        start = time.perf_counter()
        procs = []
        for command in commands:
            procs.append(subprocess.Popen(command, cwd=ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True))
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"{mode} failed:\n{err[-3000:]}")
        seconds = time.perf_counter() - start
        return seconds, objectives(root)


def objectives(root: Path) -> dict:
    os.environ.update(ORION_DB_TYPE="pickleddb", ORION_DB_ADDRESS=str(root / "db.pkl"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from orion.client import get_experiment
    storage = {"type": "legacy", "database": {"type": "pickleddb", "host": str(root / "db.pkl")}}
    exp = get_experiment("bench", storage=storage)
    found = {json.dumps(t.params, sort_keys=True): t.objective.value
             for t in exp.fetch_trials_by_status("completed")}
    bad = [t.status for t in exp.fetch_trials() if t.status not in ("completed", "new")]
    if bad:  # "new": drawn beyond the budget, never run (Orion registers a pool at a time)
        raise SystemExit(f"trials neither completed nor new: {bad}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", default="ppo", choices=sorted(SPACES))
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=2048)
    parser.add_argument("--modes", nargs="+", default=["hunt", "population", "population-x2"],
                        choices=["hunt", "population", "population-x2"])
    args = parser.parse_args()
    print(f"population hunt bench: {args.trials} trials of {args.algo} CartPole-v1, {args.epochs} "
          f"epochs x {args.steps_per_epoch} steps, load average {os.getloadavg()[0]:.2f}",
          flush=True)
    base = None
    for mode in args.modes:
        seconds, found = run_mode(args.algo, mode, args.trials, args.epochs,
                                  args.steps_per_epoch)
        if base is None:
            base = (seconds, found)
        common = sorted(set(found) & set(base[1]))
        same = sum(found[k] == base[1][k] for k in common)
        per_trial = seconds / len(found)
        print(f"{mode}: {seconds:.1f} s for {len(found)} completed trials ({per_trial:.2f} s "
              f"a trial: {base[0] / len(base[1]) / per_trial:.2f}x the first mode's speed; "
              f"wall {base[0] / seconds:.2f}x); objectives equal to the first mode's on "
              f"{same} of the {len(common)} configurations both ran", flush=True)


if __name__ == "__main__":
    main()
