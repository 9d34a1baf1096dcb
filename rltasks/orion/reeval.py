"""``rltasks best NAME --reeval N``: retrain a hunt's best configurations on fresh seeds.

A hunt ranks each configuration by one run on one seed, so its winner may be a lucky seed (a
tuned setting that does not reproduce on another, rl-zoo3 #151, #204). ``reeval`` takes the
``top`` completed trials by objective, reruns each one's own command (``rerun_command``, as
``rltasks best`` prints it, from the current directory) with ``--seeds N --seed SEED`` (the
seeds train in parallel processes, one per core, as ``--seeds`` does) in ``DIR/<trial id>``,
and ranks them by the mean final return over those seeds, with its spread and every seed's.
The reruns' output goes to stderr; stdout holds the ranking (``--json``: the rows). A rerun
of ``reeval`` resumes whatever runs it finds there, like any trial.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from rltasks.orion.experiments import experiment, ranked_trials, rerun_command
from rltasks.trial.files import try_read_results

#: the first reeval seed: far from the seeds a hunt's trials use (``--seed``, default 0)
SEED = 1000


def reeval(name: str, seeds: int, top: int = 3, seed: int = SEED,
           workdir: str | Path = "reeval", exp: Any = None) -> list[dict[str, Any]]:
    """Rerun the ``top`` completed trials of experiment ``name`` on seeds ``seed`` ..
    ``seed + seeds - 1`` under ``workdir``; their rows, the best mean final return first."""
    if seeds < 1 or top < 1:
        raise ValueError(f"--reeval {seeds} and --top {top} must both be at least 1")
    exp = exp if exp is not None else experiment(name)
    done = ranked_trials(exp)
    if not done:
        raise ValueError(f"experiment {name!r} has no completed trial to re-evaluate yet")
    rows = [_rerun(exp, trial, seeds, seed, Path(workdir) / trial.id) for trial in done[:top]]
    return sorted(rows, key=lambda row: -row["return_mean"])


def _rerun(exp: Any, trial: Any, seeds: int, seed: int, workdir: Path) -> dict[str, Any]:
    """One trial's configuration on the fresh seeds; its row."""
    command = rerun_command(exp, trial)  # as the hunt ran it: its `python` is on PATH
    command += ["--seeds", str(seeds), "--seed", str(seed), "--workdir", str(workdir)]
    print(f"reeval {trial.id}: {shlex.join(command)}", file=sys.stderr, flush=True)
    try:
        code = subprocess.run(command, stdout=sys.stderr).returncode  # stdout: the ranking
    except OSError as err:
        raise ValueError(f"cannot rerun trial {trial.id} ({err}); run `rltasks best` from "
                         f"where the hunt ran, with its `python` on PATH") from None
    results = try_read_results(workdir)
    if code != 0 or results is None:
        raise ValueError(f"the rerun of trial {trial.id} failed (exit {code}); its output is "
                         f"above and its runs in {workdir}")
    returns = [float(s["return_mean"]) for s in results["per_seed"]] if seeds > 1 else [
        float(results["return_mean"])]
    return {"trial": trial.id, "hunt_objective": trial.objective.value,
            "return_mean": float(results["return_mean"]),
            "return_std": float(results.get("return_std", 0.0)) if seeds > 1 else 0.0,
            "seeds": list(range(seed, seed + seeds)), "returns": returns,
            "workdir": str(workdir), "command": command}


def print_reeval(name: str, rows: list[dict[str, Any]]) -> None:
    """The ranking: mean final return over the fresh seeds, its spread, every seed's."""
    seeds = rows[0]["seeds"]
    print(f"top {len(rows)} trials of {name!r} retrained on seeds {seeds[0]}-{seeds[-1]}, "
          f"ranked by the mean final return:")
    print("| rank | trial | hunt return | mean +- std over the seeds | per seed |")
    print("| ---: | --- | ---: | --- | --- |")
    for rank, row in enumerate(rows, 1):
        per_seed = ", ".join(f"{r:.1f}" for r in row["returns"])
        print(f"| {rank} | {row['trial']} | {-row['hunt_objective']:.1f} | "
              f"{row['return_mean']:.1f} +- {row['return_std']:.1f} | {per_seed} |")
    print(f"best on fresh seeds: {rows[0]['trial']}; its runs in {rows[0]['workdir']}")
