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

A sound file (its checksum holds) may still hold a state that is not the task's: a key
missing, a value of the wrong kind, a tensor of the wrong shape, another program's
structure. ``restore`` checks the state against the fresh task's own ``state_dict()``
(``check_state``) before applying it, and turns whatever still fails while applying it into
``BadState``, a one-line ``CheckpointError``; ``Checkpointer.load_latest`` then falls back to
the next older checkpoint, in a task built afresh (a state applied halfway leaves a task
half-modified).
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
from rltasks.checkpoint import MAX_FILE_BYTES, Checkpointer, CheckpointError, load
from rltasks.envs import in_process_vectorization
from rltasks.envs.registry import split_env_id
from rltasks.safeio import size_text
from rltasks.task import Task, replay_bytes
from rltasks.trial.files import seed_dirs

#: the payload entries every task checkpoint has (``run`` and ``versions`` are optional)
REQUIRED = ("task", "fixed", "hparams", "epoch", "env_steps", "state")


class BadState(CheckpointError, ValueError):
    """A checkpoint file that reads (its checksum holds) but whose state does not fit the
    task: damaged before it was checksummed, or another program's (bad input: a
    ``ValueError`` too)."""


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def _scalar_like(value: Any) -> bool:
    return isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0)


def _fits(template: Any, value: Any) -> bool:
    """Whether a leaf ``value`` is of the kind of the template's leaf."""
    if _scalar_like(template) and _scalar_like(value):  # a 0-d array or a numpy scalar:
        return value.dtype == template.dtype  # numpy arithmetic turns one into the other
    if isinstance(template, torch.Tensor | np.ndarray):
        if type(value) is not type(template) or value.dtype != template.dtype:
            return False
        if template.ndim and template.shape[0] == 0:  # not filled yet (a replay buffer's)
            return value.ndim == template.ndim and value.shape[1:] == template.shape[1:]
        return value.shape == template.shape
    if isinstance(template, bool | np.bool_):
        return isinstance(value, bool | np.bool_)
    if isinstance(template, int | float | np.number):
        return isinstance(value, int | float | np.number) and not isinstance(value, bool)
    return isinstance(value, type(template))


def check_state(template: Any, state: Any, where: str = "state") -> None:
    """Raise ``ValueError`` naming the first place where ``state`` lacks the structure of
    ``template`` (a fresh task's ``state_dict()``): every key of a template mapping present,
    lists of the template's length checked item by item, tensors and arrays of its dtype and
    shape (any length where the template's is 0: a buffer not filled yet), numbers, strings
    and bytes of their kind. A ``None`` or an empty container of the template (what a fresh
    task has not filled yet) takes any value; keys the template lacks are ignored (what an
    older release saved and this one no longer reads)."""
    stack = [(template, state, where)]
    while stack:
        ours, theirs, at = stack.pop()
        if ours is None:
            continue
        if isinstance(ours, dict):
            if not isinstance(theirs, dict):
                raise ValueError(f"{at} is {_kind(theirs)}, not a mapping")
            missing = [k for k in ours if k not in theirs]
            if missing:
                raise ValueError(f"{at} has no {str(missing[0])[:60]}")
            stack += [(ours[k], theirs[k], f"{at}.{k}") for k in ours]
        elif isinstance(ours, list | tuple):
            if not isinstance(theirs, list | tuple):
                raise ValueError(f"{at} is {_kind(theirs)}, not a list")
            if len(theirs) == len(ours):
                stack += [(a, b, f"{at}[{i}]")
                          for i, (a, b) in enumerate(zip(ours, theirs, strict=True))]
        elif not _fits(ours, theirs):
            raise ValueError(f"{at} is {_kind(theirs)}, not {_kind(ours)}")


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


def check_fits_a_file(task: Task) -> None:
    """A one-line ValueError, before any training, when ``task``'s replay buffer once full
    would make a checkpoint larger than a checkpoint file holds (its first save would fail)."""
    hp = task.hparams()
    need, most = replay_bytes(task, hp), MAX_FILE_BYTES - 2**26  # 64 MiB for the rest
    if need > most:
        fits = int(hp["buffer_size"] * most / need) // 1000 * 1000
        raise ValueError(f"buffer_size={hp['buffer_size']} makes checkpoints of about "
                         f"{size_text(need)} once the buffer is full, more than the 4 GiB a "
                         f"checkpoint file holds: lower buffer_size to {fits} or less")


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


#: hyperparameters added after a release whose checkpoints lack them, and that change nothing
#: a checkpoint without them can hold: ``body`` (a CNN's, and those runs had vector
#: observations), ``subsample_steps`` (read only with ``gradient_steps=-1``, which those
#: releases refused), SAC's ``sde_sample_freq`` and ``log_std_init`` (read only with gSDE)
LATER_HPARAMS = ("body", "subsample_steps", "sde_sample_freq", "log_std_init")
#: hyperparameters added after a release, with the value its checkpoints behaved as: a run
#: continued with another value is another run
LATER_AS = {"auto_ent_coef": True, "use_sde": False, "ortho_init": True, "precision": "float32"}


