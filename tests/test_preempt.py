"""Pre-emption: SIGTERM/SIGINT stop a real trial process at an epoch boundary, checkpointed,
with Orion's interrupt code; the rerun ends exactly as a run that never stopped.

The signal is sent once the first epoch is logged, so it lands inside a later epoch: the
process must finish that epoch, save it and exit, never leaving a half epoch behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    assert_same_state,
    finish_process,
    launch,
    results_in,
    start,
    wait_for,
)

from rltasks import checkpoint

EPOCHS = 5
ARGS = ["--env", "CartPole-v1", "--epochs", str(EPOCHS), "--seed", "3", "--eval-episodes", "2",
        "--steps-per-epoch", "2048", "--num-envs", "4"]


def logged_epochs(workdir: Path) -> int:
    try:
        return len((workdir / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def first_epoch_logged(proc: subprocess.Popen, workdir: Path) -> None:
    wait_for(lambda: logged_epochs(workdir) >= 1, proc, "the trial's first epoch", poll=0.005)


def complete(workdir: Path, *extra: str) -> dict:
    code, err = finish_process(launch("ppo", *ARGS, *extra, workdir=workdir))
    assert code == 0, err[-3000:]
    return results_in(workdir)


def assert_at_epoch_boundary(workdir: Path) -> int:
    """last.ckpt holds the last logged epoch: the epoch in progress finished and was saved."""
    ckpt = checkpoint.load(workdir / "last.ckpt")
    assert ckpt["epoch"] == logged_epochs(workdir) == len(ckpt["state"]["history"])
    assert ckpt["env_steps"] == ckpt["epoch"] * 2048
    assert not list(workdir.glob(".*.tmp")) and not (workdir / "rltasks.lock").exists()
    assert not (workdir / "results.json").exists()  # not reported as finished
    return ckpt["epoch"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, dict]:
    workdir = tmp_path_factory.mktemp("reference")
    results = complete(workdir)
    return checkpoint.load(workdir / "last.ckpt"), results


def assert_same_as(reference: tuple[dict, dict], workdir: Path, stopped_at: int) -> None:
    ckpt, results = reference
    mine = checkpoint.load(workdir / "last.ckpt")
    assert_same_state(mine["state"], ckpt["state"])
    again = results_in(workdir)
    assert again["resumed_from"] == stopped_at
    for key in ("return_mean", "return_std", "length_mean", "epoch", "env_steps"):
        assert again[key] == results[key], key


def test_sigterm_finishes_the_epoch_saves_and_exits_130_then_resumes_exactly(
        tmp_path, reference):
    workdir = tmp_path / "run"
    proc = launch("ppo", *ARGS, workdir=workdir)
    first_epoch_logged(proc, workdir)
    proc.send_signal(signal.SIGTERM)
    code, err = finish_process(proc)
    assert code == 130, err[-3000:]
    stopped = assert_at_epoch_boundary(workdir)
    assert 1 <= stopped < EPOCHS, "the signal should land before the last epoch"
    assert "SIGTERM received: finishing the current epoch" in err
    last = err.strip().splitlines()[-1]
    assert last == (f"interrupted: SIGTERM received: stopped after epoch {stopped} of {EPOCHS}, "
                    f"saved in {workdir / 'last.ckpt'}; rerun the same command to resume")
    assert "Traceback" not in err
    complete(workdir)
    assert_same_as(reference, workdir, stopped)


def test_sigint_uses_orions_interrupt_code_and_saves_between_save_freq(tmp_path, reference):
    """--save-freq 10 would save only the final epoch: the stop saves its own epoch."""
    workdir = tmp_path / "run"
    proc = launch("ppo", *ARGS, "--save-freq", "10", workdir=workdir,
                  env={"ORION_INTERRUPT_CODE": "42"})
    first_epoch_logged(proc, workdir)
    proc.send_signal(signal.SIGINT)
    code, err = finish_process(proc)
    assert code == 42, err[-3000:]
    stopped = assert_at_epoch_boundary(workdir)
    assert stopped < EPOCHS and "SIGINT received" in err and "Traceback" not in err
    complete(workdir, "--save-freq", "10")
    assert_same_as(reference, workdir, stopped)


def test_ctrl_c_to_the_process_group_with_async_envs_finishes_the_epoch(tmp_path):
    """Ctrl-C reaches the env worker processes too: they ignore it and the epoch completes."""
    workdir = tmp_path / "run"
    proc = launch("ppo", *ARGS, "--vectorization", "async", workdir=workdir)
    first_epoch_logged(proc, workdir)
    os.killpg(proc.pid, signal.SIGINT)
    code, err = finish_process(proc)
    assert code == 130, err[-3000:]
    stopped = assert_at_epoch_boundary(workdir)
    assert "saved in" in err.strip().splitlines()[-1] and "Traceback" not in err
    results = complete(workdir, "--vectorization", "async")
    assert results["resumed_from"] == stopped and results["epoch"] == EPOCHS


# The trial with a hook that sends SIGTERM to its own process group (the trial and its env
# workers) at a chosen moment, so where the signal lands is not a race: at the Nth call of
# ``AsyncVectorEnv.step_wait`` (mid-epoch: the workers are stepping) or of ``os.fsync`` (the
# first is epoch 1's checkpoint write, between two epochs: the workers are idle).
SIGNAL_AT = """
import os, signal, sys
import gymnasium.vector
where, nth = sys.argv[1], int(sys.argv[2])
owner, calls = os.getpid(), 0
def hooked(real):
    def call(*args, **kwargs):
        global calls
        if os.getpid() == owner:
            calls += 1
            if calls == nth:
                os.killpg(0, signal.SIGTERM)
        return real(*args, **kwargs)
    return call
