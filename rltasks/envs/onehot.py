"""Discrete observations as one-hot vectors, as SB3's policies see them.

Gymnasium's toy-text envs (FrozenLake, Taxi, CliffWalking, Blackjack) observe a state index
(``Discrete``) or a tuple of them; a network needs a vector. The loader wraps each env in
gymnasium's ``FlattenObservation``: a ``Discrete(n)`` becomes a one-hot ``Box`` of ``n``
(``start`` included), a ``MultiDiscrete`` the concatenation of one-hot blocks, a
``MultiBinary`` its bits, and a ``Tuple`` of these its parts' vectors side by side.
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium import spaces
from gymnasium.wrappers import FlattenObservation

DISCRETE = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
#: the longest one-hot vector made (a ``MultiDiscrete`` of large ranges would need more)
MAX_ONE_HOT = 1 << 16


def is_discrete_space(space: spaces.Space) -> bool:
    """A ``Discrete``, ``MultiDiscrete`` or ``MultiBinary`` space, or a ``Tuple`` of them."""
    if isinstance(space, spaces.Tuple):
        return all(isinstance(part, DISCRETE) for part in space.spaces)
    return isinstance(space, DISCRETE)


def one_hot(env: gym.Env) -> gym.Env:
    """``env`` with its discrete observations one-hot (``FlattenObservation``); any other env
    as it is. A one-hot vector over ``MAX_ONE_HOT`` long is a one-line ``ValueError``."""
    space = env.observation_space
    if not is_discrete_space(space):
        return env
    size = spaces.flatdim(space)
    if size > MAX_ONE_HOT:
        env.close()
        raise ValueError(f"{env.spec.id if env.spec else type(env).__name__}'s observations "
                         f"({space}) would be one-hot vectors of {size} entries, over the "
                         f"{MAX_ONE_HOT} rltasks makes: give the env a Box observation space")
    return FlattenObservation(env)
