"""Checkpoints written by the previous release (tests/data/release-0.1.0) still load and resume
to the networks that release computed, bit for bit, through the Python API and the runner."""

from __future__ import annotations

import hashlib
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


def digest(module_state: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(module_state):
        h.update(key.encode())
        h.update(module_state[key].detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def expected(name: str) -> dict:
    return json.loads((DATA / name / "expected.json").read_text())


def test_every_task_of_the_release_is_still_known():
    import rltasks

    assert len(TASKS) == 8 and set(TASKS) <= set(rltasks.known_tasks())


@pytest.mark.parametrize("name", TASKS)
def test_release_checkpoint_resumes_to_the_same_networks(name, tmp_path):
    shutil.copy(DATA / name / "last.ckpt", tmp_path / "last.ckpt")
    want = expected(name)["after_epoch_2"]
    task = load_task(tmp_path)
    try:
        assert task.epoch == 1
        task.fit(2)
        got = {k: digest(m.state_dict()) for k, m in task.modules.items()}
        assert got == {k: v for k, v in want["modules"].items()
                       if k not in REMOVED.get(name, ())}
        assert task.env_steps == want["env_steps"]
        assert json.loads(json.dumps(task.history[-1])) == want["history"]
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
