"""One process per working dir (rltasks.trial.workdir): real trial processes, then the lock's rules.

A second trial on a busy working dir exits 2 at once with one line naming the owner's pid and
host; a lock left by a SIGKILLed trial is taken over by the rerun with a log line.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers import finish_process, kill_group, launch, results_in, wait_for

from rltasks import checkpoint
from rltasks.trial.workdir import LOCK_NAME, LockError, WorkdirLock, process_start

FAST = ["--env", "CartPole-v1", "--steps-per-epoch", "1024", "--num-envs", "2",
        "--eval-episodes", "2"]
HOST = socket.gethostname()


def test_second_process_on_a_busy_workdir_refuses_naming_owner_pid_and_host(tmp_path):
    workdir = tmp_path / "run"
    first = launch("ppo", *FAST, "--epochs", "50", workdir=workdir)
    try:
        wait_for(lambda: (workdir / "last.ckpt").exists(), first, "the first checkpoint")
        start = time.monotonic()
        code, err = finish_process(launch("ppo", *FAST, "--epochs", "50", workdir=workdir))
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith(f"error: working dir {workdir} is in use by pid {first.pid} "
                                   f"on this host ({HOST}, since ")
        assert f"lock file {workdir / LOCK_NAME}" in lines[0]
        assert time.monotonic() - start < 30  # refused at start-up, before any training
        assert first.poll() is None  # the owner goes on, its files untouched
        owner = json.loads((workdir / LOCK_NAME).read_text())
        assert (owner["pid"], owner["host"]) == (first.pid, HOST)
    finally:
        first.send_signal(signal.SIGTERM)
    code, err = finish_process(first)
    assert code == 130, err[-3000:]
    assert not (workdir / LOCK_NAME).exists()  # removed at exit
    assert checkpoint.load(workdir / "last.ckpt")["epoch"] >= 1


def test_lock_of_a_sigkilled_trial_is_taken_over_by_the_rerun(tmp_path):
    workdir = tmp_path / "run"
    first = launch("ppo", *FAST, "--epochs", "3", workdir=workdir)
    wait_for(lambda: (workdir / "last.ckpt").exists(), first, "the first checkpoint")
    kill_group(first)
    stale = json.loads((workdir / LOCK_NAME).read_text())
    assert stale["pid"] == first.pid
    code, err = finish_process(launch("ppo", *FAST, "--epochs", "3", workdir=workdir))
    assert code == 0, err[-3000:]
    assert (f"taking over the stale lock {workdir / LOCK_NAME}: pid {first.pid} on this host "
            f"({HOST}) is no longer running") in err
    assert results_in(workdir)["resumed_from"] >= 1
    assert not (workdir / LOCK_NAME).exists()


def test_bad_input_leaves_no_working_dir(tmp_path):
    code, err = finish_process(launch("ppo", *FAST, "--epochs", "1", "--lr", "-1",
                                      workdir=tmp_path / "run"))
    assert code == 2 and not (tmp_path / "run").exists(), err


# ------------------------------------------------------------------------- the lock's rules

def write_lock(workdir: Path, **info) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_NAME
    path.write_text(json.dumps({"pid": 1, "host": HOST, "started": "then", **info}))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_live_owner_refuses_and_release_removes_only_our_lock(tmp_path):
    logs: list[str] = []
    with WorkdirLock(tmp_path, log=logs.append) as lock:
        info = json.loads(lock.path.read_text())
        assert (info["pid"], info["host"]) == (os.getpid(), HOST)
        with pytest.raises(LockError, match=f"in use by pid {os.getpid()} on this host"):
            WorkdirLock(tmp_path).acquire()
        lock.path.write_text(json.dumps({**info, "token": "someone else's"}))
    assert lock.path.exists() and not logs  # not ours any more: left alone


def test_lock_of_another_host_is_never_taken_over(tmp_path):
    path = write_lock(tmp_path, host="elsewhere", pid=os.getpid())
    with pytest.raises(LockError) as info:
        WorkdirLock(tmp_path).acquire()
    assert "in use by pid" in str(info.value) and "host elsewhere" in str(info.value)
    assert f"delete {path} once it does not" in str(info.value)


@pytest.mark.parametrize("case", ["dead pid", "zombie", "reused pid", "other boot", "garbage"])
def test_stale_lock_is_taken_over_with_a_log_line(tmp_path, case):
    zombie = None
    if case == "dead pid":
        path = write_lock(tmp_path, pid=dead_pid())
    elif case == "zombie":  # exited, never reaped: os.kill(pid, 0) still succeeds
        zombie = subprocess.Popen(["true"])
        stat = Path(f"/proc/{zombie.pid}/stat")
        while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
        path = write_lock(tmp_path, pid=zombie.pid)
    elif case == "reused pid":  # a live pid, but started later than the lock's owner
        path = write_lock(tmp_path, pid=os.getpid(), proc_start=process_start(os.getpid()) - 1)
    elif case == "other boot":
        path = write_lock(tmp_path, pid=os.getpid(), boot_id="an earlier boot")
    else:
        path = tmp_path / LOCK_NAME
        path.write_text("{not json")
        os.utime(path, (time.time() - 60, time.time() - 60))
    logs: list[str] = []
    with WorkdirLock(tmp_path, log=logs.append):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert len(logs) == 1 and logs[0].startswith(f"taking over the stale lock {path}: ")
    assert not path.exists()
    if zombie is not None:
        zombie.wait()


def test_unreadable_lock_being_written_right_now_is_respected(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    with pytest.raises(LockError, match="being locked by another process right now"):
        WorkdirLock(tmp_path).acquire()


def _contend(workdir: str, barrier, results) -> None:
    barrier.wait()
    try:
        lock = WorkdirLock(workdir, log=lambda _: None).acquire()
    except LockError:
        results.put(False)
        return
    results.put(True)
    time.sleep(1.0)  # hold it while the others try
    lock.release()


def test_of_many_processes_taking_over_one_stale_lock_exactly_one_wins(tmp_path):
    write_lock(tmp_path, pid=dead_pid())
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(str(tmp_path), barrier, results))
             for _ in range(n)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in range(n)]
    for proc in procs:
        proc.join(timeout=60)
    assert outcomes.count(True) == 1, outcomes
    assert sorted(os.listdir(tmp_path)) == []  # the winner released it; no stray files


def test_working_dir_made_by_the_lock_goes_if_nothing_was_written(tmp_path):
    with WorkdirLock(tmp_path / "a" / "b"):
        pass
    assert not (tmp_path / "a" / "b").exists()
    with WorkdirLock(tmp_path / "c"):
        (tmp_path / "c" / "last.ckpt").write_bytes(b"x")
    assert (tmp_path / "c" / "last.ckpt").exists() and not (tmp_path / "c" / LOCK_NAME).exists()


def test_unwritable_working_dir_is_a_lock_error_naming_the_reason(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(LockError, match=f"cannot lock working dir {tmp_path}: Read-only file "
                                        "system"):
        WorkdirLock(tmp_path).acquire()
