"""The task checkpoint payload: what a run's checkpoint holds, written, checked and reopened.

``rltasks.checkpoint`` is the codec (any nesting of plain values, arrays and tensors). A *task*
checkpoint is one mapping, built here and nowhere else:

- ``task``: the task name; ``fixed``: the ``make_task`` arguments (env, seed, num_envs, ...);
  ``hparams``: the hyperparameters in force (``Task.hparams()``);
- ``epoch``, ``env_steps``: where the run is; ``state``: ``Task.state_dict()``;
- ``run``: the runner's own bookkeeping (early stopping), when there is any;
- ``versions``: the manifest of the libraries that wrote it (rltasks, torch, gymnasium, numpy),
  which ``rltasks inspect`` shows. Checkpoints of releases before the manifest have none.

Reopening is ``make_task(task, **fixed).init(**hparams).load_state_dict(state)``: the
checkpoint's own description of the run is all that rebuilding the agent needs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

import rltasks
from rltasks.checkpoint import Checkpointer, CheckpointError, load
from rltasks.envs.registry import split_env_id
from rltasks.task import Task

#: the payload entries every task checkpoint has (``run`` and ``versions`` are optional)
REQUIRED = ("task", "fixed", "hparams", "epoch", "env_steps", "state")


def versions() -> dict[str, str]:
    """The manifest of the libraries in use, recorded in every checkpoint."""
    return {"rltasks": rltasks.__version__, "torch": torch.__version__,
            "gymnasium": gymnasium.__version__, "numpy": np.__version__}


def make_payload(task: Task) -> dict[str, Any]:
    """The checkpoint of ``task`` as it is now (see the module docstring)."""
    payload = {"task": task.name, "hparams": task.hparams(), "fixed": dict(task.fixed),
               "epoch": task.epoch, "env_steps": task.env_steps, "state": task.state_dict(),
               "versions": versions()}
    run_state = getattr(task, "run_state", None)
    if run_state:  # the run's own bookkeeping (early stopping), beside the task's state
        payload["run"] = run_state
    return payload


def check_shape(payload: Any, source: Path | str) -> dict[str, Any]:
    """Return ``payload`` if it has a task checkpoint's entries, else raise a one-line
    ``CheckpointError`` naming what is missing."""
    if not isinstance(payload, dict):
        raise CheckpointError(f"{source} is not a task checkpoint (it holds a "
                              f"{type(payload).__name__})", path=source, reason="not a mapping")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"{source} is not a task checkpoint: no {', '.join(missing)}",
                              path=source, reason=f"no {', '.join(missing)}")
    if not isinstance(payload["fixed"], dict) or "env" not in payload["fixed"]:
        raise CheckpointError(f"{source} is not a task checkpoint: its 'fixed' names no env",
                              path=source, reason="no fixed.env")
    return payload


def identity(payload: dict[str, Any], hparams: bool = True,
             without: tuple[str, ...] = ()) -> dict[str, Any]:
    """What makes a run that run: its task, ``make_task`` arguments and (with ``hparams``) its
    hyperparameters, flat, less the names in ``without`` (``("seed",)`` groups seeds)."""
    flat = {"task": payload.get("task"), **(payload.get("fixed") or {}),
            **((payload.get("hparams") or {}) if hparams else {})}
    return {k: v for k, v in flat.items() if k not in without}


def same_run_checker(task: Task, workdir: Path, allow_hparam_change: bool = False
                     ) -> Callable[[Any], None]:
    """A ``Checkpointer.load_latest`` check: refuse a checkpoint of another task, env or
    loader setting, and one of other hyperparameters unless ``allow_hparam_change`` (then the
    caller adopts it, as PBT does)."""
    def check(payload: Any) -> None:
        if not isinstance(payload, dict) or "state" not in payload:
            raise ValueError(f"{workdir} holds a file that is not a task checkpoint; "
                             f"use another --workdir or delete it")
        compare = not allow_hparam_change
        ours = identity({"task": task.name, "fixed": task.fixed, "hparams": task.hparams()},
                        hparams=compare)
        theirs = identity(payload, hparams=compare)
        hint = "use another --workdir or delete it to start over"
        if compare:
            hint += (", or pass --allow-hparam-change to continue it with these "
                     "hyperparameters (as PBT does)")
        diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if diff:
            what = ", ".join(f"{k}={theirs.get(k)!r} there, {ours.get(k)!r} here" for k in diff)
            raise ValueError(f"{workdir} holds a checkpoint of another run ({what}); {hint}")
    return check


def restore(task: Task, payload: dict[str, Any]) -> dict[str, list[Any]] | None:
    """Load ``payload``'s state into ``task`` (built and ``init``-ed already). A checkpoint of
    other hyperparameters (``--allow-hparam-change``) is adopted: returns the changes."""
    if payload.get("hparams") == task.hparams():
        task.load_state_dict(payload["state"])
        return None
    return task.adopt_state_dict(payload["state"], payload.get("hparams") or {})


def checkpoint_of(path: str | Path, best: bool = False) -> Path:
    """The checkpoint file of ``path``: a file as given, else a run dir's ``last.ckpt``
    (``best.ckpt`` with ``best``, falling back to ``last.ckpt`` when there is none)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ValueError(f"{path} is neither a run directory nor a checkpoint file")
    names = ("best.ckpt", "last.ckpt") if best else ("last.ckpt",)
    for name in names:
        if (path / name).is_file():
            return path / name
    raise ValueError(f"{path} holds no {' or '.join(names)}: not a run directory "
                     f"(train one with `rltasks train TASK --workdir {path}`)")


