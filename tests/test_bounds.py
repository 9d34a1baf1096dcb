"""Sizes have upper bounds: every integer hyperparameter of every task declares a finite
``high``, a task refuses ``num_envs`` past ``MAX_ENVS``, and ``init`` refuses what would
not fit in memory before it builds a network or a buffer. ``rltasks eval/export/record``
rebuild a task from a checkpoint's own hyperparameters: a few hundred bytes declaring
``hidden=100000`` are one line and exit 2, at once, without allocating."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
from helpers import cli

import rltasks
from rltasks import checkpoint
from rltasks import task as task_module
from rltasks.tasks import REGISTRY
from rltasks.trial.payload import make_payload

TASKS = rltasks.known_tasks()


@pytest.mark.parametrize("name", TASKS)
def test_every_integer_hyperparameter_has_a_finite_upper_bound(name):
    unbounded = [key for key, spec in REGISTRY[name].hparam_specs().items()
                 if spec.kind is int and spec.choices is None and spec.high is None]
    assert not unbounded, f"{name}: give {unbounded} a high= in their HP declaration"


def test_num_envs_and_eval_episodes_are_bounded():
    with pytest.raises(ValueError, match=r"num_envs=100000 must be an integer in \[1, 1024\]"):
        rltasks.make_task("ppo", env="CartPole-v1", num_envs=100_000)
    task = rltasks.make_task("ppo", env="CartPole-v1", num_envs=1, hidden=8).init()
    try:
        with pytest.raises(ValueError, match=r"episodes=5000 must be in \[1, 1024\]"):
            task.evaluate(5000)
    finally:
        task.close()


def test_init_refuses_what_does_not_fit_in_memory_before_building(monkeypatch):
    monkeypatch.setattr(task_module, "available_memory", lambda: 2**30)
    task = rltasks.make_task("td3", env="Pendulum-v1")
    monkeypatch.setattr(type(task), "setup", lambda self: pytest.fail("setup was called"))
    try:
        with pytest.raises(ValueError) as info:
            task.init(hidden=2048, layers=8, buffer_size=1_000_000)
    finally:
        task.close()
    message = str(info.value)
    assert "td3 with hidden=2048, layers=8, buffer_size=1000000 needs about" in message
    assert "of memory is available: lower hidden, layers, buffer_size" in message
    assert "\n" not in message


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    task = rltasks.make_task("ppo", env="CartPole-v1", num_envs=1, steps_per_epoch=32)
    task.init(n_steps=16, hidden=8)  # not fixed at make_task: the file's hparams say them
    task.fit(1)
    try:
        return make_payload(task)
    finally:
        task.close()


def _hostile(trained: dict, where: Path, section: str, key: str, value: int) -> Path:
    payload = {**trained, section: {**trained[section], key: value}}
    checkpoint.save(where / "last.ckpt", payload)
    return where


@pytest.mark.parametrize(("command", "section", "key"), [
    ("eval", "hparams", "hidden"), ("export", "hparams", "hidden"),
    ("record", "hparams", "hidden"), ("eval", "fixed", "num_envs")])
def test_a_checkpoint_declaring_a_huge_size_is_one_line_at_once(command, section, key,
                                                                trained, tmp_path):
    run = _hostile(trained, tmp_path, section, key, 100_000)
    start = time.monotonic()
    proc = cli(command, run)
    elapsed = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the largest child
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"{key}=100000" in lines[0]
    assert elapsed < 60 and peak < 3 * 2**30  # nothing near the 40 GB declared
