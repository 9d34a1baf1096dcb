"""A trial's pieces around ``fit``: build its task, resume it from the working dir, attach
the observers (``prepare``); evaluate it and write its results (``finish``).

``rltasks.trial.run`` trains one trial with them; ``rltasks.trial.together`` trains a
trial's seeds as one population.

``--env-state auto`` snapshots the envs when their state can be saved, except that a resumed
run keeps the mode its checkpoint was written in (``env_state_of``): a checkpoint from before
env snapshots resumes in reset mode. A run in reset mode says why once in its log, and
``results.json`` records the mode in force (``env_state``, ``env_state_reason``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import rltasks
from rltasks.checkpoint import Checkpointer, CheckpointError, peek
from rltasks.envs.snapshot import ASKED
from rltasks.task import Task
from rltasks.trial.files import METRICS, write_results
from rltasks.trial.observers import (
    Checkpointing,
    EarlyStop,
    MetricsLog,
    TensorBoardLog,
    progress_observer,
)
from rltasks.trial.payload import BadState, check_fits_a_file, restore, same_run_checker
from rltasks.trial.preempt import StopAtEpochEnd, StopSignals

Log = Callable[[str], None]


def said_once(log: Log) -> Log:
    """``log`` that drops a line it has already written (the members of a population share
    their envs' notes: one note for all)."""
    said: set[str] = set()

    def once(line: str) -> None:
        if line not in said:
            said.add(line)
            log(line)

    return once


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_task(task_name: str, options: dict[str, Any], hparams: dict[str, Any]) -> Task:
    """The trial's task, ``init``-ed with its hyperparameters."""
    task = rltasks.make_task(
        task_name, env=options["env"], num_envs=options["num_envs"], seed=options["seed"],
        device=options["device"], steps_per_epoch=options["steps_per_epoch"],
        horizon=options["horizon"] or options["epochs"],
        vectorization=options["vectorization"], norm_obs=options["norm_obs"],
        norm_reward=options["norm_reward"], env_kwargs=options["env_kwargs"],
        env_state=options["env_state"])
    try:
        task.init(**hparams)
    except BaseException:
        task.close()
        raise
    return task


def env_state_of(checkpointer: Checkpointer, requested: str) -> tuple[str, str | None]:
    """The ``env_state`` to build the trial's task with, and why it is "reset" when the
    working dir decides it: ``--env-state`` as given, except that "auto" keeps the mode of the
    newest readable checkpoint (its ``fixed`` has ``env_state`` only in snapshot mode), so a
    run resumes as it began. An explicit mode that contradicts the checkpoint is refused later
    by the same-run check."""
    if requested != "auto":
        return requested, None
    for path in checkpointer.candidates():
        try:
            fixed = peek(path).get("fixed")
        except CheckpointError:
            continue  # load_latest reports it and falls back to an older file
        if not isinstance(fixed, dict):
            break  # not a task checkpoint: the same-run check refuses it
        if fixed.get("env_state", "reset") == "reset":
            return "reset", f"it resumes {path.name}, written in reset mode"
        return "snapshot", None
    return requested, None


def _resume(build: Callable[[], Task], checkpointer: Checkpointer, workdir: Path,
            options: dict[str, Any], log: Log) -> tuple[Task, dict[str, Any]]:
    """Build the task and continue the newest usable checkpoint of this run, if any; return
    the task and what the results record of it (where it resumed, what it adopted, a
    recorded early stop). A checkpoint whose state does not fit (``BadState``) falls back
    to the next older one, restored into a task built afresh."""
    task = build()
    try:
        check_fits_a_file(task)
        check = same_run_checker(task, workdir, options["allow_hparam_change"])

        def apply(payload: dict[str, Any], path: Path) -> Any:
            nonlocal task
            try:
                return restore(task, payload, path), payload.get("run")
            except BadState:
                task.close()  # a state applied halfway: the next one goes into a new task
                task = build()
                raise

        found = checkpointer.load_latest(check, log, apply=apply, falls_back=(BadState,))
    except BaseException:
        task.close()
        raise
    if found is None:
        return task, {"resumed_from": None, "resumed_steps": 0, "adopted": None,
                      "stopped": None}
    (adopted, run_state), path = found
    if adopted is not None:  # --allow-hparam-change: PBT's child continues its parent's
        log(f"continuing {path} with changed hyperparameters: "
            + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in adopted.items()))
    log(f"resumed from {path} at epoch {task.epoch}")
    stopped = EarlyStop.resume(task, run_state)
    if stopped is not None:
        log(f"early stop recorded at epoch {stopped}: not training further")
    return task, {"resumed_from": task.epoch, "resumed_steps": task.env_steps,
                  "adopted": adopted, "stopped": stopped}


