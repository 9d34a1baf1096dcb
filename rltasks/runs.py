"""Reopen a finished (or interrupted) run: the task rebuilt from its checkpoint.

``rltasks eval``, ``export`` and ``record`` start here. A checkpoint holds the task name, the
``make_task`` arguments (``fixed``), the hyperparameters and the state, which is all that
rebuilding the agent needs: ``make_task(task, **fixed).init(**hparams).load_state_dict(state)``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rltasks.checkpoint import Checkpointer, CheckpointError, load


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


def load_task(path: str | Path, best: bool = False, **overrides: Any) -> Any:
    """Rebuild the task a checkpoint (or a run dir's newest valid one) holds, state loaded.

    ``overrides`` replace ``make_task`` arguments that do not shape the agent, e.g.
    ``vectorization="sync"`` to avoid starting worker processes for a quick evaluation.
    """
    import rltasks

    file = checkpoint_of(path, best=best)
    if file.name.startswith("last.ckpt") and file.parent.is_dir():
        found = Checkpointer(file.parent).load_latest(
            log=lambda msg: print(msg, file=sys.stderr))
        payload = found[0] if found else load(file)
    else:
        payload = load(file)
    if not isinstance(payload, dict) or "state" not in payload or "task" not in payload:
        raise CheckpointError(f"{file} is not a task checkpoint", path=file,
                              reason="no task or state entry")
    fixed = {**(payload.get("fixed") or {}), **overrides}
    env = fixed.pop("env")
    task = rltasks.make_task(payload["task"], env=env, **fixed)
    task.init(**(payload.get("hparams") or {}))
    task.load_state_dict(payload["state"])
    return task