if where == "step":
    cls = gymnasium.vector.AsyncVectorEnv
    cls.step_wait = hooked(cls.step_wait)
else:
    os.fsync = hooked(os.fsync)
from rltasks.trial import main
sys.exit(main("ppo", sys.argv[3:]))
"""


def sigterm_to_group_at(workdir: Path, where: str, nth: int) -> tuple[int, str]:
    command = [sys.executable, "-c", SIGNAL_AT, where, str(nth), *ARGS,
               "--vectorization", "async", "--workdir", str(workdir)]
    return finish_process(start(command))


def test_sigterm_to_the_process_group_mid_epoch_with_async_envs_loses_that_epoch(tmp_path):
    """SIGTERM kills the env workers (a parent must be able to terminate them): the epoch in
    progress (epoch 2: 512 vector steps an epoch, signalled at the 600th) is lost, the trial
    exits with the interrupt code, and the rerun resumes from the last saved epoch."""
    workdir = tmp_path / "run"
    code, err = sigterm_to_group_at(workdir, "step", 600)
    assert code == 130, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: SIGTERM received: stopped in epoch 2 of {EPOCHS}, "
                           f"which is lost ("), last
    assert last.endswith("the env workers got the signal too); the last checkpoint is "
                         "intact; rerun the same command to resume"), last
    assert "Traceback" not in err
    assert checkpoint.load(workdir / "last.ckpt")["epoch"] == logged_epochs(workdir) == 1
    assert not (workdir / "rltasks.lock").exists() and not (workdir / "results.json").exists()
    results = complete(workdir, "--vectorization", "async")
    assert results["resumed_from"] == 1 and results["epoch"] == EPOCHS


def test_sigterm_to_the_process_group_between_epochs_with_async_envs_keeps_the_epoch(
        tmp_path):
    """The signal lands while epoch 1's checkpoint is written (the workers idle, then
    killed): that epoch is saved and the trial stops after it, as with one process."""
    workdir = tmp_path / "run"
    code, err = sigterm_to_group_at(workdir, "fsync", 1)
    assert code == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"interrupted: SIGTERM received: stopped after epoch 1 of {EPOCHS}, saved in "
        f"{workdir / 'last.ckpt'}; rerun the same command to resume")
    assert "Traceback" not in err
    assert assert_at_epoch_boundary(workdir) == 1
    results = complete(workdir, "--vectorization", "async")
    assert results["resumed_from"] == 1 and results["epoch"] == EPOCHS


def test_second_signal_stops_at_once_and_the_last_checkpoint_still_resumes(tmp_path, reference):
    workdir = tmp_path / "run"
    proc = launch("ppo", *ARGS, workdir=workdir)
    first_epoch_logged(proc, workdir)
    # into epoch 2 (0.7 s here): a signal in the moment between epoch 1's metrics line and
    # its stop check stops the run after epoch 1, saved and exiting, before a second one
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code, err = finish_process(proc)
    assert code == 130, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted: stopped at once")
    saved = checkpoint.load(workdir / "last.ckpt")["epoch"]
    assert saved >= 1 and not (workdir / "rltasks.lock").exists()
    complete(workdir)
    assert_same_as(reference, workdir, saved)


def test_signal_before_training_stops_before_the_first_epoch(tmp_path, monkeypatch, capsys):
    """In-process: the signal arrives while the task is being built."""
    import rltasks
    from rltasks.trial.run import main

    real = rltasks.make_task

    def make_task_then_signal(*args, **kwargs):
        task = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return task

    monkeypatch.setattr(rltasks, "make_task", make_task_then_signal)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    assert main("ppo", [*ARGS, "--workdir", str(tmp_path / "run")]) == 130
    assert "stopped before training (epoch 0 of 5)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written, not even the lock's dir
    assert before == {sig: signal.getsignal(sig) for sig in before}  # handlers restored


# A process entry point run as ``python -c LATE_SIGNAL KIND TARGET ARGS...`` (KIND ``path``:
# a script file; ``module``: ``python -m TARGET``) that sends SIGTERM to itself while it
# exits, after its code is decided; with ``--first-at-fsync``, a first SIGTERM at the first
# ``os.fsync`` (epoch 1's checkpoint), so that the late one is a second signal.
LATE_SIGNAL = """
import atexit, os, runpy, signal, sys, time
def late():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)
atexit.register(late)
kind, target, *argv = sys.argv[1:]
if argv[:1] == ["--first-at-fsync"]:
    argv, real = argv[1:], os.fsync
    def first(*args):
        os.fsync = real
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args)
    os.fsync = first
