"""An env of your own, for rltasks: a walk along a corridor to a goal at its far end.

Importing this module registers ``GridWalk-v0`` with gymnasium. rltasks (like
``gymnasium.make``) imports it when the env id names the module::

    PYTHONPATH=examples python scripts/ppo.py --env gridwalk:GridWalk-v0 \\
        --env-kwargs '{"size": 8}' --epochs 5

Observations are float64 (position and goal, scaled to [0, 1]), as MuJoCo's are; actions are
0 (left) and 1 (right); each step costs 0.01 and reaching the goal pays 1 and ends the
episode; episodes are cut after 32 steps. A random policy rarely reaches the goal of a
long corridor in time; a trained one walks right, scoring about ``1 - 0.01 * size``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class GridWalk(gym.Env):
    """A corridor of ``size`` cells; the agent starts in a random cell of its left half."""

    metadata = {"render_modes": []}

    def __init__(self, size: int = 8) -> None:
        if int(size) < 2:
            raise ValueError(f"size={size!r} must be >= 2")
        self.size = int(size)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float64)
        self.action_space = gym.spaces.Discrete(2)
        self.position = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.position, self.size - 1], np.float64) / (self.size - 1)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.position = int(self.np_random.integers(0, self.size // 2))
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.position = int(np.clip(self.position + (1 if action == 1 else -1), 0,
                                    self.size - 1))
        done = self.position == self.size - 1
        return self._obs(), 1.0 if done else -0.01, done, False, {}


gym.register("GridWalk-v0", entry_point=GridWalk, max_episode_steps=32,
             kwargs={"size": 8})
