"""Checkpoints written by the previous release (tests/data/release-0.1.0) still load and resume
to the epoch that release computed next (the same counters, every metric to 1e-4: bit for
bit on the CPU that wrote them), through the Python API and the runner."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from helpers import results_in

from rltasks.trial.payload import load_task
from rltasks.trial.run import main

DATA = Path(__file__).parent / "data" / "release-0.1.0"
TASKS = sorted(p.name for p in DATA.iterdir() if p.is_dir())
#: modules the release checkpointed that are gone since: SAC built an actor target it never used
REMOVED = {"sac": {"actor_target"}}
#: PPO's value loss was CleanRL's 0.5 * MSE then and is SB3's MSE since 2026-12-04: the same
#: loss, bit for bit (a factor of 2 is exact), with half the vf_coef; its logged value_loss
#: is then twice the release's
PPO_VALUE_SCALE = 2.0


def expected(name: str) -> dict:
    return json.loads((DATA / name / "expected.json").read_text())


def test_every_task_of_the_release_is_still_known():
    import rltasks

    assert len(TASKS) == 8 and set(TASKS) <= set(rltasks.known_tasks())


def close_to(got: object, want: object) -> bool:
    """Integers and strings equal, floats within 1e-4 relative (or 1e-9 absolute)."""
    if isinstance(want, float):
        return isinstance(got, (int, float)) and got == pytest.approx(want, rel=1e-4, abs=1e-9)
    return got == want


@pytest.mark.parametrize("name", TASKS)
def test_release_checkpoint_resumes_to_that_releases_next_epoch(name, tmp_path):
    """Bit for bit only on the CPU that wrote them: on another one the float kernels differ in
    their last bits (measured 2026-12-02 on an AMD EPYC without AVX-512: the release's
    network digests differ, every metric of the resumed epoch is within 1e-5 relative). So
    the counters must match exactly and every metric to 1e-4; a resume that lost an RNG, a
    counter or a network's state would be off by far more."""
    shutil.copy(DATA / name / "last.ckpt", tmp_path / "last.ckpt")
    want = expected(name)["after_epoch_2"]
    task = load_task(tmp_path)
    if name == "ppo":  # the release's loss under today's scale (PPO_VALUE_SCALE)
        task.hp["vf_coef"] /= PPO_VALUE_SCALE
        want["history"]["value_loss"] *= PPO_VALUE_SCALE
    try:
        assert task.epoch == 1
        task.fit(2)
        assert set(task.modules) == set(want["modules"]) - REMOVED.get(name, set())
        assert task.env_steps == want["env_steps"]
        got = json.loads(json.dumps(task.history[-1]))
        assert set(got) == set(want["history"])
        off = {k: (got[k], v) for k, v in want["history"].items() if not close_to(got[k], v)}
        assert not off, f"metrics off the release's (got, release's): {off}"
    finally:
        task.close()


@pytest.mark.parametrize("name", ["ppo", "sac"])
def test_the_runner_resumes_a_release_checkpoint(name, tmp_path, capsys):
    shutil.copy(DATA / name / "last.ckpt", tmp_path / "last.ckpt")
    command = expected(name)["command"]
    assert command.endswith(" --epochs 1")
    argv = shlex.split(command.removesuffix(" --epochs 1"))[2:]
    assert main(name, [*argv, "--epochs", "2", "--eval-episodes", "2",
                       "--workdir", str(tmp_path)]) == 0
    results = results_in(tmp_path)
    assert results["resumed_from"] == 1 and results["epoch"] == 2
    assert "resumed from" in capsys.readouterr().err
