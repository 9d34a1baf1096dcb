"""The promises every registered task keeps, checked for each name of ``rltasks.known_tasks()``
(read at import: a newly registered task is checked without touching this file) on the task's
``DEFAULT_ENV`` with tiny settings:

- the Task contract: ``get_space()`` is exactly the hyperparameters not fixed at ``make_task``,
  ``init()`` refuses unknown and invalid values in one line, ``fit(n)`` is absolute (a no-op
  once past ``n``), ``epoch``/``env_steps``/``history`` count what was trained, and
  ``evaluate()`` returns its figures without changing the state;
- checkpoints: a state saved and loaded with ``rltasks.checkpoint`` is the state, and a
  resumed run ends bit-identical to one that never stopped;
- export: the policy ``rltasks export`` writes acts as the task does.

A task missing from ``TINY`` fails (it is never skipped): give it settings that keep one
epoch well under a second.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import assert_resumes_exactly, assert_same_state, results_in, state_diffs

import rltasks
from rltasks import checkpoint
from rltasks.commands.export import export_run, sample_observations
from rltasks.hparams import HP
from rltasks.tasks import REGISTRY
from rltasks.trial.payload import load_task
from rltasks.trial.run import main

TASKS = rltasks.known_tasks()
#: the make_task arguments that keep a task tiny (loader arguments and fixed hyperparameters)
REPLAY = {"hidden": 16, "buffer_size": 256, "learning_starts": 32, "batch_size": 16}
TINY: dict[str, dict[str, Any]] = {
    "a2c": {"num_envs": 2, "steps_per_epoch": 64, "n_steps": 8, "hidden": 16},
    "pg": {"num_envs": 2, "steps_per_epoch": 64, "n_steps": 16, "hidden": 16},
    "ppo": {"num_envs": 2, "steps_per_epoch": 64, "n_steps": 16, "batch_size": 32,
            "update_epochs": 2, "hidden": 16},
    "dqn": {"steps_per_epoch": 64, **REPLAY, "train_freq": 16, "gradient_steps": 4},
    "ddpg": {"steps_per_epoch": 64, **REPLAY},
    "td3": {"steps_per_epoch": 64, **REPLAY},
    "sac": {"steps_per_epoch": 64, **REPLAY},
    "maddpg": {"steps_per_epoch": 50, **REPLAY, "learning_starts": 25},
}
LOADER_ARGS = ("num_envs", "steps_per_epoch")
EVALUATION = {"return_mean", "return_std", "length_mean", "episodes"}
ROW = {"epoch", "env_steps", "episodes", "return_mean", "length_mean"}
SEED = 1


def tiny(name: str) -> dict[str, Any]:
    """The tiny settings of task ``name``; a registered task without them fails."""
    if name not in TINY:
        pytest.fail(f"task {name!r} is registered but has no tiny settings: add an entry to "
                    f"TINY in tests/test_contract.py (make_task arguments that keep one epoch "
                    f"on {REGISTRY[name].DEFAULT_ENV} well under a second)")
    return TINY[name]


def make(name: str, **overrides: Any) -> Any:
    """Task ``name`` on its default env, built (not ``init``-ed) with its tiny settings."""
    return rltasks.make_task(name, env=REGISTRY[name].DEFAULT_ENV, seed=SEED,
                             **{**tiny(name), **overrides})


def invalid_values(spec: HP) -> list[Any]:
    """Values ``spec`` must refuse: of the wrong kind, outside its choices or its bounds."""
    if spec.kind is bool:
        return ["maybe", 2]
    if spec.kind is str:
        return [3] if spec.choices is None else ["no-such-choice", 3]
    bad: list[Any] = ["many", math.nan, math.inf]
    if spec.low is not None:
        bad.append(spec.low if spec.low_open else spec.low - 1)
    if spec.high is not None:
        bad.append(spec.high if spec.high_open else spec.high + 1)
    return bad


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Callable[[str], Path]:
    """``runs(name)``: the working dir of a real two-epoch run of task ``name`` (written by
    ``rltasks.trial.run.main``, the scripts' runner), made the first time a test asks for it.
    Tests only read it: whatever they write goes to their own ``tmp_path``."""
    made: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in made:
            workdir = tmp_path_factory.mktemp(f"run-{name}")
            flags = [f"--{key.replace('_', '-')}={value}" for key, value in tiny(name).items()]
            argv = ["--env", REGISTRY[name].DEFAULT_ENV, "--seed", str(SEED), "--epochs", "2",
                    "--eval-episodes", "2", *flags, "--workdir", str(workdir)]
            assert main(name, argv) == 0, f"the run of {name} failed: see the captured stderr"
            made[name] = workdir
        return made[name]

    return run


def test_every_tiny_setting_belongs_to_a_registered_task():
    assert set(TINY) <= set(TASKS), f"TINY names unregistered tasks: {set(TINY) - set(TASKS)}"
    for name, settings in TINY.items():
        assert set(settings) <= set(REGISTRY[name].hparam_specs()) | set(LOADER_ARGS), name


@pytest.mark.parametrize("name", TASKS)
def test_space_is_every_hyperparameter_not_fixed_at_make_task(name):
    specs = REGISTRY[name].hparam_specs()
    fixed = {k: v for k, v in tiny(name).items() if k not in LOADER_ARGS}
    assert fixed and set(fixed) <= set(specs)
    loose = rltasks.make_task(name, env=REGISTRY[name].DEFAULT_ENV,
                              **{k: v for k, v in tiny(name).items() if k in LOADER_ARGS})
    # every hyperparameter but precision, which applies to the CNN bodies of image envs
    # only (the default envs have vectors)
    try:
        assert loose.get_space(scope="all") == {k: spec.prior for k, spec in specs.items()
                                                if k != "precision"}
    finally:
        loose.close()
    task = make(name)
    try:
        space = task.get_space(scope="all")
        assert set(space) == set(specs) - set(fixed) - {"precision"}
        assert space == {k: specs[k].prior for k in space}
        assert all(isinstance(prior, str) and prior for prior in space.values())
        assert task.get_space(epochs="fidelity(1, 8, 2)")["epochs"] == "fidelity(1, 8, 2)"
        curated = task.get_space()
        assert curated and set(curated) <= set(specs) - set(fixed)
        assert set(REGISTRY[name].CURATED) <= set(specs)  # no name a task does not have
        hparams = task.init().hparams()
        assert set(hparams) <= set(specs)
        assert {k: hparams[k] for k in fixed} == fixed  # the fixed values are in force
    finally:
        task.close()


@pytest.mark.parametrize("name", TASKS)
def test_init_refuses_unknown_invalid_and_contradicting_values_in_one_line(name):
    specs = REGISTRY[name].hparam_specs()
    task = make(name)
    try:
        refusals: list[tuple[dict[str, Any], str]] = [
            ({"bogus": 1}, r"unknown hyperparameter\(s\) \['bogus'\]")]
        refusals += [({key: bad}, f"{key}=") for key, spec in specs.items()
                     if key not in task.fixed for bad in invalid_values(spec)]
        refusals += [({key: value + 1}, "contradicts") for key, value in tiny(name).items()
                     if key in specs]
        for hparams, message in refusals:
            with pytest.raises(ValueError, match=message) as info:
                task.init(**hparams)
            assert "\n" not in str(info.value), hparams
        task.init()  # the refusals left nothing behind: the task still trains
        task.fit(1)
        assert task.epoch == 1
    finally:
        task.close()


@pytest.mark.parametrize("name", TASKS)
def test_fit_is_absolute_and_a_no_op_once_past_its_epoch(name):
    task = make(name).init()
    try:
        steps = task.steps_per_epoch
        assert task.fit(0) == [] and (task.epoch, task.env_steps) == (0, 0)
        task.fit(2)
        assert (task.epoch, task.env_steps) == (2, 2 * steps)
        assert [row["epoch"] for row in task.history] == [1, 2]
        assert [row["env_steps"] for row in task.history] == [steps, 2 * steps]
        assert all(ROW <= set(row) for row in task.history), task.history
        before = copy.deepcopy(task.state_dict())  # the task's own tensors otherwise
        for past in (2, 1, 0):
            task.fit(past)
        assert_same_state(before, task.state_dict())
        task.fit(3)  # absolute: one epoch more, not three
        assert (task.epoch, task.env_steps, len(task.history)) == (3, 3 * steps, 3)
        assert_same_state(before["history"], task.state_dict()["history"][:2])
        with pytest.raises(ValueError, match="non-negative integer"):
            task.fit(-1)
    finally:
        task.close()


@pytest.mark.parametrize("name", TASKS)
def test_evaluate_reports_its_figures_repeatably_and_leaves_the_state_alone(name, runs):
    final = results_in(runs(name))  # the run's own evaluation after its last epoch
    task = load_task(runs(name))
    try:
        before = copy.deepcopy(task.state_dict())  # the task's own tensors otherwise
        first, second = task.evaluate(episodes=2), task.evaluate(episodes=2)
        assert first == second and EVALUATION <= set(first) and first["episodes"] == 2
        assert all(math.isfinite(first[k]) for k in ("return_mean", "return_std", "length_mean"))
        assert {k: final[k] for k in EVALUATION} == {k: first[k] for k in EVALUATION}
        assert_same_state(before, task.state_dict())
        with pytest.raises(ValueError, match="episodes"):
            task.evaluate(episodes=0)
    finally:
        task.close()


@pytest.mark.parametrize("name", TASKS)
def test_checkpoint_round_trip_keeps_the_whole_state(name, runs, tmp_path):
    payload = checkpoint.load(runs(name) / "last.ckpt")
    assert (payload["task"], payload["epoch"]) == (name, 2)
    task = load_task(runs(name))
    try:
        state = task.state_dict()
        assert_same_state(payload["state"], state)  # a fresh task takes the saved state whole
        checkpoint.save(tmp_path / "state.ckpt", state)
        assert_same_state(state, checkpoint.load(tmp_path / "state.ckpt"))
    finally:
        task.close()


@pytest.mark.parametrize("name", TASKS)
def test_resume_in_process_is_exact(name, tmp_path):
    straight = assert_resumes_exactly(lambda: make(name).init(), tmp_path, stop=1, end=2)
    fresh = make(name).init()
    try:  # the two epochs changed the networks: the resume had something to get wrong
        trained = state_diffs(fresh.state_dict()["modules"], straight.state_dict()["modules"])
        assert trained, f"two epochs of {name} left every network as it was initialised"
    finally:
        fresh.close()
        straight.close()


@pytest.mark.parametrize("name", TASKS)
def test_exported_policy_acts_as_the_task(name, runs, tmp_path):
    out = tmp_path / "policy.pt"
    info = export_run(runs(name), "torchscript", out)
    assert info["parity"] and info["file"] == str(out) and out.is_file(), info
    task = load_task(runs(name))
    try:
        obs = sample_observations(task)
        expected = np.asarray(task.act(task.loader.normalize_obs(obs)))
    finally:
        task.close()
    got = torch.jit.load(str(out))(torch.from_numpy(obs)).detach().numpy()
    got = got.reshape(expected.shape)
    if expected.dtype.kind in "iu":
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
