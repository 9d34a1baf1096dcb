"""Exact resume, the core promise: a run SIGKILLed and rerun ends as if it had never stopped.

A reference run goes uninterrupted. The same command in fresh working dirs is SIGKILLed at
seeded random moments, or while it is inside a checkpoint write (``tests/shims``), and rerun
until it exits 0; its final checkpoint state must equal the reference's bit for bit, and its
``results.json`` the reference's figures.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    SHIMS,
    assert_same_state,
    finish_process,
    kill_group,
    launch,
    results_in,
    shimmed,
    wait_for,
)

from rltasks import checkpoint

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


def start_trial(scenario: str, workdir: Path, log: Path, env: dict[str, str] | None = None
                ) -> subprocess.Popen:
    """Start the scenario's trial in its own process group (so a kill takes any helper process
    too), its output appended to ``log``."""
    script, args = SCENARIOS[scenario]
    return launch(script, *args, workdir=workdir, env=env, log=log)


def assert_completes(proc: subprocess.Popen, log: Path) -> None:
    """Wait for a run that should complete; kill it and fail if it does not."""
    code, out = finish_process(proc, RUN_TIMEOUT, log)
    assert code == 0, f"exit code {code}:\n{out[-3000:]}"


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
    assert_same_state(ckpt["state"], reference.ckpt["state"])
    results = results_in(workdir)
    assert {k: results[k] for k in RESULT_KEYS} == {k: reference.results[k] for k in RESULT_KEYS}


def reference_run(scenario: str, workdir: Path) -> Reference:
    """One uninterrupted run of ``scenario``, timed so that the kill moments scale with this
    machine."""
    log = workdir.parent / f"{workdir.name}.log"
    start = time.monotonic()
    proc = start_trial(scenario, workdir, log)
    first_ckpt = None
    while proc.poll() is None and time.monotonic() - start < RUN_TIMEOUT:
        if first_ckpt is None and (workdir / "last.ckpt").exists():
            first_ckpt = time.monotonic() - start
        time.sleep(0.01)
    assert_completes(proc, log)
    duration = time.monotonic() - start
    ckpt = checkpoint.load(workdir / "last.ckpt")
    results = results_in(workdir)
    assert ckpt["epoch"] == results["epoch"] == EPOCHS and results["resumed_from"] is None
    return Reference(scenario, ckpt, results, first_ckpt or duration, duration)


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> Callable[[str], Reference]:
    """``references(scenario)``: the scenario's reference run, made the first time a test asks
    for it and shared by the module's tests, which only read it."""
    made: dict[str, Reference] = {}

    def reference(scenario: str) -> Reference:
        if scenario not in made:
            made[scenario] = reference_run(scenario,
                                           tmp_path_factory.mktemp(f"reference-{scenario}"))
        return made[scenario]

    return reference


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sigkilled_at_random_moments_then_rerun_ends_exactly_as_uninterrupted(
        scenario, tmp_path, references):
    reference = references(scenario)
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
        proc = start_trial(scenario, workdir, log)
        # Wall-clock noise (a busy machine) must not let the run finish before enough kills:
        # while kills after a checkpoint are still missing, the last epochs are not allowed.
        watch = CkptWatch(workdir)
        while proc.poll() is None:
            now = time.monotonic() - start
            epoch = watch.epoch()
            if now >= delay or (after_ckpt < 2 and (epoch or 0) >= EPOCHS - 1):
                kill_group(proc)
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
        proc = start_trial(scenario, workdir, log)
    assert_completes(proc, log)
    after_ckpt = sum(epoch is not None for _, epoch in kills)
    assert after_ckpt >= 2, f"too few kills after a checkpoint existed: {kills}"
    assert_same_as_reference(workdir, reference)
    results = results_in(workdir)
    assert results["resumed_from"] == start_epoch, (kills, log.read_text()[-3000:])


# nth fsync: today 1 is epoch 1's temp file, 7 epoch 4's (each atomic write fsyncs twice)
@pytest.mark.parametrize(("scenario", "nth_fsync"),
                         [("ppo", 1), ("ppo", 7), ("a2c", 7), ("dqn-per", 7)])
def test_sigkilled_inside_a_checkpoint_write_then_rerun_ends_exactly_as_uninterrupted(
        scenario, nth_fsync, tmp_path, references):
    reference = references(scenario)
    workdir, log, marker = tmp_path / "run", tmp_path / "run.log", tmp_path / "stalled"
    proc = start_trial(scenario, workdir, log, shimmed(
        SHIMS, RLTASKS_TEST_STALL_FSYNC=str(marker), RLTASKS_TEST_STALL_FSYNC_AT=str(nth_fsync)))
    try:
        wait_for(marker.exists, proc, f"fsync #{nth_fsync}", RUN_TIMEOUT, log)
    finally:
        kill_group(proc)
    stalled = Path(marker.read_text()) if marker.read_text() else None  # file being flushed
    if stalled is not None and stalled.name.startswith(".last.ckpt.") and stalled.suffix == ".tmp":
        assert stalled.exists(), "a checkpoint temp file was written but is gone after SIGKILL"
    start_epoch = ckpt_epoch(workdir)  # loads: the file being replaced is never half-written

    proc = start_trial(scenario, workdir, log)
    assert_completes(proc, log)
    assert not list(workdir.glob(".last.ckpt.*.tmp")), "the rerun left the killed temp file"
    assert_same_as_reference(workdir, reference)
    results = results_in(workdir)
    assert results["resumed_from"] == start_epoch
