"""Every spaces/*.yaml stays in step with the get_space() of its task."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from gymnasium import spaces
from helpers import ROOT, hunted, results_in

import rltasks
from rltasks.orion.experiments import active_params
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


def test_lr_finder_searches_lr_alone_with_its_own_prior():
    space = rltasks.make_task("ppo", env="CartPole-v1").get_space(scope="all")
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


def curated(name: str, env: str, **fixed) -> set[str]:
    task = rltasks.make_task(name, env=env, num_envs=1, **fixed)
    try:
        return set(task.get_space())
    finally:
        task.close()


def test_curated_spaces_hold_only_what_applies_to_the_env_and_the_other_choices():
    # a Gaussian policy's initial log std: only for Box actions
    assert "log_std_init" not in curated("ppo", "CartPole-v1")
    assert "log_std_init" in curated("ppo", "Pendulum-v1")
    # hindsight replay: only on a goal env, and its parameters only with her on
    assert not {k for k in curated("sac", "Pendulum-v1") if k.startswith("her")}
    assert not {k for k in curated("ddpg", "rltasks/BitFlippingContinuous-v0")
                if k.startswith("her")}
    assert {"her_k", "her_strategy"} <= curated("ddpg", "rltasks/BitFlippingContinuous-v0",
                                                 her=True)
    # a noise's parameters only for the noise in use (SAC's default is none)
    assert "noise_sigma" in curated("td3", "Pendulum-v1")
    assert "noise_sigma" not in curated("sac", "Pendulum-v1")
    assert "noise_sigma" not in curated("td3", "Pendulum-v1", noise="none")
    # an exploration policy's parameters only for the policy in use
    assert {"eps_min", "eps_decay"} <= curated("dqn", "CartPole-v1")
    assert not {"eps_min", "eps_decay"} & curated("dqn", "CartPole-v1", exploration="boltzmann")
    # MADDPG: Gumbel-softmax for discrete actions, noise for continuous ones
    assert "gumbel_temperature" in curated("maddpg", "mpe2/simple_spread_v3-discrete")
    assert "noise_sigma" not in curated("maddpg", "mpe2/simple_spread_v3-discrete")
    assert "noise_sigma" in curated("maddpg", "mpe2/simple_spread_v3")
    assert "gumbel_temperature" not in curated("maddpg", "mpe2/simple_spread_v3")


def test_curated_ranges_are_rl_zoo3s_and_all_is_every_prior():
    task = rltasks.make_task("ppo", env="CartPole-v1")
    try:
        space, every = task.get_space(), task.get_space(scope="all")
        assert space["lr"] == "loguniform(1e-5, 2e-3)" and every["lr"] == "loguniform(1e-5, 1e-2)"
        assert space["update_epochs"] == "choices([1, 5, 10, 20])"
        assert {"optimizer", "vf_clip"} <= set(every) - set(space)
        # a constant or linear schedule (rl-zoo3's lin_...), not every schedule there is
        assert space["clip_schedule"] == space["lr_schedule"] == (
            "choices(['constant', 'linear'])")
        assert every["lr_schedule"] == "choices(['constant', 'linear', 'cosine', 'exponential'])"
        with pytest.raises(ValueError, match=r"scope='some'.*'curated'.*'all'") as info:
            task.get_space(scope="some")
        assert "\n" not in str(info.value)
    finally:
        task.close()


def header_env(path: Path) -> str:
    """The env a shipped space says it was made for (its first line)."""
    match = re.match(r"# Orion search space of the \w+ task, made for (\S+):", path.read_text())
    assert match, f"{path.name}: its header does not name the env it was made for"
    return match.group(1)


@pytest.mark.parametrize("name", rltasks.known_tasks())
def test_every_shipped_space_hunted_on_its_env_breaks_no_trial(orion, name):
    """The documented hunt, as a user runs it (random search, a few trials, one short
    epoch each), on the env the file names: every trial completes with what it drew."""
    path = SPACES / f"{name}.yaml"
    env = header_env(path)
    _, found = hunted(orion, name, f"spaces/{name}.yaml", "--env", env, "--epochs", "1",
                      "--steps-per-epoch", "256", "--num-envs", "1", "--eval-episodes", "1",
                      max_trials=3, script=f"scripts/{name}.py",
                      orion_args=("-c", str(ROOT / "spaces" / "algos" / "random.yaml")))
    assert len(found) == 3
    for trial in found:
        params = active_params(trial["params"])
        assert set(params) == set(priors(path))
        recorded = results_in(trial["working_dir"])["hparams"]
        assert {k: recorded[k] for k in params} == params
