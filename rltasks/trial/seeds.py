"""``--seeds N``: one configuration trained on N seeds, one process per seed, their mean reported
(where the seeds cannot train as one population, ``rltasks.trial.together``, or
``--seed-processes`` asks for processes).

Each seed is a plain trial (``python -m rltasks.trial``) in ``WORKDIR/seed-K``, so each one
checkpoints and resumes on its own; at most one per core runs at a time. The parent holds the
working dir's lock, passes SIGTERM/SIGINT on to the seeds once (they checkpoint and stop), and
its seeds die with it when it is SIGKILLed (Linux: ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rltasks.task import NonFiniteError
from rltasks.trial.files import read_results, report_to_orion, seed_dir, write_results
from rltasks.trial.options import UsageError, default_workdir
from rltasks.trial.preempt import Preempted, StopSignals
from rltasks.trial.workdir import WorkdirLock

#: the statistics a multi-seed trial adds to Orion's
SEED_STATISTICS = ("objective_std", "return_min", "return_max")


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """In a child process (Linux; nothing elsewhere): the kernel sends it ``signum`` when its
    parent dies, even by SIGKILL. A seed's process is SIGKILLed, e.g. with its Orion worker,
    so no orphan keeps training or holds its working dir when Orion reruns the trial (the
    seed's last checkpoint is intact: writes are atomic); a population worker is SIGTERMed
    (``rltasks.orion.workers``), so it stops at an epoch end."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signum)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ORION_RESULTS_PATH", None)  # the parent reports the mean
    return env


def cores() -> int:
    """The cores this process may run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


class ProcessSlots:
    """Commands (by key) run as processes, at most ``slots`` at a time, each started by
    ``start(key, command)`` as a slot frees up, in order; told to stop once. The caller's
    loop starts, reaps and sleeps while ``busy()`` (``run_seeds``,
    ``rltasks.orion.reeval.run_all``)."""

    def __init__(self, commands: dict[Any, list[str]], slots: int,
                 start: Callable[[Any, list[str]], subprocess.Popen]) -> None:
        self.todo: list[tuple[Any, list[str]]] | None = list(commands.items())  # None: stop
        self.slots, self.start = max(1, slots), start
        self.running: dict[Any, subprocess.Popen] = {}
        self.codes: dict[Any, int] = {}

    def start_free(self) -> None:
        while self.todo and len(self.running) < self.slots:
            key, command = self.todo.pop(0)
            self.running[key] = self.start(key, command)

    def stop_once(self) -> None:
        """Tell the running processes to stop, once (SIGTERM: an rltasks trial stops at its
        next epoch end; a second SIGTERM would stop it mid-epoch), and start no more."""
        if self.todo is None:
            return
        self.todo = None
        for proc in self.running.values():
            if proc.poll() is None:
                proc.terminate()

    def reap(self) -> None:
        for key, proc in list(self.running.items()):
            if proc.poll() is not None:
                self.codes[key] = proc.returncode
                del self.running[key]

    def busy(self) -> bool:
        return bool(self.todo or self.running)


def _seed_process(_: int, command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=_child_env(), stdout=subprocess.DEVNULL,
                            preexec_fn=die_with_parent if sys.platform == "linux" else None)


def mean_results(per_seed: list[dict[str, Any]], task_name: str, options: dict[str, Any],
                 workdir: Path) -> dict[str, Any]:
    """The multi-seed trial's results: the seeds' mean objective, its spread, each seed's."""
    objectives = np.array([r["objective"] for r in per_seed])
    returns = np.array([r["return_mean"] for r in per_seed])
    return {"task": task_name, "env": options["env"], "seed": options["seed"],
            "seeds": [r["seed"] for r in per_seed], "objective": float(objectives.mean()),
            "objective_kind": options["objective"],
            "objective_std": float(objectives.std()),
            "return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "return_min": float(returns.min()), "return_max": float(returns.max()),
            "length_mean": float(np.mean([r["length_mean"] for r in per_seed])),
            "epoch": min(r["epoch"] for r in per_seed),
            "env_steps": int(sum(r["env_steps"] for r in per_seed)),
            "env_steps_run": int(sum(r["env_steps_run"] for r in per_seed)),
            "hparams": per_seed[0]["hparams"], "workdir": str(workdir),
            "per_seed": [{k: r[k] for k in ("seed", "objective", "return_mean", "epoch",
                                             "resumed_from")} for r in per_seed]}


def run_seeds(script: str, argv: list[str], task_name: str, options: dict[str, Any],
              log=None) -> dict[str, Any]:
    """Train seeds ``seed .. seed+N-1`` of one configuration (see the module docstring) and
    return their mean as the objective, with the spread and each seed's results.

    ``script`` is what ``python -m rltasks.trial`` runs (a task name, or ``agent``).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    workdir = default_workdir(task_name, options)
    seeds = [options["seed"] + i for i in range(options["seeds"])]
    pool = ProcessSlots({seed: [sys.executable, "-m", "rltasks.trial", script, *argv,
                                "--seeds", "1", "--seed", str(seed),
                                "--workdir", str(seed_dir(workdir, seed))] for seed in seeds},
                        min(len(seeds), cores()), _seed_process)
    with StopSignals(log) as signals, WorkdirLock(workdir, log=log):
        while pool.busy():
            if signals.received is None:
                pool.start_free()
            else:
                pool.stop_once()
            pool.reap()
            time.sleep(0.05)
    if signals.received is not None:
        raise Preempted(signals.received, f"seeds {sorted(pool.codes)} stopped at an epoch end")
    failed = {s: c for s, c in pool.codes.items() if c != 0}
    if failed:
        first = min(failed)
        error = NonFiniteError if failed[first] == 3 else UsageError
        raise error(f"seed(s) {sorted(failed)} of --seeds {len(seeds)} failed (exit codes "
                    f"{sorted(set(failed.values()))}); see their errors above and "
                    f"{seed_dir(workdir, first)}")
    per_seed = [read_results(seed_dir(workdir, s)) for s in seeds]
    results = {**mean_results(per_seed, task_name, options, workdir),
               "seeds_trained": f"in {len(seeds)} processes"}
    write_results(workdir, results)
    report_to_orion(results, extra=SEED_STATISTICS)
    return results
