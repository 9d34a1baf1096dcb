"""Hunts beyond one process: trials on a Dask cluster (``rltasks.orion.dask``), two ``orion hunt``
processes sharing one PickledDB, a SIGKILLed worker whose trial Orion re-queues (heartbeat),
and a pre-empted trial that Orion marks interrupted and a later hunt resumes.

Every Orion process uses the test's own PickledDB (the ``orion`` fixture); the Dask cluster
listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    Orion,
    environ,
    finish_process,
    kill_group,
    results_in,
    start,
    wait_for,
)

from rltasks import checkpoint

TIMEOUT = 240  # seconds for one hunt of these tests
SPACE = "lr: 'orion~loguniform(1e-4, 1e-2)'\n"
QUICK = ["--epochs", "1", "--steps-per-epoch", "512", "--num-envs", "2", "--eval-episodes", "2"]
SLOWER = ["--epochs", "5", "--steps-per-epoch", "2048", "--num-envs", "4", "--eval-episodes", "2"]

# Started in a subprocess: a LocalCluster of two single-thread worker processes on loopback;
# prints its address and the workers' pids, then lives until its stdin closes.
CLUSTER = """
import json, os, sys
from distributed import Client, LocalCluster
if __name__ == "__main__":
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, env={"RLTASKS_THREADS": "1"})
    with Client(cluster) as client:
        pids = client.run(os.getpid)
    print(json.dumps({"address": cluster.scheduler_address, "pids": pids}), flush=True)
    sys.stdin.read()
    cluster.close()
"""

# A trial command wrapper: records which process ran the trial, then runs the script.
WHERE = """
import json, os, runpy, sys
from pathlib import Path
Path(os.environ["ORION_WORKING_DIR"], "where.json").write_text(
    json.dumps({"pid": os.getpid(), "ppid": os.getppid()}))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def trial_dirs(orion: Orion) -> list[Path]:
    work = orion.root / "work"
    return sorted(p for p in work.iterdir() if p.is_dir()) if work.exists() else []


def first_checkpoint(orion: Orion) -> Path | None:
    for path in trial_dirs(orion):
        if (path / "last.ckpt").exists():
            return path
    return None


# ------------------------------------------------------------------------------------- Dask

