"""The loader contract: what a task needs from its dataloader (``Task.LOADER``).

A loader owns a batch of ``num_envs`` environments and hands the task numpy arrays.
``VecLoader`` (gymnasium vector envs) and ``ParallelLoader`` (PettingZoo parallel envs,
agents stacked on axis 1) implement it; a new back-end implements it too, and nothing above
it changes. Checkpoints are taken at epoch boundaries. In ``env_state`` "reset" mode every
epoch starts with ``reset(seed)`` and ``state_dict`` holds only what outlives an epoch
(normalisation statistics); in "snapshot" mode (envs whose state ``rltasks.envs.snapshot``
captures) only a run's first epoch resets, and ``state_dict`` also holds the running
episodes: the envs' exact state and the episode statistics.
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
    #: the env-state mode in force: "snapshot" (``state_dict`` holds the running episodes,
    #: epochs continue them) or "reset" (every epoch resets the envs); ``__init__``'s
    #: ``env_state`` is "auto" (snapshot when the envs can be captured), "snapshot" (a
    #: one-line ValueError when they cannot) or "reset"
    env_state: str
    #: why ``env_state`` is "reset" (the envs cannot be captured, or it was asked for);
    #: None in snapshot mode
    env_state_reason: str | None

    def __init__(self, env_id: str, num_envs: int = ..., vectorization: str = ...,
                 norm_obs: bool = ..., norm_reward: bool = ...,
                 env_kwargs: dict[str, Any] | None = None, env_state: str = ...) -> None: ...

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

    def state_dict(self) -> dict[str, Any]:
        """What outlives an epoch (see the module docstring); plain values and arrays only."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``; in snapshot mode a state without the envs' snapshot is a
        ``ValueError``, in reset mode a snapshot is ignored (the next epoch resets)."""
        ...

    def close(self) -> None: ...