sys.argv = [target, *argv]
if kind == "path":
    runpy.run_path(target, run_name="__main__")
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""
SHORT = ["--env", "CartPole-v1", "--epochs", "1", "--steps-per-epoch", "512", "--num-envs", "4",
         "--eval-episodes", "1"]


@pytest.mark.parametrize("entry", ["script interrupted", "rltasks train", "population worker"])
def test_a_signal_while_the_process_exits_keeps_its_exit_code(tmp_path, entry):
    """The exit code is decided once the run is over: a SIGTERM that arrives while the process
    exits (a second one after a stop and its checkpoint, say) is ignored, not a kill by
    signal (-15, which Orion would record as a broken trial)."""
    workdir = tmp_path / "run"
    kind, target, argv, expected = {
        "script interrupted": ("path", "scripts/ppo.py",
                               ["--first-at-fsync", *ARGS, "--workdir", str(workdir)], 130),
        "rltasks train": ("module", "rltasks",
                          ["train", "ppo", *SHORT, "--workdir", str(workdir)], 0),
        "population worker": ("module", "rltasks.orion.population", [], 2),  # no options
    }[entry]
    code, err = finish_process(start([sys.executable, "-c", LATE_SIGNAL, kind, target, *argv]))
    assert code == expected, err[-3000:]
    if entry == "script interrupted":
        assert err.strip().splitlines()[-1].startswith("interrupted: SIGTERM received: "
                                                       "stopped after epoch 1 of 5")
        assert assert_at_epoch_boundary(workdir) == 1
    elif entry == "rltasks train":
        assert results_in(workdir)["epoch"] == 1