@pytest.fixture
def dask_cluster(tmp_path):
    pytest.importorskip("distributed")
    log = (tmp_path / "cluster.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=log, text=True,
                            env=environ(PYTHONWARNINGS="ignore"))
    try:
        line = proc.stdout.readline()
        assert line, (tmp_path / "cluster.log").read_text()[-3000:]
        yield json.loads(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_dask_helper_runs_every_trial_on_the_cluster_workers(tmp_path, orion, dask_cluster):
    address, workers = dask_cluster["address"], set(dask_cluster["pids"].values())
    assert address.startswith("tcp://127.0.0.1:") and len(workers) == 2
    where = tmp_path / "where.py"
    where.write_text(WHERE)
    command = orion.hunt_command("dask", SPACE, *QUICK, max_trials=2)
    command[command.index("scripts/ppo.py")] = f"{where} scripts/ppo.py"
    command = " ".join(command).split()  # the wrapper, then the script and its arguments
    log = tmp_path / "hunt.log"
    proc = start([sys.executable, "-m", "rltasks.orion.dask", "--scheduler", address,
                  *command[2:]], env=orion.env, log=log)
    assert finish_process(proc, TIMEOUT, log)[0] == 0, log.read_text()[-5000:]
    assert f"hunt on the Dask cluster at {address}, 2 trial(s) at once" in log.read_text()
    found = orion.trials("dask")
    done = [t for t in found if t["status"] == "completed"]
    # Orion 0.2.7 samples ahead with parallel workers: a third trial may run, a fourth may
    # stay "new" (never started); none broken, lost or left reserved
    assert len(done) >= 2 and {t["status"] for t in found} <= {"completed", "new"}, (
        log.read_text()[-5000:])
    ran_by = set()
    for trial in done:
        ran = json.loads((Path(trial["working_dir"]) / "where.json").read_text())
        assert ran["ppid"] in workers, (ran, workers)  # a child of a Dask worker process
        ran_by.add(ran["ppid"])
        assert trial["objective"] == results_in(trial["working_dir"])["objective"]
    assert ran_by == workers  # the first two trials at once: one on each worker


class _DaskFuture:
    """What Orion's ``_Future`` wraps: a Dask future in ``status`` whose ``result`` raises."""

    def __init__(self, status: str, error: Exception | None = None, value=None):
        self.status, self.error, self.value = status, error, value

    def result(self, timeout=None):
        if self.error is not None:
            raise self.error
        return self.value

    def done(self):
        return self.status != "pending"


def test_dask_orion_keeps_only_the_trials_own_error(monkeypatch):
    """distributed's ``sync`` can fail with ``UnboundLocalError`` while Orion polls a running
    trial (``wait(0.01)``); Orion 0.2.7 keeps that as the trial's error and marks it broken.
    ``rltasks.orion.dask_orion`` keeps an error only when the Dask future itself failed."""
    pytest.importorskip("distributed")
    from orion.executor import dask_backend

    from rltasks.orion import dask_orion

    race = UnboundLocalError("cannot access local variable 'result'")
    original = dask_backend._Future(_DaskFuture("pending", race))
    original.wait(0.01)
    assert original.exception is race  # the defect: a running trial counted as broken
    monkeypatch.setattr(dask_backend._Future, "wait", dask_backend._Future.wait)
    dask_orion.patch()  # undone after the test
    running = dask_backend._Future(_DaskFuture("pending", race))
    running.wait(0.01)
    assert running.exception is None and not running.ready()
    finished = dask_backend._Future(_DaskFuture("finished", race))
    finished.wait(0.01)  # it finished while sync() failed: the result stands
    finished.future.error, finished.future.value = None, 0.25
    assert finished.exception is None and finished.get() == 0.25
    broke = ValueError("the trial's command exited 1")
    failed = dask_backend._Future(_DaskFuture("error", broke))
    failed.wait(0.01)
    assert failed.exception is broke
    with pytest.raises(ValueError, match="exited 1"):
        failed.get()


def test_dask_orion_is_orions_command_without_its_profet_warning():
    """``python -m rltasks.orion.dask_orion`` is Orion's command line; Orion's warning that its
    optional profet extra is missing, printed whenever its parsers load, is hidden."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run([sys.executable, "-m", "rltasks.orion.dask_orion", "hunt", "--help"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and "--exp-max-trials" in done.stdout, done.stderr
    assert "profet" not in done.stdout + done.stderr


def test_dask_helper_arguments(tmp_path):
    from rltasks.orion.dask import (
        HuntError,
        orion_config,
        prepare_args,
        scheduler_threads,
        split_argv,
    )

    assert split_argv(["--scheduler", "tcp://127.0.0.1:1", "--n-workers=3", "-n", "x"]) == (
        ["--scheduler", "tcp://127.0.0.1:1", "--n-workers=3"], ["-n", "x"])
    assert split_argv(["--scheduler", "a", "--", "--help"]) == (["--scheduler", "a"],
                                                               ["--help"])
    args = prepare_args(["-n", "x", "--working-dir", "runs", "python", "scripts/ppo.py",
                         "--lr~loguniform(1e-5, 1e-2)"], python="/venv/bin/python")
    assert args == ["-n", "x", "--working-dir", str(Path("runs").absolute()),
                    "/venv/bin/python", str(Path("scripts/ppo.py").absolute()),
                    "--lr~loguniform(1e-5, 1e-2)"]
    assert prepare_args(["python", "x.py", "--workdir", "{experiment.working_dir}/{trial.hash_"
                         "params}"], python="p")[-1] == "{exp.working_dir}/{trial.hash_params}"
    with pytest.raises(HuntError, match="--orion-config"):
        prepare_args(["-c", "orion.yaml", "python", "x.py"])
    with pytest.raises(HuntError, match="no trial command"):
        prepare_args(["-n", "x"])
    assert orion_config("tcp://h:1", 4, {"storage": {"type": "legacy"}, "worker": {
        "heartbeat": 30}}) == {"storage": {"type": "legacy"}, "worker": {
            "heartbeat": 30, "executor": "dask", "executor_configuration": {
                "address": "tcp://h:1"}, "n_workers": 4}}
    pytest.importorskip("distributed")
    with pytest.raises(HuntError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        scheduler_threads("tcp://127.0.0.1:9", timeout=1)  # nothing listens there


# --------------------------------------------------------------- shared storage, lost workers

def test_two_hunt_processes_sharing_one_pickleddb_complete_each_trial_once(tmp_path, orion):
    max_trials = 4
    command = orion.hunt_command("shared", SPACE, *QUICK, max_trials=max_trials)
    logs = [tmp_path / "hunt0.log", tmp_path / "hunt1.log"]
    procs = [start(command, env=orion.env, log=log) for log in logs]
    for proc, log in zip(procs, logs, strict=True):
        assert finish_process(proc, TIMEOUT, log)[0] == 0, log.read_text()[-5000:]
    found = orion.trials("shared")
    out = "\n".join(log.read_text()[-3000:] for log in logs)
    statuses = [t["status"] for t in found]
    # Orion 0.2.7 may start one trial past --exp-max-trials when workers race; none is lost
    assert set(statuses) == {"completed"} and max_trials <= len(found) <= max_trials + 1, out
    assert len({t["id"] for t in found}) == len(found)
    assert len({t["working_dir"] for t in found}) == len(found)
    for trial in found:  # each trial ran exactly once: one epoch logged, never resumed
        workdir = Path(trial["working_dir"])
        assert results_in(workdir)["resumed_from"] is None
        assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 1
        assert len(list(workdir.glob("results_*.log"))) == 1  # one Orion execution
    assert "stale lock" not in out and "in use by" not in out


def test_sigkilled_hunt_worker_trial_is_requeued_after_the_heartbeat_and_resumes(tmp_path,
                                                                                  orion):
    env = {**orion.env, "ORION_HEARTBEAT": "1"}  # lost after 5 heartbeats
    command = orion.hunt_command("lost", SPACE, *SLOWER, max_trials=1)
    log = tmp_path / "hunt.log"
    first = start(command, env=env, log=log)
    workdir = wait_for(lambda: first_checkpoint(orion), first, "a checkpoint", TIMEOUT, log)
    kill_group(first)  # orion hunt and its trial, with no chance to report
    killed_at = checkpoint.load(workdir / "last.ckpt")["epoch"]
    assert 1 <= killed_at < 5  # the trial stays "reserved": Orion cannot know it died
    time.sleep(6)  # 5 x ORION_HEARTBEAT, and a margin
    second = start(command, env=env, log=log)
    assert finish_process(second, TIMEOUT, log)[0] == 0, log.read_text()[-5000:]
    (trial,) = orion.trials("lost")
    assert trial["status"] == "completed", log.read_text()[-5000:]
    assert Path(trial["working_dir"]) == workdir
    done = results_in(trial["working_dir"])
    assert done["resumed_from"] is not None and done["resumed_from"] >= killed_at
    assert done["epoch"] == 5 and trial["objective"] == done["objective"]
    assert f"taking over the stale lock {workdir / 'rltasks.lock'}" in log.read_text()


def test_preempted_trial_is_marked_interrupted_and_the_next_hunt_resumes_it(tmp_path, orion):
    env = orion.env
    command = orion.hunt_command("preempt", SPACE, *SLOWER, max_trials=1)
    log = tmp_path / "hunt.log"
    first = start(command, env=env, log=log)

    def running_trial() -> tuple[Path, int] | None:
        workdir = first_checkpoint(orion)
        try:
            return workdir, json.loads((workdir / "rltasks.lock").read_text())["pid"]
        except (TypeError, OSError, ValueError):
            return None

    workdir, pid = wait_for(running_trial, first, "a running trial", TIMEOUT, log)
    os.kill(pid, signal.SIGTERM)  # the trial alone, as a cluster pre-empting it would
    # Orion stops on an interrupt
    assert finish_process(first, TIMEOUT, log)[0] == 130, log.read_text()[-5000:]
    assert "Orion is interrupted." in log.read_text()
    (trial,) = orion.trials("preempt")
    assert trial["status"] == "interrupted"
    stopped = checkpoint.load(workdir / "last.ckpt")["epoch"]
    assert 1 <= stopped < 5 and not (workdir / "results.json").exists()
    second = start(command, env=env, log=log)
    assert finish_process(second, TIMEOUT, log)[0] == 0, log.read_text()[-5000:]
    (trial,) = orion.trials("preempt")
    assert trial["status"] == "completed"
    done = results_in(trial["working_dir"])
    assert done["resumed_from"] == stopped and done["epoch"] == 5
