"""Observations a network reads as one vector, as SB3's policies see them.

Gymnasium's toy-text envs (FrozenLake, Taxi, CliffWalking, Blackjack) observe a state index
(``Discrete``) or a tuple of them, and a user's env may observe a ``Dict`` of named parts; a
network needs a vector. The loader wraps each such env in gymnasium's
``FlattenObservation``: a ``Discrete(n)`` becomes a one-hot ``Box`` of ``n`` (``start``
included), a ``MultiDiscrete`` the concatenation of one-hot blocks, a ``MultiBinary`` its
bits, and a ``Tuple`` or ``Dict`` of these and of flat ``Box``es its parts' vectors side by
side (a ``Dict`` in its keys' sorted order). A goal env's dict (observation, achieved_goal,
desired_goal) stays a dict: hindsight replay reads its parts.
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium import spaces
from gymnasium.wrappers import FlattenObservation

from rltasks.envs.goal import is_goal_space

DISCRETE = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
#: the longest vector made (a ``MultiDiscrete`` of large ranges would need more)
MAX_FLAT = 1 << 16


def _flat_part(space: spaces.Space) -> bool:
    if isinstance(space, (spaces.Tuple, spaces.Dict)):
        parts = space.spaces.values() if isinstance(space, spaces.Dict) else space.spaces
        return all(_flat_part(part) for part in parts)
    return isinstance(space, DISCRETE) or (isinstance(space, spaces.Box)
                                           and len(space.shape) <= 1)


def needs_flattening(space: spaces.Space) -> bool:
    """A discrete space, or a ``Tuple``/``Dict`` of discrete spaces and flat ``Box``es (not
    a goal env's dict)."""
    return (not isinstance(space, spaces.Box) and not is_goal_space(space)
            and _flat_part(space))


def flat_observations(env: gym.Env) -> gym.Env:
    """``env`` with its observations one vector (``FlattenObservation``) when
    ``needs_flattening``; any other env as it is. A vector over ``MAX_FLAT`` long is a
    one-line ``ValueError``."""
    space = env.observation_space
    if not needs_flattening(space):
        return env
    size = spaces.flatdim(space)
    if size > MAX_FLAT:
        env.close()
        raise ValueError(f"{env.spec.id if env.spec else type(env).__name__}'s observations "
                         f"({space}) would be vectors of {size} entries, over the "
                         f"{MAX_FLAT} rltasks makes: give the env a Box observation space")
    return FlattenObservation(env)
