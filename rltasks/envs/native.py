"""Gymnasium's numpy-vectorized CartPole behind a loader: same-step autoreset, and the envs of
several loaders stepped as one vector env.

``NativeSameStep`` re-initialises a finished sub-env in the step that finished it, from the
env's own seeded generator, exactly as ``CartPoleVectorEnv.step`` would one step later.

``step_together`` serves a population (``rltasks.population``): its members' CartPole envs,
one vector env each, take their step as one ``CartPoleVectorEnv`` of all their sub-envs (the
physics is elementwise numpy, so each sub-env gets the bits it would alone); each member's
finished sub-envs are then re-initialised from its own env's generator, as alone. Each
loader's next ``step`` returns its share, so a member of a population ends with the bits of
its solo run.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv

StepResult = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any, Any]


class NativeSameStep:
    """Same-step autoreset over gymnasium's numpy-vectorized CartPole (next-step by design)."""

    def __init__(self, env: VectorEnv) -> None:
        self.env = env.unwrapped
        self.num_envs = env.num_envs
        #: ``(actions, result)`` of a step taken by ``step_together``, for the next ``step``
        self.pending: tuple[np.ndarray, StepResult] | None = None

    def reset(self, seed: int) -> np.ndarray:
        self.pending = None
        obs, _ = self.env.reset(seed=seed)
        return obs

    def step(self, actions: np.ndarray) -> StepResult:
        if self.pending is not None:
            taken, result = self.pending
            self.pending = None
            if not np.array_equal(taken, actions):
                raise RuntimeError(f"step({actions}) after step_together took {taken}")
            return result
        obs, rew, term, trunc, _ = self.env.step(actions)
        return self.restart(obs, rew, term, trunc)

    def restart(self, obs: np.ndarray, rew: np.ndarray, term: np.ndarray,
                trunc: np.ndarray) -> StepResult:
        """The step's result once its finished sub-envs are re-initialised."""
        env = self.env
        done = term | trunc
        final = success = None
        if done.any():
            final = obs.copy()
            n = int(done.sum())
            env.state[:, done] = env.np_random.uniform(low=env.low, high=env.high, size=(4, n))
            env.steps[done] = 0
            env.prev_done[:] = False
            obs = env.state.T.astype(np.float32)
        return obs, rew, term, trunc, final, success

    def close(self) -> None:
        self.env.close()


class Together:
    """One ``CartPoleVectorEnv`` the size of the members' sub-envs taken together, made
    once per set of sizes; its own generator is never drawn from (no sub-env of it is ever
    left finished)."""

    def __init__(self) -> None:
        self._envs: dict[tuple[str, int], Any] = {}

    def env(self, env_id: str, num_envs: int) -> Any:
        key = (env_id, num_envs)
        if key not in self._envs:
            self._envs[key] = gym.make_vec(env_id, num_envs=num_envs,
                                           vectorization_mode="vector_entry_point").unwrapped
            self._envs[key].reset(seed=0)
        return self._envs[key]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def step_together(together: Together, venvs: list[NativeSameStep], env_id: str,
                  actions: list[np.ndarray]) -> None:
    """Step ``venvs`` (sub-envs of the same CartPole id, no env kwargs) with ``actions`` as
    one vector env; each one's next ``step(actions[i])`` returns its share."""
    sizes = [v.num_envs for v in venvs]
    big = together.env(env_id, sum(sizes))
    big.state = np.concatenate([v.env.state for v in venvs], axis=1)
    big.steps = np.concatenate([v.env.steps for v in venvs])
    big.prev_done = np.zeros(sum(sizes), bool)
    _, rew, term, trunc, _ = big.step(np.concatenate(actions))
    start = 0
    for venv, size, taken in zip(venvs, sizes, actions, strict=True):
        part = slice(start, start + size)
        start += size
        env = venv.env
        env.state = np.ascontiguousarray(big.state[:, part])
        env.steps = big.steps[part].copy()
        env.prev_done = (term[part] | trunc[part]).copy()
        obs = env.state.T.astype(np.float32)
        venv.pending = (np.array(taken), venv.restart(obs, rew[part].copy(), term[part].copy(),
                                                      trunc[part].copy()))
