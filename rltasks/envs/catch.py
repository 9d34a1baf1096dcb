"""Catch: rltasks' own pixel env, small enough to learn from pixels in a test.

A ball falls one row per step down a ``rows`` x ``cols`` grid from a random column of the top
row; the agent moves a paddle along the bottom row (0 left, 1 stay, 2 right). When the ball
reaches the bottom the episode ends with +1 if the paddle is under it, else -1. The
observation is the grid drawn as a 1 x ``size`` x ``size`` uint8 image (255 for the ball and
the paddle, each cell a block of pixels), so a policy must read pixels to act. The grid is
bsuite's (10 x 5). The frames are 80 x 80, near Atari's 84 x 84: at 40 x 40 the Nature
CNN's last convolution sees a 1 x 1 map, and DQN on it did not learn in 20k steps here
(PPO did; at 80 x 80 both learn within 8k).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CatchEnv(gym.Env):
    """Catch the falling ball (see the module)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, rows: int = 10, cols: int = 5, size: int = 80,
                 render_mode: str | None = None) -> None:
        if rows < 2 or cols < 2 or size % rows or size % cols:
            raise ValueError(f"Catch needs rows >= 2 and cols >= 2 that divide size, not "
                             f"rows={rows}, cols={cols}, size={size}")
        self.rows, self.cols, self.cell = rows, cols, (size // rows, size // cols)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (1, size, size), np.uint8)
        self.action_space = spaces.Discrete(3)
        self.ball = np.zeros(2, np.int64)  # row, column
        self.paddle = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.ball = np.array([0, self.np_random.integers(self.cols)])
        self.paddle = int(self.np_random.integers(self.cols))
        return self._frame(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, self.cols - 1))
        self.ball[0] += 1
        landed = self.ball[0] == self.rows - 1
        reward = (1.0 if self.ball[1] == self.paddle else -1.0) if landed else 0.0
        return self._frame(), reward, bool(landed), False, {}

    def _frame(self) -> np.ndarray:
        grid = np.zeros((self.rows, self.cols), np.uint8)
        grid[self.ball[0], self.ball[1]] = 255
        grid[self.rows - 1, self.paddle] = 255
        frame = np.kron(grid, np.ones(self.cell, np.uint8))
        return frame[None]

    def render(self) -> np.ndarray:
        return np.repeat(self._frame()[0][..., None], 3, axis=-1)


def register() -> None:
    """Register ``rltasks/Catch-v0`` with gymnasium (idempotent)."""
    if "rltasks/Catch-v0" not in gym.registry:
        gym.register("rltasks/Catch-v0", entry_point=CatchEnv, max_episode_steps=100)
