"""The task checkpoint payload (rltasks.trial.payload): the versions manifest, what
`rltasks inspect` shows, and one-line errors for damaged or foreign payloads."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
import torch

import rltasks
from rltasks import checkpoint
from rltasks.checkpoint import CheckpointError
from rltasks.trial.payload import REQUIRED, load_task, make_payload, versions


@pytest.fixture(scope="module")
def trained():
    task = rltasks.make_task("ppo", env="CartPole-v1", num_envs=2, steps_per_epoch=64,
                             hidden=8)
    task.init()
    task.fit(1)
    yield task
    task.close()


def test_every_checkpoint_records_the_library_versions(trained):
    payload = make_payload(trained)
    assert payload["versions"] == {"rltasks": rltasks.__version__, "torch": torch.__version__,
                                   "gymnasium": gymnasium.__version__,
                                   "numpy": np.__version__}
    assert versions() == payload["versions"]
    assert set(REQUIRED) <= set(payload)


def test_inspect_shows_the_versions(trained, tmp_path):
    checkpoint.save(tmp_path / "last.ckpt", make_payload(trained))
    proc = subprocess.run([sys.executable, "-m", "rltasks", "inspect",
                           str(tmp_path / "last.ckpt")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["versions"]["torch"] == torch.__version__
    assert shown["versions"]["rltasks"] == rltasks.__version__
    assert shown["task"] == "ppo" and "state" not in shown


@pytest.mark.parametrize("component", ["modules", "optimizers", "rng", "history"])
def test_a_state_without_a_component_is_one_line_naming_it(trained, tmp_path, component):
    payload = make_payload(trained)
    del payload["state"][component]
    checkpoint.save(tmp_path / "last.ckpt", payload)
    with pytest.raises(ValueError) as info:
        load_task(tmp_path)
    message = str(info.value)
    assert f"has no {component}" in message and "\n" not in message


def test_a_state_without_a_network_names_the_network(trained, tmp_path):
    payload = make_payload(trained)
    del payload["state"]["modules"]["critic"]
    checkpoint.save(tmp_path / "last.ckpt", payload)
    with pytest.raises(ValueError, match=r"state.modules has no critic"):
        load_task(tmp_path)


def test_a_payload_without_task_entries_is_a_checkpoint_error(tmp_path):
    checkpoint.save(tmp_path / "last.ckpt", {"task": "ppo", "state": {}})
    with pytest.raises(CheckpointError) as info:
        load_task(tmp_path)
    assert "not a task checkpoint: no fixed, hparams, epoch, env_steps" in str(info.value)
