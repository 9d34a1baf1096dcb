"""Exact resume, the core promise: a run SIGKILLed and rerun ends as if it had never stopped.

A reference run goes uninterrupted. The same command in fresh working dirs is SIGKILLed at
seeded random moments, or while it is inside a checkpoint write (``tests/shims``), and rerun
until it exits 0; its final checkpoint state must equal the reference's bit for bit, and its
``results.json`` the reference's figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import state_diffs

from rltasks import checkpoint

ROOT = Path(__file__).resolve().parents[1]
SHIMS = Path(__file__).resolve().parent / "shims"
EPOCHS = 6
COMMON = ["--epochs", str(EPOCHS), "--seed", "7", "--eval-episodes", "3"]
CARTPOLE = ["--env", "CartPole-v1", *COMMON]
#: scenario -> (script, arguments): the on-policy core twice; DQN with prioritized replay,
#: n-step returns and double targets (replay buffer, priorities and sampling RNG in the
#: state); SAC with hindsight replay on a goal env; MADDPG on PettingZoo's simple_spread.
SCENARIOS = {
    "ppo": ("ppo", [*CARTPOLE, "--steps-per-epoch", "2048", "--num-envs", "4"]),
    "a2c": ("a2c", [*CARTPOLE, "--steps-per-epoch", "2048", "--num-envs", "4"]),
    "dqn-per": ("dqn", [*CARTPOLE, "--steps-per-epoch", "1024", "--replay", "prioritized",
                        "--learning-starts", "256", "--train-freq", "64", "--gradient-steps",
                        "16", "--n-step", "3", "--double", "true"]),
    "sac-her": ("sac", ["--env", "rltasks/PointReach-v0", *COMMON, "--steps-per-epoch", "400",
                        "--her", "true", "--hidden", "32", "--learning-starts", "200",
                        "--batch-size", "64"]),
    "maddpg": ("maddpg", ["--env", "mpe2/simple_spread_v3", *COMMON, "--steps-per-epoch",
                          "500", "--hidden", "32", "--learning-starts", "200",
                          "--batch-size", "128", "--train-freq", "25"]),
}
RESULT_KEYS = ("return_mean", "return_std", "length_mean", "epoch", "env_steps")
RUN_TIMEOUT = 180  # seconds; one run takes a few
MIN_KILLS = 5  # kills at random moments, at least 2 of them after a checkpoint
MAX_ATTEMPTS = 12


@dataclass
class Reference:
    scenario: str
    ckpt: dict[str, Any]
    results: dict[str, Any]
    first_ckpt: float  # seconds from launch until last.ckpt first exists
    duration: float  # seconds from launch until the process exited


def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLTASKS_TEST_")}
    return {**env, "RLTASKS_THREADS": "1", **extra}


def launch(scenario: str, workdir: Path, log: Path, env: dict[str, str] | None = None
           ) -> subprocess.Popen:
    """Start the trial in its own process group (so a kill takes any helper process too)."""
    script, args = SCENARIOS[scenario]
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / f"{script}.py"), *args,
             "--workdir", str(workdir)],
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


def assert_same_as_reference(workdir: Path, reference: Reference) -> None:
    ckpt = checkpoint.load(workdir / "last.ckpt")
    assert (ckpt["epoch"], ckpt["env_steps"]) == (reference.ckpt["epoch"],
                                                  reference.ckpt["env_steps"])
    diffs = state_diffs(ckpt["state"], reference.ckpt["state"])
    assert not diffs, f"{len(diffs)} differences after resume:\n" + "\n".join(diffs[:40])
    results = json.loads((workdir / "results.json").read_text())
    assert {k: results[k] for k in RESULT_KEYS} == {k: reference.results[k] for k in RESULT_KEYS}


_REFERENCES: dict[str, Reference] = {}


def reference_run(scenario: str, tmp_path_factory) -> Reference:
    """One uninterrupted run per scenario, timed so that the kill moments scale with this
    machine."""
    if scenario in _REFERENCES:
        return _REFERENCES[scenario]
    workdir = tmp_path_factory.mktemp(f"reference-{scenario}")
    log = workdir.parent / f"{workdir.name}.log"
    start = time.monotonic()
    proc = launch(scenario, workdir, log)
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
    _REFERENCES[scenario] = Reference(scenario, ckpt, results, first_ckpt or duration, duration)
    return _REFERENCES[scenario]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sigkilled_at_random_moments_then_rerun_ends_exactly_as_uninterrupted(
        scenario, tmp_path, tmp_path_factory):
    reference = reference_run(scenario, tmp_path_factory)
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
        proc = launch(scenario, workdir, log)
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
        proc = launch(scenario, workdir, log)
    finish(proc, log)
    after_ckpt = sum(epoch is not None for _, epoch in kills)
    assert after_ckpt >= 2, f"too few kills after a checkpoint existed: {kills}"
    assert_same_as_reference(workdir, reference)
    results = json.loads((workdir / "results.json").read_text())
    assert results["resumed_from"] == start_epoch, (kills, log.read_text()[-3000:])


# nth fsync: today 1 is epoch 1's temp file, 7 epoch 4's (each atomic write fsyncs twice)
@pytest.mark.parametrize(("scenario", "nth_fsync"),
                         [("ppo", 1), ("ppo", 7), ("a2c", 7), ("dqn-per", 7)])
def test_sigkilled_inside_a_checkpoint_write_then_rerun_ends_exactly_as_uninterrupted(
        scenario, nth_fsync, tmp_path, tmp_path_factory):
    reference = reference_run(scenario, tmp_path_factory)
    workdir, log, marker = tmp_path / "run", tmp_path / "run.log", tmp_path / "stalled"
    pythonpath = os.pathsep.join(filter(None, [str(SHIMS), os.environ.get("PYTHONPATH")]))
    proc = launch(scenario, workdir, log, environ(PYTHONPATH=pythonpath,
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

    proc = launch(scenario, workdir, log)
    finish(proc, log)
    assert not list(workdir.glob(".last.ckpt.*.tmp")), "the rerun left the killed temp file"
    assert_same_as_reference(workdir, reference)
    results = json.loads((workdir / "results.json").read_text())
    assert results["resumed_from"] == start_epoch
