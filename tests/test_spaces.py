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


def test_optimizer_hunt_searches_optimizer_and_lr_with_the_tasks_priors():
    found = priors(SPACES / "optimizers.yaml")
    assert set(found) == {"optimizer", "lr"}
    space = rltasks.make_task("ppo", env="CartPole-v1").get_space()
    assert all(space[k] == v for k, v in found.items())
