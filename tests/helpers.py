"""Shared test helpers (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def state_diffs(a: Any, b: Any, path: str = "state") -> list[str]:
    """Every place where two nested states differ: tensors and arrays must have the same dtype,
    shape and values, other leaves the same type and value (floats exactly, NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return [f"{path}: {type(a).__name__} vs {type(b).__name__}"]
        if a.dtype != b.dtype or a.shape != b.shape:
            return [f"{path}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"]
        same = torch.equal(a, b) or (
            (a.is_floating_point() or a.is_complex()) and torch.equal(a.isnan(), b.isnan())
            and torch.equal(a[~a.isnan()], b[~b.isnan()]))
        return [] if same else [f"{path}: tensor values differ"]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return [f"{path}: {type(a).__name__} vs {type(b).__name__}"]
        if a.dtype != b.dtype or a.shape != b.shape:
            return [f"{path}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"]
        same = np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        return [] if same else [f"{path}: array values differ"]
    if type(a) is not type(b):
        return [f"{path}: {type(a).__name__} {a!r:.60} vs {type(b).__name__} {b!r:.60}"]
    if isinstance(a, dict):
        diffs = [f"{path}.{k}: only in one state" for k in a.keys() ^ b.keys()]
        for key in a:
            if key in b:
                diffs += state_diffs(a[key], b[key], f"{path}.{key}")
        return diffs
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in state_diffs(x, y, f"{path}[{i}]")]
    if isinstance(a, float | np.floating) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [f"{path}: {a!r:.60} vs {b!r:.60}"]


def assert_same_state(a: Any, b: Any) -> None:
    """Assert two nested states are identical (see ``state_diffs``)."""
    diffs = state_diffs(a, b)
    assert not diffs, f"{len(diffs)} differences:\n" + "\n".join(diffs[:40])


def train_until(task, threshold: float, max_steps: int, eval_every: int = 1) -> tuple[float, int]:
    """Fit epoch by epoch; evaluate every few epochs; stop at the threshold or the budget."""
    best = float("-inf")
    while task.env_steps + task.steps_per_epoch <= max_steps:
        task.fit(task.epoch + 1)
        if task.epoch % eval_every == 0:
            best = max(best, task.evaluate(episodes=10)["return_mean"])
            if best >= threshold:
                break
    return best, task.env_steps


def assert_resumes_exactly(make: Any, tmp_path: Any, stop: int = 1, end: int = 2) -> Any:
    """Train ``make()`` straight to epoch ``end``; train another to ``stop``, save its state to
    a checkpoint file, load that into a third and train it to ``end``: the two must end
    identical. Returns the straight-through task."""
    from rltasks import checkpoint

    straight = make()
    straight.fit(end)
    first = make()
    first.fit(stop)
    path = tmp_path / "resume.ckpt"
    checkpoint.save(path, first.state_dict())
    resumed = make()
    resumed.load_state_dict(checkpoint.load(path))
    resumed.fit(end)
    assert_same_state(straight.state_dict(), resumed.state_dict())
    return straight


def finish_process(proc: Any, timeout: float) -> tuple[int, str]:
    """Wait for a subprocess started in its own session (pipes for stdout and stderr); kill
    its process group and fail the test if it does not exit in time. Returns (code, stderr)."""
    import os
    import signal
    import subprocess

    import pytest

    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the process did not exit in {timeout} s:\n{err[-3000:]}")
    return proc.returncode, err
