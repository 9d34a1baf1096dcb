"""A trained run's deterministic evaluation (``rltasks eval RUN_DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rltasks.trial.payload import checkpoint_of, load_task


def evaluate_run(path: str | Path, episodes: int = 10, best: bool = False,
                 env_module: str | None = None) -> dict[str, Any]:
    """Rebuild a run's task from its checkpoint and evaluate it (the eval envs' seeds are the
    task's own, so a finished run scores what its results.json says)."""
    if episodes < 1:
        raise ValueError(f"--episodes {episodes} must be >= 1")
    task = load_task(path, best=best, env_module=env_module)
    try:
        result = task.evaluate(episodes)
    finally:
        task.close()
    return {"task": task.name, "env": task.env_id, "checkpoint": str(checkpoint_of(path, best)),
            "epoch": task.epoch, "env_steps": task.env_steps, **result}