def read_payload(path: str | Path, best: bool = False) -> tuple[dict[str, Any], Path]:
    """The payload of a checkpoint file, or of a run dir's newest valid checkpoint (falling
    back past damaged ones, as a resuming run does), and the file it came from."""
    file = checkpoint_of(path, best=best)
    found = None
    if file.name.startswith("last.ckpt") and file.parent.is_dir():
        found = Checkpointer(file.parent).load_latest(
            log=lambda msg: print(msg, file=sys.stderr))
    payload, file = found if found else (load(file), file)
    return check_shape(payload, file), file


def check_env_module(env: str, allowed: str | None, source: Path | str) -> None:
    """A checkpoint never makes rltasks import a module by itself: the run of a
    ``module:EnvId`` env reopens only when the user names that module (``--env-module``)."""
    module, _ = split_env_id(str(env))
    if module is not None and module != allowed:
        raise ValueError(f"{source} is a run of {env!r}, whose env needs `import {module}`; "
                         f"rltasks imports no module because a file says so: pass "
                         f"--env-module {module} to allow it")


def load_task(path: str | Path, best: bool = False, env_module: str | None = None,
              **overrides: Any) -> Task:
    """Rebuild the task a checkpoint (or a run dir's newest valid one) holds, state loaded.

    ``env_module`` allows the import of the module of a ``module:EnvId`` env
    (``check_env_module``). ``overrides`` replace ``make_task`` arguments that do not shape
    the agent, e.g. ``vectorization="sync"`` to avoid starting worker processes.

    A checkpoint whose ``fixed`` has no ``env_state`` was written in reset mode (every
    checkpoint before env snapshots): it is rebuilt with ``env_state="reset"``. A snapshot
    checkpoint rebuilt with another vectorization is too (other envs cannot take its
    snapshot): its networks and statistics load, its running episodes are dropped.
    """
    payload, file = read_payload(path, best=best)
    fixed = {"env_state": "reset", **payload["fixed"], **overrides}
    if fixed.get("vectorization") != payload["fixed"].get("vectorization"):
        fixed["env_state"] = "reset"
    env = fixed.pop("env")
    check_env_module(env, env_module, file)
    task = rltasks.make_task(payload["task"], env=env, **fixed)
    try:
        task.init(**(payload["hparams"] or {}))
        task.load_state_dict(payload["state"])
    except BaseException:
        task.close()
        raise
    return task
