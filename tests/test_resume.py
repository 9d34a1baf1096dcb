"""Exact resume, the core promise: a run SIGKILLed and rerun ends as if it had never stopped.

A reference run goes uninterrupted. The same command in fresh working dirs is SIGKILLed at
seeded random moments, or while it is inside a checkpoint write (``tests/shims``), and rerun
until it exits 0; its final checkpoint state must equal the reference's bit for bit, and its
``results.json`` the reference's figures.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rltasks import checkpoint

ROOT = Path(__file__).resolve().parents[1]
SHIMS = Path(__file__).resolve().parent / "shims"
EPOCHS = 6
ARGS = ["--env", "CartPole-v1", "--epochs", str(EPOCHS), "--steps-per-epoch", "2048",
        "--num-envs", "4", "--seed", "7", "--eval-episodes", "3"]
RESULT_KEYS = ("return_mean", "return_std", "length_mean", "epoch", "env_steps")
RUN_TIMEOUT = 180  # seconds; one run takes a few
MIN_KILLS = 5  # kills at random moments, at least 2 of them after a checkpoint
MAX_ATTEMPTS = 12


@dataclass
class Reference:
    ckpt: dict[str, Any]
    results: dict[str, Any]
    first_ckpt: float  # seconds from launch until last.ckpt first exists
    duration: float  # seconds from launch until the process exited


def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLTASKS_TEST_")}
    return {**env, "RLTASKS_THREADS": "1", **extra}


def launch(workdir: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the trial in its own process group (so a kill takes any helper process too)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "ppo.py"), *ARGS, "--workdir", str(workdir)],
            cwd=ROOT, env=env or environ(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)


def sigkill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def finish(proc: subprocess.Popen, log: Path) -> None:
    """Wait for a run that should complete; kill it and fail if it does not."""
    try:
        code = proc.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        sigkill(proc)
        pytest.fail(f"run did not finish in {RUN_TIMEOUT} s:\n{log.read_text()[-3000:]}")
    assert code == 0, f"exit code {code}:\n{log.read_text()[-3000:]}"


def ckpt_epoch(workdir: Path) -> int | None:
    """Epoch of the workdir's last.ckpt (which an atomic write keeps always loadable)."""
    path = workdir / "last.ckpt"
    return checkpoint.load(path)["epoch"] if path.exists() else None


class CkptWatch:
    """The epoch of a workdir's last.ckpt, reloaded only when the file changes."""

    def __init__(self, workdir: Path) -> None:
        self.path, self.stamp, self.last = workdir / "last.ckpt", None, None

    def epoch(self) -> int | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp != self.stamp:
            self.stamp, self.last = stamp, checkpoint.load(self.path)["epoch"]
        return self.last


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


def assert_same_as_reference(workdir: Path, reference: Reference) -> None:
    ckpt = checkpoint.load(workdir / "last.ckpt")
    assert (ckpt["epoch"], ckpt["env_steps"]) == (reference.ckpt["epoch"],
                                                  reference.ckpt["env_steps"])
    diffs = state_diffs(ckpt["state"], reference.ckpt["state"])
    assert not diffs, f"{len(diffs)} differences after resume:\n" + "\n".join(diffs[:40])
    results = json.loads((workdir / "results.json").read_text())
    assert {k: results[k] for k in RESULT_KEYS} == {k: reference.results[k] for k in RESULT_KEYS}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    """One uninterrupted run, timed so that the kill moments scale with this machine."""
    workdir = tmp_path_factory.mktemp("reference")
    log = workdir.parent / f"{workdir.name}.log"
    start = time.monotonic()
    proc = launch(workdir, log)
    first_ckpt = None
    while proc.poll() is None and time.monotonic() - start < RUN_TIMEOUT:
        if first_ckpt is None and (workdir / "last.ckpt").exists():
            first_ckpt = time.monotonic() - start
        time.sleep(0.01)
    finish(proc, log)
    duration = time.monotonic() - start
    ckpt = checkpoint.load(workdir / "last.ckpt")
    results = json.loads((workdir / "results.json").read_text())
    assert ckpt["epoch"] == results["epoch"] == EPOCHS and results["resumed_from"] is None
    return Reference(ckpt, results, first_ckpt or duration, duration)