def _observe(task: Task, checkpointer: Checkpointer, workdir: Path, options: dict[str, Any],
             signals: StopSignals, board: TensorBoardLog | None, label: str | None) -> None:
    """Attach the trial's observers, in order: early stop, checkpoints, logs, pre-emption."""
    epochs = options["epochs"]
    if options["criterion"] is not None:
        task.observers.append(EarlyStop(options["criterion"], options["trial_count"]))
    task.observers += [
        Checkpointing(checkpointer, every=options["save_freq"], final_epoch=epochs,
                      eval_every=options["eval_every"], eval_episodes=options["eval_episodes"],
                      save_best=options["save_best"]),
        MetricsLog(workdir / METRICS),
        *([board] if board else []),
        progress_observer(epochs, label=label),
        StopAtEpochEnd(signals, checkpointer, options["save_freq"], epochs),
    ]


def objective(task: Task, final: dict[str, Any], kind: str) -> float:
    """What the trial reports to Orion (``--objective``): ``final``, minus the final
    evaluation's mean return; ``curve``, minus the mean over epochs of the training episodes'
    mean return (epochs that finished no episode left out; none at all: as ``final``)."""
    curve = [row["return_mean"] for row in task.history
             if row.get("return_mean") is not None] if kind == "curve" else []
    return -float(np.mean(curve)) if curve else -final["return_mean"]


def _results(task: Task, options: dict[str, Any], final: dict[str, Any],
             resumed: dict[str, Any], workdir: Path) -> dict[str, Any]:
    return {"task": task.name, "env": options["env"], "seed": options["seed"],
            "objective": objective(task, final, options["objective"]), **final,
            "objective_kind": options["objective"], "epoch": task.epoch,
            "env_state": task.loader.env_state, "env_state_reason": resumed["env_state_reason"],
            "env_steps": task.env_steps, "resumed_from": resumed["resumed_from"],
            "env_steps_run": task.env_steps - resumed["resumed_steps"],
            "hparam_changes": [{"epoch": row["epoch"], "changed": row["hparams_changed"]}
                               for row in task.history if "hparams_changed" in row],
            "hparams_adopted": resumed["adopted"],
            "early_stopped_at": getattr(task, "run_state", {}).get(
                "early_stop", {}).get("stopped_at"),
            "hparams": task.hparams(), "workdir": str(workdir)}


def prepare(task_name: str, options: dict[str, Any], hparams: dict[str, Any], log: Log,
            workdir: Path, signals: StopSignals, label: str | None = None) -> Prepared:
    """The trial's task, resumed from its working dir's newest usable checkpoint and with
    its observers attached: everything before ``fit``. ``label`` heads its progress lines
    (a population's member: "ppo seed 3")."""
    board = TensorBoardLog(workdir / "tb") if options.get("tensorboard") else None
    checkpointer = Checkpointer(workdir, keep=options["keep"])
    env_state, why = env_state_of(checkpointer, options["env_state"])
    checkpointer.clean_tmp()
    task, resumed = _resume(
        lambda: build_task(task_name, {**options, "env_state": env_state}, hparams),
        checkpointer, workdir, options, log)
    try:
        reason = task.loader.env_state_reason  # the envs' own reason comes first
        why = why if reason == ASKED and why else reason
        if why and options["env_state"] == "auto":
            log(f"env state: every epoch resets the envs: {why}")
        if task.epoch_steps() != task.steps_per_epoch:
            asked = "--steps-per-epoch" if options["steps_per_epoch"] else "the default"
            log(f"epoch: {task.epoch_steps():,} env steps, {asked} {task.steps_per_epoch:,} "
                f"rounded up ({task.epoch_unit()[1]})")
        resumed["env_state_reason"] = why
        _observe(task, checkpointer, workdir, options, signals, board, label)
    except BaseException:
        task.close()
        if board:
            board.close()
        raise
    return Prepared(task, resumed, board, workdir)


class Prepared(NamedTuple):
    """A trial ready to train (``prepare``)."""

    task: Task
    resumed: dict[str, Any]
    board: TensorBoardLog | None
    workdir: Path

    def close(self) -> None:
        self.task.close()
        if self.board:
            self.board.close()


def finish(trial: Prepared, options: dict[str, Any], log: Log) -> dict[str, Any]:
    """After ``fit``: evaluate the final policy, close, write ``results.json``; the results
    (reported to Orion by the caller)."""
    task, resumed = trial.task, trial.resumed
    try:
        if task.stop_reason is not None and resumed["stopped"] is None:
            log(task.stop_reason)
        final = task.evaluate(options["eval_episodes"])
    finally:
        trial.close()
    results = _results(task, options, final, resumed, trial.workdir)
    write_results(trial.workdir, results)
    return results
