"""The loader contract: what a task needs from its dataloader (``Task.LOADER``).

A loader owns a batch of ``num_envs`` environments and hands the task numpy arrays.
``VecLoader`` (gymnasium vector envs) and ``ParallelLoader`` (PettingZoo parallel envs,
agents stacked on axis 1) implement it; a new back-end implements it too, and nothing above
it changes. Every epoch starts with ``reset(seed)``; checkpoints are taken at epoch
boundaries, so ``state_dict`` holds only what outlives an epoch (normalisation statistics).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import numpy as np
from gymnasium import spaces

#: one finished episode: (return, length, success or None when the env reports none)
Episode = tuple[float, int, "bool | None"]
#: ``step``'s result: (obs, reward, terminated, truncated, final obs of finished envs or None)
Step = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]


class Loader(Protocol):
    """The dataloader of a task (see the module docstring)."""

    #: True for loaders of several agents per env (their rewards are per agent)
    multi_agent: ClassVar[bool]
    env_id: str
    num_envs: int
    #: the vectorization in force: sync, async or native
    vectorization: str
    single_observation_space: spaces.Space
    single_action_space: spaces.Space
    #: discount of the running return that reward normalisation divides by
    gamma: float
    #: a goal env's unwrapped instance (its ``compute_reward``), for hindsight replay
    goal_env: Any
    #: running observation statistics when observations are normalised, else None
    obs_rms: Any

    def __init__(self, env_id: str, num_envs: int = ..., vectorization: str = ...,
                 norm_obs: bool = ..., norm_reward: bool = ...,
                 env_kwargs: dict[str, Any] | None = None) -> None: ...

    def reset(self, seed: int) -> np.ndarray:
        """Reset every env from ``seed`` (derived per env); return the first observations."""
        ...

    def step(self, actions: np.ndarray, train: bool = True) -> Step:
        """Step every env with same-step autoreset; statistics update only when ``train``."""
        ...

    def normalize_obs(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        """Observations as the networks see them (identity without normalisation)."""
        ...

    def pop_episodes(self) -> list[Episode]:
        """The episodes finished since the last call, cleared."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def close(self) -> None: ...
