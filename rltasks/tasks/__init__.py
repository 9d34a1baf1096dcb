"""The registry of tasks: name -> Task subclass."""

from __future__ import annotations

from gymnasium import spaces

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
