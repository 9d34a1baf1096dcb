"""Two small goal-conditioned envs, registered with gymnasium, to test hindsight replay
without heavy physics.

Both follow gymnasium-robotics' ``GoalEnv`` convention: dict observations with
``observation``, ``achieved_goal`` and ``desired_goal``, a vectorised
``compute_reward(achieved_goal, desired_goal, info)`` (0 on success, -1 otherwise) and
``info['is_success']``; an episode terminates on success (``terminate_on_success``).

- ``rltasks/BitFlipping-v0``: the bit-flipping env of the HER paper, 15 bits, ``Discrete(15)``
  (flip one bit); ``rltasks/BitFlippingContinuous-v0`` takes ``Box(-1, 1, (15,))`` actions and
  flips every bit whose action is positive, for DDPG/TD3/SAC. Episodes last 15 steps.
- ``rltasks/PointReach-v0``: a point in the unit square moves by ``0.1 * action`` towards a
  random goal; success within 0.1 of it; episodes last 50 steps.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class _GoalEnv(gym.Env):
    terminate_on_success = True
    metadata: dict[str, Any] = {"render_modes": []}

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray,
                       info: Any = None) -> np.ndarray:
        return -(~self._success(achieved_goal, desired_goal)).astype(np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self.state.astype(np.float32).copy(),
                "achieved_goal": self.state.astype(np.float32).copy(),
                "desired_goal": self.goal.astype(np.float32).copy()}

    def _outcome(self) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        success = bool(self._success(self.state, self.goal))
        return self._obs(), 0.0 if success else -1.0, success, False, {"is_success": success}


class BitFlippingEnv(_GoalEnv):
    """Flip bits until the state equals the goal (Andrychowicz et al. 2017)."""

    def __init__(self, n_bits: int = 15, continuous: bool = False) -> None:
        self.n_bits, self.continuous = n_bits, continuous
        box = spaces.Box(0.0, 1.0, (n_bits,), np.float32)
        self.observation_space = spaces.Dict(
            {"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = (spaces.Box(-1.0, 1.0, (n_bits,), np.float32) if continuous
                             else spaces.Discrete(n_bits))

    @staticmethod
    def _success(achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        return (np.asarray(achieved) == np.asarray(desired)).all(-1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self.state = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        self.goal = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        while self._success(self.state, self.goal):
            self.goal = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        return self._obs(), {"is_success": False}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        if self.continuous:
            flip = np.asarray(action) > 0
        else:
            flip = np.zeros(self.n_bits, bool)
            flip[int(action)] = True
        self.state[flip] = 1.0 - self.state[flip]
        return self._outcome()


class PointReachEnv(_GoalEnv):
    """A point in [-1, 1]^2 steered by velocity commands towards a goal."""

    def __init__(self, distance: float = 0.1, speed: float = 0.1) -> None:
        self.distance, self.speed = distance, speed
        box = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = spaces.Dict(
            {"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _success(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(achieved) - np.asarray(desired), axis=-1) < self.distance

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-1.0, 1.0, 2)
        self.goal = self.np_random.uniform(-1.0, 1.0, 2)
        while self._success(self.state, self.goal):
            self.goal = self.np_random.uniform(-1.0, 1.0, 2)
        return self._obs(), {"is_success": False}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        move = np.clip(np.asarray(action, np.float64), -1.0, 1.0) * self.speed
        self.state = np.clip(self.state + move, -1.0, 1.0)
        return self._outcome()


def register() -> None:
    """Register the envs with gymnasium (idempotent; ``rltasks.envs`` calls it)."""
    for env_id, entry, kwargs, steps in (
            ("rltasks/BitFlipping-v0", BitFlippingEnv, {}, 15),
            ("rltasks/BitFlippingContinuous-v0", BitFlippingEnv, {"continuous": True}, 15),
            ("rltasks/PointReach-v0", PointReachEnv, {}, 50)):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry, kwargs=kwargs, max_episode_steps=steps)


def is_goal_space(space: spaces.Space) -> bool:
    """Whether observations follow the goal-env convention HER needs."""
    return isinstance(space, spaces.Dict) and {
        "observation", "achieved_goal", "desired_goal"} <= set(space.spaces)
