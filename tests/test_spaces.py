"""Every spaces/*.yaml stays in step with the get_space() of its task."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from gymnasium import spaces

import rltasks
from rltasks.tasks import REGISTRY

SPACES = Path(__file__).resolve().parents[1] / "spaces"


def priors(path: Path) -> dict[str, str]:
    data = yaml.safe_load(path.read_text())
    return {k: v.removeprefix("orion~") for k, v in data.items()
            if isinstance(v, str) and v.startswith("orion~")}


@pytest.mark.parametrize("name", rltasks.known_tasks())
def test_task_space_file_is_exactly_get_space(name):
    path = SPACES / f"{name}.yaml"
    assert path.exists(), f"spaces/{name}.yaml is missing"
    env = "CartPole-v1" if spaces.Discrete in REGISTRY[name].ACTION_SPACES else "Pendulum-v1"
    if REGISTRY[name].LOADER is not REGISTRY["ppo"].LOADER:
        env = "mpe2/simple_spread_v3"
    task = rltasks.make_task(name, env=env)
    assert priors(path) == task.get_space()


def nested_priors(path: Path) -> dict[str, str]:
    """The priors of a finder space, nested sections read as ``section.key``."""
    from rltasks.hparams import flatten

    return {k: v.removeprefix("orion~") for k, v in flatten(yaml.safe_load(path.read_text()))
            .items() if isinstance(v, str) and v.startswith("orion~")}


def test_lr_finder_searches_lr_alone_with_the_tasks_prior():
    space = rltasks.make_task("ppo", env="CartPole-v1").get_space()
    assert nested_priors(SPACES / "lr.yaml") == {"lr": space["lr"]}


def test_optimizer_finder_nests_each_optimizers_own_hyperparameters():
    from rltasks.optim import OPTIMIZER_HPARAMS, optimizer_space

    found = nested_priors(SPACES / "optimizers.yaml")
    assert found == optimizer_space()
    assert {k for k in found if "." in k} == {
        f"{o}.{k}" for o, keys in OPTIMIZER_HPARAMS.items() for k in keys}
    assert "sgd.momentum" in found and "sgd.beta1" not in found and "adam.momentum" not in found
    data = yaml.safe_load((SPACES / "optimizers.yaml").read_text())
    assert isinstance(data["sgd"], dict)  # nested: Orion fills dotted keys of a config badly


def test_agent_finder_chooses_among_the_tasks_that_fit_cartpole():
    from rltasks.tasks import agent_space

    data = yaml.safe_load((SPACES / "agents.yaml").read_text())
    assert data["env"] == "CartPole-v1"
    found = nested_priors(SPACES / "agents.yaml")
    assert found == agent_space("CartPole-v1")
    assert found["agent"] == "choices(['a2c', 'dqn', 'pg', 'ppo'])"
    assert "ppo.clip_range" in found and "dqn.exploration" in found


def test_pbt_space_holds_only_what_a_child_can_change():
    found = nested_priors(SPACES / "pbt.yaml")
    assert set(found) == {"lr", "ent_coef", "clip_range"}
