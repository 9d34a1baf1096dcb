"""One trial, alone or under ``orion hunt``.

parse hyperparameters (command line > ``--config`` file > defaults) -> build the task ->
resume from the working dir's newest valid checkpoint -> ``fit(epochs)`` with a checkpoint
after every epoch -> evaluate -> write ``results.json``, report ``-return_mean`` to Orion and
print one JSON line. This module never touches a tensor: that is the task's business.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from rltasks.checkpoint import Checkpointer, CheckpointError, write_atomic
from rltasks.preempt import Preempted, StopAtEpochEnd, StopSignals, interrupt_code
from rltasks.task import NonFiniteError
from rltasks.workdir import WorkdirLock

#: Options every script takes, besides one ``--<hparam>`` per hyperparameter.
RUN_OPTIONS: dict[str, tuple[type, Any, str]] = {
    "env": (str, None, "env id (default: the task's, e.g. CartPole-v1 or Pendulum-v1)"),
    "epochs": (int, 10, "train until this epoch (absolute)"),
    "steps_per_epoch": (int, None, "env steps per epoch, summed over envs"),
    "seed": (int, 0, "seed of everything"),
    "num_envs": (int, None, "parallel envs (default: the task's, 8 on-policy, 1 for dqn)"),
    "horizon": (int, None, "epochs over which lr/clip schedules run (default: --epochs)"),
    "vectorization": (str, "auto", "auto, sync, async or native"),
    "norm_obs": (bool, False, "normalise observations with running statistics"),
    "norm_reward": (bool, False, "normalise rewards by the running return std"),
    "workdir": (str, None, "checkpoints and results (default $ORION_WORKING_DIR, "
                           "else runs/<task>-<env>-<seed>)"),
    "eval_episodes": (int, 10, "episodes of the final evaluation"),
    "eval_every": (int, 0, "evaluate every N epochs and keep best.ckpt (0: never)"),
    "save_freq": (int, 1, "write last.ckpt every N epochs"),
    "save_best": (bool, True, "with --eval-every, keep the best evaluation in best.ckpt"),
    "keep": (int, 3, "checkpoint files kept (last.ckpt and older)"),
    "criterion": (float, None, "stop early once the mean return of the last --trial-count "
                               "training episodes reaches this (default: never)"),
    "trial_count": (int, 100, "episodes the early-stopping mean runs over"),
    "tensorboard": (bool, False, "also write TensorBoard event files to WORKDIR/tb/ "
                                 "(needs tensorboard)"),
}
_POSITIVE = ("epochs", "num_envs", "eval_episodes", "save_freq", "keep", "trial_count")


class UsageError(ValueError):
    """A bad command line, config file or hyperparameter: reported in one line."""


def _parse_bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean")


def build_parser(task_name: str) -> argparse.ArgumentParser:
    """Parser with the run options and one ``--<hparam>`` (dashes or underscores) each."""
    from rltasks.tasks import REGISTRY

    cls = REGISTRY[task_name]
    parser = argparse.ArgumentParser(
        prog=f"{task_name}", description=f"Train {task_name} as one (Orion) trial.",
        argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML/JSON file of options and hyperparameters "
                        "(Orion hands over its trial config here)")
    run = parser.add_argument_group("run")
    hps = parser.add_argument_group("hyperparameters")
    for group, items in ((run, RUN_OPTIONS.items()),
                         (hps, ((k, (hp.kind, hp.default, hp.help))
                                for k, hp in cls.hparam_specs().items()))):
        for key, (kind, default, text) in items:
            names = [f"--{key.replace('_', '-')}"] + ([f"--{key}"] if "_" in key else [])
            if kind is bool:
                group.add_argument(*names, dest=key, type=_parse_bool, nargs="?", const=True,
                                   help=f"{text} (default {default})")
            else:
                group.add_argument(*names, dest=key, type=kind if kind is not int else float,
                                   help=f"{text} (default {default})")
    return parser


def load_config(path: str) -> dict[str, Any]:
    """Read a config by content (Orion's copies end in ``.conf``): YAML, which covers JSON."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf8"))
    except OSError as err:
        raise UsageError(f"cannot read --config {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UsageError(f"--config {path} is not YAML or JSON: {err}".splitlines()[0]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {path} must hold a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def resolve(task_name: str, argv: list[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(options, hparams)`` from the command line, the config file and defaults."""
    from rltasks.tasks import REGISTRY

    specs = REGISTRY[task_name].hparam_specs()
    given = vars(build_parser(task_name).parse_args(argv))
    config = load_config(given.pop("config")) if "config" in given else {}
    priors = sorted(k for k, v in config.items() if isinstance(v, str) and v.startswith("orion~"))
    if priors:
        print(f"not under orion hunt: {', '.join(priors)} keep their defaults "
              f"(the config's search-space entries apply only to a hunt)", file=sys.stderr)
        config = {k: v for k, v in config.items() if k not in priors}
    unknown = sorted(set(config) - set(RUN_OPTIONS) - set(specs))
    if unknown:
        raise UsageError(f"unknown option(s) {unknown} in the config; valid: run options "
                         f"{sorted(RUN_OPTIONS)} and hyperparameters {sorted(specs)}")
    merged = {**config, **given}
    options = {k: merged.get(k, default) for k, (_, default, _) in RUN_OPTIONS.items()}
    options["env"] = options["env"] or REGISTRY[task_name].DEFAULT_ENV
    for key, (kind, _, _) in RUN_OPTIONS.items():
        value = options[key]
        if value is None:
            continue
        try:
            options[key] = _parse_bool(value) if kind is bool else (
                int(round(float(value))) if kind is int else kind(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            raise UsageError(f"--{key.replace('_', '-')} {value!r} is not a valid "
                             f"{kind.__name__}") from None
        if key in _POSITIVE and options[key] < 1:
            raise UsageError(f"--{key.replace('_', '-')} {value!r} must be >= 1")
    hparams = {k: v for k, v in merged.items() if k in specs}
    return options, hparams


def default_workdir(task_name: str, options: dict[str, Any]) -> Path:
    """``--workdir``, else Orion's per-trial dir, else ``runs/<task>-<env>-<seed>``."""
    if options["workdir"]:
        return Path(options["workdir"])
    if os.environ.get("ORION_WORKING_DIR"):
        return Path(os.environ["ORION_WORKING_DIR"])
    env = options["env"].replace("/", "_")  # namespaced ids: rltasks/PointReach-v0
    return Path("runs") / f"{task_name}-{env}-{options['seed']}"


def _checker(task_name: str, task: Any, workdir: Path):
    """Refuse a checkpoint of another task, env, loader setting or hyperparameters."""
    def check(payload: Any) -> None:
        if not isinstance(payload, dict) or "state" not in payload:
            raise ValueError(f"{workdir} holds a file that is not a task checkpoint; "
                             f"use another --workdir or delete it")
        ours = {"task": task_name, **task.fixed, **task.hparams()}
        theirs = {"task": payload.get("task"), **(payload.get("fixed") or {}),
                  **(payload.get("hparams") or {})}
        diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if diff:
            what = ", ".join(f"{k}={theirs.get(k)!r} there, {ours.get(k)!r} here" for k in diff)
            raise ValueError(f"{workdir} holds a checkpoint of another run ({what}); use "
                             f"another --workdir or delete it to start over")
    return check


def report_to_orion(results: dict[str, Any]) -> None:
    """Hand the objective and statistics to Orion when running as one of its trials.

    This writes what ``orion.client.report_results`` writes, to the same file, without
    importing Orion in every trial (which costs start-up time and import-time warnings).
    """
    path = os.environ.get("ORION_RESULTS_PATH")
    if not path:
        return
    data = [{"name": "objective", "type": "objective", "value": results["objective"]}]
    data += [{"name": k, "type": "statistic", "value": results[k]}
             for k in ("return_mean", "return_std", "length_mean", "env_steps")]
    Path(path).write_text(json.dumps(data), encoding="utf8")


def run(task_name: str, options: dict[str, Any], hparams: dict[str, Any],
        log=None) -> dict[str, Any]:
    """Train one trial to ``options['epochs']`` with checkpoints; return its results.

    The working dir's lock (``rltasks.workdir``) is held throughout: a second process on the
    same dir raises ``LockError``. SIGTERM/SIGINT stop training at the next epoch boundary,
    checkpointed, by raising ``rltasks.preempt.Preempted``.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    workdir = default_workdir(task_name, options)
    # signals first: env workers forked while the task is built inherit the handler
    with StopSignals(log) as signals, WorkdirLock(workdir, log=log):
        return _train(task_name, options, hparams, log, workdir, signals)


def _train(task_name: str, options: dict[str, Any], hparams: dict[str, Any], log,
           workdir: Path, signals: StopSignals) -> dict[str, Any]:
    import rltasks
    from rltasks.observers import (
        Checkpointing,
        EarlyStop,
        MetricsLog,
        TensorBoardLog,
        progress_observer,
    )

    epochs = options["epochs"]
    board = TensorBoardLog(workdir / "tb") if options.get("tensorboard") else None
    task = rltasks.make_task(
        task_name, env=options["env"], num_envs=options["num_envs"], seed=options["seed"],
        steps_per_epoch=options["steps_per_epoch"], horizon=options["horizon"] or epochs,
        vectorization=options["vectorization"], norm_obs=options["norm_obs"],
        norm_reward=options["norm_reward"])
    task.init(**hparams)
    checkpointer = Checkpointer(workdir, keep=options["keep"])
    checkpointer.clean_tmp()
    found = checkpointer.load_latest(check=_checker(task_name, task, workdir), log=log)
    resumed_from = stopped = None
    if found is not None:
        payload, path = found
        task.load_state_dict(payload["state"])
        resumed_from = task.epoch
        log(f"resumed from {path} at epoch {task.epoch}")
        stopped = EarlyStop.resume(task, payload.get("run"))
        if stopped is not None:
            log(f"early stop recorded at epoch {stopped}: not training further")
    if options["criterion"] is not None:
        task.observers.append(EarlyStop(options["criterion"], options["trial_count"]))
    task.observers += [
        Checkpointing(checkpointer, every=options["save_freq"], final_epoch=epochs,
                      eval_every=options["eval_every"], eval_episodes=options["eval_episodes"],
                      save_best=options["save_best"]),
        MetricsLog(workdir / "metrics.jsonl"),
        *([board] if board else []),
        progress_observer(epochs),
        StopAtEpochEnd(signals, checkpointer, options["save_freq"], epochs),
    ]
    try:
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
        if task.stop_reason is not None and stopped is None:
            log(task.stop_reason)
        final = task.evaluate(options["eval_episodes"])
    finally:
        task.close()
        if board:
            board.close()
    results = {"task": task_name, "env": options["env"], "seed": options["seed"],
               "objective": -final["return_mean"], **final, "epoch": task.epoch,
               "env_steps": task.env_steps, "resumed_from": resumed_from,
               "early_stopped_at": getattr(task, "run_state", {}).get(
                   "early_stop", {}).get("stopped_at"),
               "hparams": task.hparams(), "workdir": str(workdir)}
    write_atomic(workdir / "results.json", json.dumps(results, indent=2).encode())
    report_to_orion(results)
    return results


def main(task_name: str, argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/<task>.py``: returns the process exit code.

    Bad input (options, hyperparameters, env id, a foreign checkpoint) exits 2 with one line
    on stderr, which Orion records as a broken trial; a diverged run exits 3 and keeps its
    last good checkpoint. A working dir locked by another process, or a checkpoint that
    cannot be written (the previous one stays intact), exits 2 too. SIGTERM/SIGINT exit
    with Orion's interrupt code (130 unless ``$ORION_INTERRUPT_CODE`` says otherwise) once
    the epoch in progress is checkpointed, so Orion marks the trial interrupted, not broken.
    """
    try:
        options, hparams = resolve(task_name, argv)
        results = run(task_name, options, hparams)
    except (ValueError, CheckpointError, OSError) as err:
        code = 3 if isinstance(err, NonFiniteError) else 2
        print(f"error: {err}", file=sys.stderr)
        return code
    except Preempted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return interrupt_code()
    except KeyboardInterrupt:
        print("interrupted: stopped at once; the last checkpoint is intact, rerun the same "
              "command to resume", file=sys.stderr)
        return interrupt_code()
    print(json.dumps(results))
    return 0
