"""One trial, alone or under ``orion hunt``.

options (``rltasks.trial.options``) -> build the task -> resume from the working dir's newest
valid checkpoint -> ``fit(epochs)`` with a checkpoint after every epoch -> evaluate -> write
``results.json``, report ``-return_mean`` to Orion and print one JSON line (the steps around
``fit`` are ``rltasks.trial.prepare``'s). ``--seeds N`` trains the seeds as one population
where the task can (``rltasks.trial.together``), else one process each
(``rltasks.trial.seeds``). This module never touches a tensor: that is the task's business.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rltasks.checkpoint import CheckpointError
from rltasks.task import NonFiniteError, Task
from rltasks.trial.agent import AGENT, resolve_agent
from rltasks.trial.files import report_to_orion
from rltasks.trial.options import default_workdir, resolve
from rltasks.trial.preempt import Preempted, StopSignals, interrupt_code
from rltasks.trial.prepare import Log, Prepared, finish, prepare, stderr_log
from rltasks.trial.seeds import run_seeds
from rltasks.trial.together import joins_population, run_together
from rltasks.trial.workdir import WorkdirLock


def run(task_name: str, options: dict[str, Any], hparams: dict[str, Any],
        log: Log | None = None) -> dict[str, Any]:
    """Train one trial to ``options['epochs']`` with checkpoints; return its results.

    The working dir's lock (``rltasks.trial.workdir``) is held throughout: a second process on
    the same dir raises ``LockError``. SIGTERM/SIGINT stop training at the next epoch boundary,
    checkpointed, by raising ``rltasks.trial.preempt.Preempted``.
    """
    log = log or stderr_log
    workdir = default_workdir(task_name, options)
    # signals first: env workers forked while the task is built inherit the handler
    with StopSignals(log) as signals, WorkdirLock(workdir, log=log):
        return _train(task_name, options, hparams, log, workdir, signals)


def _fit(task: Task, epochs: int, signals: StopSignals) -> None:
    """``task.fit(epochs)``, turning a signal's consequences into ``Preempted``."""
    if signals.received:
        raise Preempted(signals.received, f"stopped before training (epoch {task.epoch} "
                                          f"of {epochs})")
    try:
        task.fit(epochs)
    except Exception as err:
        if signals.received is None or isinstance(err, Preempted):
            raise
        raise Preempted(signals.received, f"stopped in epoch {task.epoch + 1} of {epochs}, "
                        f"which is lost ({type(err).__name__}: the env workers got the "
                        f"signal too); the last checkpoint is intact") from err


def _train(task_name: str, options: dict[str, Any], hparams: dict[str, Any], log: Log,
           workdir: Path, signals: StopSignals) -> dict[str, Any]:
    results = fit_and_finish(prepare(task_name, options, hparams, log, workdir, signals),
                             options, signals, log)
    report_to_orion(results)
    return results


def fit_and_finish(trial: Prepared, options: dict[str, Any], signals: StopSignals,
                   log: Log) -> dict[str, Any]:
    """Train a prepared trial to ``options['epochs']`` (``_fit``), then evaluate it and
    write its results (``finish``); closed if training raises."""
    try:
        _fit(trial.task, options["epochs"], signals)
    except BaseException:
        trial.close()
        raise
    return finish(trial, options, log)


def train(script: str, argv: list[str], task_name: str, options: dict[str, Any],
          hparams: dict[str, Any]) -> dict[str, Any]:
    """Train the trial of ``scripts/<script>.py argv`` (resolved: ``task_name``, ``options``,
    ``hparams``) as its script does: ``--seeds N`` as one population where the task and env
    can join one, else one process per seed; one seed alone. Its results."""
    results = None
    if options["seeds"] > 1 and joins_population(task_name, options):
        results = run_together(task_name, options, hparams)  # None: it cannot join
    if results is None and options["seeds"] > 1:
        results = run_seeds(script, argv, task_name, options)
    elif results is None:
        results = run(task_name, options, hparams)
    return results


def main(task_name: str, argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/<task>.py`` (and of ``scripts/agent.py`` with ``"agent"``):
    returns the process exit code.

    Bad input (options, hyperparameters, env id, a foreign checkpoint) exits 2 with one line
    on stderr, which Orion records as a broken trial; a diverged run exits 3 and keeps its
    last good checkpoint. A working dir locked by another process, or a checkpoint that
    cannot be written (the previous one stays intact), exits 2 too. SIGTERM/SIGINT exit
    with Orion's interrupt code (130 unless ``$ORION_INTERRUPT_CODE`` says otherwise) once
    the epoch in progress is checkpointed, so Orion marks the trial interrupted, not broken.
    """
    original = argv = list(sys.argv[1:] if argv is None else argv)
    script = task_name
    try:
        config = None
        if task_name == AGENT:
            task_name, argv, config = resolve_agent(argv)
        options, hparams = resolve(task_name, argv, config)
        results = train(script, original, task_name, options, hparams)
    except (ValueError, CheckpointError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 3 if isinstance(err, NonFiniteError) else 2
    except Preempted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return interrupt_code()
    except KeyboardInterrupt:
        print("interrupted: stopped at once; the last checkpoint is intact, rerun the same "
              "command to resume", file=sys.stderr)
        return interrupt_code()
    print(json.dumps(results))
    return 0
