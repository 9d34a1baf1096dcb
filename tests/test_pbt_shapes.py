"""A PBT child (a resume with ``--allow-hparam-change``) may change only hyperparameters that
keep the state's shapes. For every registered task (``rltasks.known_tasks()``, so the check
grows with the registry) and each of its hyperparameters: a change that alters the structure
of a fresh task's state (networks, buffers, noise or exploration state) is declared
``HP.shape``, and every ``HP.shape`` change is refused, untouched, with one line; every other
change is adopted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from helpers import run_script
from test_contract import LOADER_ARGS, tiny

import rltasks
from rltasks.hparams import HP
from rltasks.tasks import REGISTRY
from rltasks.trial.payload import make_payload, restore

TASKS = rltasks.known_tasks()
REFUSED = r"cannot continue this checkpoint with \['{}'\] changed \("


def signature(state: Any, at: str = "state", out: dict | None = None) -> dict[str, Any]:
    """Every place of a state with its kind, dtype and shape (optimizer state left out:
    adopting another optimizer's moments starts them afresh)."""
    out = {} if out is None else out
    if isinstance(state, dict):
        for key, value in state.items():
            if at != "state" or key != "optimizers":
                signature(value, f"{at}.{key}", out)
    elif isinstance(state, list | tuple):
        out[at] = ("list", len(state))
        for i, value in enumerate(state):
            signature(value, f"{at}[{i}]", out)
    elif isinstance(state, torch.Tensor | np.ndarray):
        out[at] = (type(state).__name__, str(state.dtype), tuple(state.shape))
    else:
        out[at] = type(state).__name__
    return out


def alternatives(spec: HP, start: Any) -> list[Any]:
    """Valid values other than ``start``: every other choice, or one other number."""
    if spec.kind is bool:
        return [not start]
    if spec.choices is not None:
        return [c for c in spec.choices if c != start]
    for value in (start * 2, start + 1, start * 0.5) if start else (1, 0.5):
        try:
            value = spec.coerce("x", value)
        except ValueError:
            continue
        if value != start:
            return [value]
    return []


def build(name: str, **hparams: Any) -> Any:
    settings = tiny(name)
    loader = {k: v for k, v in settings.items() if k in LOADER_ARGS}
    task = rltasks.make_task(name, env=REGISTRY[name].DEFAULT_ENV, seed=1, horizon=4,
                             vectorization="sync", **loader)
    try:
        task.init(**{**{k: v for k, v in settings.items() if k not in LOADER_ARGS},
                     **hparams})
    except BaseException:
        task.close()
        raise
    return task


@pytest.mark.parametrize("name", TASKS)
def test_every_change_is_refused_exactly_when_it_fixes_a_shape(name):
    parent = build(name)
    payload, start = make_payload(parent), parent.hparams()
    reference = signature(parent.state_dict())
    parent.close()
    tried = 0
    for key, spec in REGISTRY[name].hparam_specs().items():
        for value in alternatives(spec, start.get(key, spec.default)):
            try:
                child = build(name, **{key: value})
            except ValueError:  # a value this env cannot take (her=True on a non-goal env)
                continue
            try:
                if key not in child.hparams():  # an optimizer's own, which this one ignores
                    continue
                tried += 1
                reshaped = signature(child.state_dict()) != reference
                assert not reshaped or spec.shape, (
                    f"{name}: {key}={value!r} changes the state's structure: declare it "
                    f"HP(..., shape=True)")
                if spec.shape:
                    before = signature(child.state_dict())
                    with pytest.raises(ValueError, match=REFUSED.format(key)) as info:
                        restore(child, payload)
                    assert "\n" not in str(info.value)
                    assert signature(child.state_dict()) == before and child.epoch == 0
                else:
                    assert key in restore(child, payload), (name, key, value)
            finally:
                child.close()
    assert tried >= 10


@pytest.mark.parametrize("name", TASKS)
def test_sizes_of_networks_and_buffers_are_declared_shapes(name):
    specs = REGISTRY[name].hparam_specs()
    for key in ("hidden", "layers", "n_steps", "buffer_size", "her", "noise", "dueling",
                "replay", "exploration"):
        if key in specs:
            assert specs[key].shape, f"{name}: {key} fixes a shape"
    for key in ("lr", "optimizer", "batch_size", "gamma", "learning_starts"):
        if key in specs:
            assert not specs[key].shape, f"{name}: {key} can be adopted"


def test_a_pbt_child_changing_n_steps_is_refused_in_one_line(tmp_path):
    fast = ["--steps-per-epoch", "64", "--num-envs", "2", "--hidden", "8", "--batch-size",
            "32", "--update-epochs", "1", "--eval-episodes", "1", "--vectorization", "sync"]
    assert run_script("ppo", "--epochs", "1", "--n-steps", "16", *fast,
                      workdir=tmp_path).returncode == 0
    proc = run_script("ppo", "--epochs", "2", "--n-steps", "32", "--allow-hparam-change",
                      *fast, workdir=tmp_path)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot continue this checkpoint with ['n_steps'] changed" in (
        errors[0]) and "n_steps 16 -> 32" in errors[0]
    proc = run_script("ppo", "--epochs", "2", "--n-steps", "16", "--num-envs", "4",
                      "--allow-hparam-change", *fast[:2], *fast[4:], workdir=tmp_path)
    assert proc.returncode == 2 and "num_envs=2 there, 4 here" in proc.stderr
