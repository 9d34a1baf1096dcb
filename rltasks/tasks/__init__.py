"""The registry of tasks: name -> Task subclass."""

from __future__ import annotations

from gymnasium import spaces

from rltasks.envs import VecLoader, check_env_id
from rltasks.task import Task
from rltasks.tasks.a2c import A2C
from rltasks.tasks.ddpg import DDPG
from rltasks.tasks.dqn import DQN
from rltasks.tasks.maddpg import MADDPG
from rltasks.tasks.pg import PG
from rltasks.tasks.ppo import PPO
from rltasks.tasks.sac import SAC
from rltasks.tasks.td3 import TD3

REGISTRY: dict[str, type[Task]] = {
    cls.name: cls for cls in (A2C, DDPG, DQN, MADDPG, PG, PPO, SAC, TD3)}


def tasks_for(action_space: spaces.Space, observation_space: spaces.Space,
              loader: type | None = None) -> list[str]:
    """Names of the registered tasks that handle these spaces (and this kind of loader:
    gymnasium's or PettingZoo's), sorted."""
    return sorted(name for name, cls in REGISTRY.items()
                  if cls.fits(action_space, observation_space)
                  and (loader is None or cls.LOADER is loader))


#: The hyperparameters an agent finder hunts for each agent (the rest keep their defaults):
#: the few that matter most, so that every agent gets a fair share of a small budget.
AGENT_HPARAMS: dict[str, tuple[str, ...]] = {
    "ppo": ("lr", "n_steps", "clip_range", "ent_coef"),
    "a2c": ("lr", "n_steps", "ent_coef"),
    "pg": ("lr", "n_steps"),
    "dqn": ("lr", "exploration", "target_update", "train_freq"),
    "ddpg": ("lr", "tau", "noise"),
    "td3": ("lr", "tau", "policy_delay"),
    "sac": ("lr", "tau", "ent_coef_init"),
    "maddpg": ("lr", "tau", "noise"),
}


def agent_space(env: str) -> dict[str, str]:
    """The agent finder's Orion space for ``env``: ``agent`` over the tasks that fit it, and
    each agent's ``AGENT_HPARAMS`` namespaced by it (``ppo.clip_range``), which apply only to
    the trials of that agent (``scripts/agent.py``)."""
    check_env_id(env)
    loader = VecLoader(env, 1, "sync")
    try:
        names = tasks_for(loader.single_action_space, loader.single_observation_space,
                          VecLoader)
    finally:
        loader.close()
    space = {"agent": f"choices({names!r})"}
    for name in names:
        specs = REGISTRY[name].hparam_specs()
        space.update({f"{name}.{key}": specs[key].prior for key in AGENT_HPARAMS[name]})
    return space
