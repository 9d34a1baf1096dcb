"""A full disk or a read-only working dir while a trial writes its checkpoint: exit 2 with one
clear line, the previous checkpoint intact and loadable, and the rerun (once there is room)
resumes from it.

Tests run as root, for whom permissions never block a write, so the failures are made two
ways: a start-up shim (``tests/shims/failing_writes``) that makes ``fsync`` or the opening of
a temp file fail with ENOSPC or EROFS, and, where this process may mount, a real tiny tmpfs
that fills up and is then remounted read-only.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import SHIMS, results_in, run_script, shimmed

from rltasks import checkpoint

SHIM = SHIMS / "failing_writes"
FAST = ["--env", "CartPole-v1", "--steps-per-epoch", "512", "--num-envs", "2",
        "--eval-episodes", "2", "--seed", "1"]


def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def assert_intact(workdir: Path, epoch: int) -> None:
    assert checkpoint.load(workdir / "last.ckpt")["epoch"] == epoch
    assert not list(workdir.glob(".*.tmp")), os.listdir(workdir)
    assert not (workdir / "rltasks.lock").exists() and not (workdir / "results.json").exists()


@pytest.mark.parametrize(("fail", "reason"), [
    ("fsync:28:3", "[Errno 28] No space left on device"),  # 3rd fsync: epoch 2's checkpoint
    ("open:30:2", "[Errno 30] Read-only file system"),     # 2nd temp file: epoch 2's
])
def test_failing_checkpoint_write_exits_2_keeps_the_previous_one_and_resumes(
        tmp_path, fail, reason):
    workdir = tmp_path / "run"
    failing = shimmed(SHIM, RLTASKS_TEST_FAIL_WRITES=fail)
    line = error_line(run_script("ppo", *FAST, "--epochs", "4", workdir=workdir, env=failing))
    assert line.startswith(f"error: cannot write checkpoint {workdir / 'last.ckpt'}: {reason}")
    assert line.endswith("; the previous checkpoint is intact")
    assert_intact(workdir, 1)
    assert not (workdir / "last.ckpt.1").exists()  # nothing rotated for the failed write
    done = run_script("ppo", *FAST, "--epochs", "4", workdir=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_in(workdir)
    assert results["resumed_from"] == 1 and results["epoch"] == 4


def mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def tmpfs(tmp_path):
    """A mounted 16 MiB tmpfs; skipped where this process may not mount."""
    point = tmp_path / "tmpfs"
    point.mkdir()
    if os.geteuid() != 0 or mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(point)
                                  ).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def test_real_full_disk_then_read_only_dir(tmpfs):
    """Two epochs written on the tmpfs, then a filler leaves room for half a checkpoint: the
    rerun resumes from epoch 2, and epoch 3's checkpoint, the first thing it writes, fails."""
    workdir = tmpfs / "run"
    assert run_script("ppo", *FAST, "--epochs", "2", workdir=workdir).returncode == 0
    size = (workdir / "last.ckpt").stat().st_size
    (workdir / "results.json").unlink()  # the run goes on to 5 epochs
    filler = tmpfs / "filler"
    with filler.open("wb") as f:
        f.write(b"\0" * (free_bytes(tmpfs) - size // 2))
    assert 0 < free_bytes(tmpfs) < size
    line = error_line(run_script("ppo", *FAST, "--epochs", "5", workdir=workdir))
    assert line == (f"error: cannot write checkpoint {workdir / 'last.ckpt'}: [Errno 28] No "
                    f"space left on device; the previous checkpoint is intact"), line
    saved = 2
    assert_intact(workdir, saved)
    assert checkpoint.load(workdir / "last.ckpt.1")["epoch"] == 1
    filler.unlink()

    # read-only: refused before anything is touched
    assert mount("-o", "remount,ro", str(tmpfs)).returncode == 0
    line = error_line(run_script("ppo", *FAST, "--epochs", "5", workdir=workdir))
    assert line.startswith(f"error: cannot lock working dir {workdir}: Read-only file system")
    assert checkpoint.load(workdir / "last.ckpt")["epoch"] == saved

    # room again: the rerun resumes from the intact checkpoint and completes
    assert mount("-o", "remount,rw,size=16m", str(tmpfs)).returncode == 0
    done = run_script("ppo", *FAST, "--epochs", "5", workdir=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_in(workdir)
    assert results["resumed_from"] == saved and results["epoch"] == 5