def test_sigkilled_at_random_moments_then_rerun_ends_exactly_as_uninterrupted(
        reference, tmp_path):
    rng = random.Random(3)
    workdir, log = tmp_path / "run", tmp_path / "run.log"
    boot = reference.first_ckpt  # start-up plus one epoch
    span = reference.duration - boot  # the other epochs, evaluation and exit
    kills: list[tuple[float, int | None]] = []  # (seconds, epoch of last.ckpt at the kill)
    for _ in range(MAX_ATTEMPTS):
        after_ckpt = sum(epoch is not None for _, epoch in kills)
        if len(kills) >= MIN_KILLS and after_ckpt >= 2:
            break
        start_epoch = ckpt_epoch(workdir)
        left = (EPOCHS - (start_epoch or 0)) / EPOCHS
        delay = rng.uniform(0.2, 1.0) * (boot + span * left)  # a moment in this rerun
        start = time.monotonic()
        proc = launch(workdir, log)
        # Wall-clock noise (a busy machine) must not let the run finish before enough kills:
        # while kills after a checkpoint are still missing, the last epochs are not allowed.
        watch = CkptWatch(workdir)
        while proc.poll() is None:
            now = time.monotonic() - start
            epoch = watch.epoch()
            if now >= delay or (after_ckpt < 2 and (epoch or 0) >= EPOCHS - 1):
                sigkill(proc)
                assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
                kills.append((round(now, 2), ckpt_epoch(workdir) if epoch is not None else None))
                break
            time.sleep(0.01)
        else:
            break  # it finished before its kill
    else:
        pytest.fail(f"{MAX_ATTEMPTS} attempts, still too few kills after a checkpoint: {kills}")
    if proc.returncode == -signal.SIGKILL:  # enough kills: the last rerun goes to the end
        start_epoch = ckpt_epoch(workdir)
        proc = launch(workdir, log)
    finish(proc, log)
    after_ckpt = sum(epoch is not None for _, epoch in kills)
    assert after_ckpt >= 2, f"too few kills after a checkpoint existed: {kills}"
    assert_same_as_reference(workdir, reference)
    results = json.loads((workdir / "results.json").read_text())
    assert results["resumed_from"] == start_epoch, (kills, log.read_text()[-3000:])


@pytest.mark.parametrize("nth_fsync", [1, 7])  # today: epoch 1's and epoch 4's temp file
def test_sigkilled_inside_a_checkpoint_write_then_rerun_ends_exactly_as_uninterrupted(
        reference, tmp_path, nth_fsync):
    workdir, log, marker = tmp_path / "run", tmp_path / "run.log", tmp_path / "stalled"
    pythonpath = os.pathsep.join(filter(None, [str(SHIMS), os.environ.get("PYTHONPATH")]))
    proc = launch(workdir, log, environ(PYTHONPATH=pythonpath,
                                        RLTASKS_TEST_STALL_FSYNC=str(marker),
                                        RLTASKS_TEST_STALL_FSYNC_AT=str(nth_fsync)))
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not marker.exists():
            assert proc.poll() is None, f"exited before fsync #{nth_fsync}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"fsync #{nth_fsync} not reached in time"
            time.sleep(0.01)
    finally:
        sigkill(proc)
    stalled = Path(marker.read_text()) if marker.read_text() else None  # file being flushed
    if stalled is not None and stalled.name.startswith(".last.ckpt.") and stalled.suffix == ".tmp":
        assert stalled.exists(), "a checkpoint temp file was written but is gone after SIGKILL"
    start_epoch = ckpt_epoch(workdir)  # loads: the file being replaced is never half-written

    proc = launch(workdir, log)
    finish(proc, log)
    assert not list(workdir.glob(".last.ckpt.*.tmp")), "the rerun left the killed temp file"
    assert_same_as_reference(workdir, reference)
    results = json.loads((workdir / "results.json").read_text())
    assert results["resumed_from"] == start_epoch