def with_later(previous: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's hyperparameters with the ``LATER_HPARAMS`` it lacks taken as ours and
    the ``LATER_AS`` it lacks as the value it behaved as."""
    later = {k: ours[k] for k in LATER_HPARAMS if k in ours and k not in previous}
    behaved = {k: v for k, v in LATER_AS.items() if k in ours and k not in previous}
    return {**later, **behaved, **previous}


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
        hparams = task.hparams()
        ours = identity({"task": task.name, "fixed": task.fixed, "hparams": hparams},
                        hparams=compare)
        theirs = identity({**payload, "hparams": with_later(payload.get("hparams") or {},
                                                           hparams)}, hparams=compare)
        hint = "use another --workdir or delete it to start over"
        if compare:
            hint += (", or pass --allow-hparam-change to continue it with these "
                     "hyperparameters (as PBT does)")
        diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if diff:
            what = ", ".join(f"{k}={theirs.get(k)!r} there, {ours.get(k)!r} here" for k in diff)
            raise ValueError(f"{workdir} holds a checkpoint of another run ({what}); {hint}")
    return check


def restore(task: Task, payload: dict[str, Any], source: Path | str = "the checkpoint",
            adopt: bool = True) -> dict[str, list[Any]] | None:
    """Load ``payload``'s state into ``task`` (built and ``init``-ed already). A checkpoint of
    other hyperparameters (``--allow-hparam-change``) is adopted: returns the changes; one
    that changes a hyperparameter fixing a shape is refused (``ValueError``) untouched.
    ``adopt=False`` loads the state as it is (``load_task``: the checkpoint's own
    hyperparameters, which a release that declared fewer may not list in full).

    A state that does not fit the task raises ``BadState`` naming ``source`` and the place;
    ``task`` may then be half-modified: close it and restore into a new one."""
    previous = with_later(payload.get("hparams") or {}, task.hparams())
    adopt = adopt and previous != task.hparams()
    if adopt:
        task.check_adoptable(previous)  # a refusal, not a damaged file
    state = payload["state"]
    try:
        template = task.state_dict()
        if adopt:  # another optimizer family's moments may differ: adopt starts them afresh
            template.pop("optimizers", None)
        check_state(template, state)
        if not adopt:
            task.load_state_dict(state)
            return None
        return task.adopt_state_dict(state, previous)
    except Exception as err:  # whatever is wrong inside: one line, and the file is skipped
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        reason = f"its state does not fit {task.name} ({detail})"
        raise BadState(f"cannot load checkpoint {source}: {reason}", path=source,
                       reason=reason) from None


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
    seeds = seed_dirs(path)
    if seeds:
        raise ValueError(f"{path} is a --seeds run of {len(seeds)} seeds, each a run "
                         f"directory: name one ({', '.join(map(str, seeds[:3]))}"
                         f"{', ...' if len(seeds) > 3 else ''})")
    raise ValueError(f"{path} holds no {' or '.join(names)}: not a run directory "
                     f"(train one with `rltasks train TASK --workdir {path}`)")


def check_env_module(env: str, allowed: str | None, source: Path | str) -> None:
    """A checkpoint never makes rltasks import a module by itself: the run of a
    ``module:EnvId`` env reopens only when the user names that module (``--env-module``)."""
    module, _ = split_env_id(str(env))
    if module is not None and module != allowed:
        raise ValueError(f"{source} is a run of {env!r}, whose env needs `import {module}`; "
                         f"rltasks imports no module because a file says so: pass "
                         f"--env-module {module} to allow it")


def load_task(path: str | Path, best: bool = False, env_module: str | None = None,
              in_process: bool = False, **overrides: Any) -> Task:
    """Rebuild the task a checkpoint (or a run dir's newest valid one) holds, state loaded.

    ``env_module`` allows the import of the module of a ``module:EnvId`` env
    (``check_env_module``). ``in_process``: envs in this process, a run of
    ``vectorization="async"`` rebuilt with ``"sync"`` (any other, Atari's and EnvPool's
    included, kept: their envs are what the networks were shaped for). ``overrides`` replace
    ``make_task`` arguments that do not shape the agent (``device="cpu"``).

    A checkpoint whose ``fixed`` has no ``env_state`` was written in reset mode (every
    checkpoint before env snapshots): it is rebuilt with ``env_state="reset"``. A snapshot
    checkpoint rebuilt with another vectorization is too (other envs cannot take its
    snapshot): its networks and statistics load, its running episodes are dropped.
    """
    file = checkpoint_of(path, best=best)

    def reopen(payload: dict[str, Any], source: Path) -> Task:
        return _reopen(payload, source, env_module, in_process, overrides)

    if file.name.startswith("last.ckpt") and file.parent.is_dir():
        found = Checkpointer(file.parent).load_latest(
            log=lambda msg: print(msg, file=sys.stderr), apply=reopen, falls_back=(BadState,))
        if found is not None:
            return found[0]
    return reopen(load(file), file)


def _reopen(payload: dict[str, Any], source: Path, env_module: str | None, here: bool,
            overrides: dict[str, Any]) -> Task:
    """``load_task`` of one checkpoint's payload (``here``: ``load_task``'s ``in_process``):
    a ``BadState`` closes the task it built."""
    payload = check_shape(payload, source)  # another program's file: at once, no fallback
    fixed = {"env_state": "reset", **payload["fixed"], **overrides}
    if here and "vectorization" in fixed:
        fixed["vectorization"] = in_process_vectorization(fixed["vectorization"])
    if fixed.get("vectorization") != payload["fixed"].get("vectorization"):
        fixed["env_state"] = "reset"
    env = fixed.pop("env")
    check_env_module(env, env_module, source)
    task = rltasks.make_task(payload["task"], env=env, **fixed)
    try:
        task.init(**(payload["hparams"] or {}))
        restore(task, payload, source, adopt=False)
    except BaseException:
        task.close()
        raise
    return task
