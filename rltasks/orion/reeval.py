"""``rltasks best NAME --reeval N``: retrain a hunt's best configurations on fresh seeds.

A hunt ranks each configuration by one run on one seed, so its winner may be a lucky seed (a
tuned setting that does not reproduce on another, rl-zoo3 #151, #204). ``reeval`` takes the
``top`` completed trials by objective, reruns each one's own command (``rerun_command``, as
``rltasks best`` prints it, from the current directory) with ``--seeds N --seed SEED`` in
``DIR/<trial id>``, and ranks them by the mean final return over those seeds, with its
spread and every seed's. The reruns use the cores as ``--seeds`` does: where the task trains
its seeds as one population (one process: ppo, a2c, pg, dqn), up to one rerun per core runs
at once (``jobs``, ``--reeval-jobs``); elsewhere each rerun's seeds take the cores as
processes and the reruns run one after the other. The reruns' output goes to stderr, each
line prefixed with its trial's id; stdout holds the ranking (``--json``: the rows). A rerun
of ``reeval`` resumes whatever runs it finds there, like any trial.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from rltasks.orion.experiments import experiment, ranked_trials, rerun_command
from rltasks.orion.population import script_of
from rltasks.population import joins
from rltasks.tasks import REGISTRY
from rltasks.trial.files import try_read_results
from rltasks.trial.seeds import ProcessSlots, cores

#: the first reeval seed: far from the seeds a hunt's trials use (``--seed``, default 0)
SEED = 1000


def reeval(name: str, seeds: int, top: int = 3, seed: int = SEED,
           workdir: str | Path = "reeval", exp: Any = None, jobs: int | None = None
           ) -> list[dict[str, Any]]:
    """Rerun the ``top`` completed trials of experiment ``name`` on seeds ``seed`` ..
    ``seed + seeds - 1`` under ``workdir``, ``jobs`` at a time (default: ``default_jobs``);
    their rows, the best mean final return first."""
    given = {"--reeval": seeds, "--top": top, "--reeval-jobs": 1 if jobs is None else jobs}
    bad = [f"{option} {value}" for option, value in given.items() if value < 1]
    if bad:
        raise ValueError(f"{', '.join(bad)}: must be at least 1")
    exp = exp if exp is not None else experiment(name)
    trials = ranked_trials(exp)[:top]
    if not trials:
        raise ValueError(f"experiment {name!r} has no completed trial to re-evaluate yet")
    commands = {trial.id: [*rerun_command(exp, trial), "--seeds", str(seeds), "--seed",
                           str(seed), "--workdir", str(Path(workdir) / trial.id)]
                for trial in trials}
    codes = run_all(commands, jobs or default_jobs(next(iter(commands.values()))))
    rows = [_row(trial, codes[trial.id], seeds, seed, Path(workdir) / trial.id, commands[trial.id])
            for trial in trials]
    return sorted(rows, key=lambda row: -row["return_mean"])


def default_jobs(command: list[str]) -> int:
    """Reruns to run at once: one per core where a rerun is one process (its task trains
    ``--seeds`` as one population), else one (its seeds' processes take the cores)."""
    try:
        name, _ = script_of(command)
    except ValueError:
        return 1
    if name not in REGISTRY or "--seed-processes" in command or not joins(REGISTRY[name]):
        return 1
    return cores()


def run_all(commands: dict[str, list[str]], jobs: int) -> dict[str, int]:
    """Run ``commands`` (by key, in order), up to ``jobs`` at a time, from the current
    directory, each output line to stderr prefixed with its key; their exit codes. Any
    exception (an interrupt) terminates those still running first."""
    readers: list[threading.Thread] = []

    def start(key: str, command: list[str]) -> subprocess.Popen:
        print(f"reeval {key}: {shlex.join(command)}", file=sys.stderr, flush=True)
        try:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
        except OSError as err:
            raise ValueError(f"cannot rerun trial {key} ({err}); run `rltasks best` from "
                             f"where the hunt ran, with its `python` on PATH") from None
        readers.append(threading.Thread(target=_prefix, args=(proc.stdout, key[:8])))
        readers[-1].start()
        return proc

    slots = ProcessSlots(commands, jobs, start)
    try:
        while slots.busy():
            slots.start_free()
            slots.reap()
            time.sleep(0.05)
    finally:
        slots.stop_once()  # a trial ends at its next epoch end, resumable
        for proc in slots.running.values():
            proc.wait()
        for reader in readers:
            reader.join()
    return slots.codes


def _prefix(stream: IO[str], tag: str) -> None:
    for line in stream:
        sys.stderr.write(f"[{tag}] {line}")
    sys.stderr.flush()


def _row(trial: Any, code: int, seeds: int, seed: int, workdir: Path, command: list[str]
         ) -> dict[str, Any]:
    """One trial's row from its rerun on the fresh seeds."""
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
