"""Gymnasium's numpy-vectorized CartPole behind a loader: same-step autoreset, and the envs of
several loaders stepped as one vector env.

``NativeSameStep`` re-initialises a finished sub-env in the step that finished it, from the
env's own seeded generator, exactly as ``CartPoleVectorEnv.step`` would one step later.

``StepAsOne`` serves a population (``rltasks.population``): its members' CartPole envs,
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
        #: ``(actions, result)`` of a step taken by ``StepAsOne``, for the next ``step``
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
                raise RuntimeError(f"step({actions}) after StepAsOne took {taken}")
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


class StepAsOne:
    """The envs of several loaders (a population's members', one each) stepped as one vector
    env where they allow it: all of them gymnasium's numpy-vectorized CartPole of one id
    (a ``VecLoader`` in ``native`` vectorization); elsewhere each loader steps alone. Each
    loader's next ``step(actions[k])`` returns what it would alone, bit for bit."""

    def __init__(self, loaders: list[Any]) -> None:
        self.venvs = [getattr(loader, "_venv", None) for loader in loaders]
        self.env_id = loaders[0].env_id if loaders else ""
        self.fits = (len(loaders) > 1 and len({loader.env_id for loader in loaders}) == 1
                     and all(isinstance(venv, NativeSameStep) for venv in self.venvs))
        #: one CartPoleVectorEnv per total of sub-envs stepped together; its own generator
        #: is never drawn from (none of its sub-envs is ever left finished)
        self._big: dict[int, Any] = {}

    def step(self, actions: dict[int, np.ndarray]) -> None:
        """Take loader ``k``'s next step with ``actions[k]``, for every ``k`` given, as one."""
        if not self.fits or len(actions) < 2:
            return
        ks = sorted(actions)
        venvs = [self.venvs[k] for k in ks]
        sizes = [venv.num_envs for venv in venvs]
        big = self._env(sum(sizes))
        big.state = np.concatenate([venv.env.state for venv in venvs], axis=1)
        big.steps = np.concatenate([venv.env.steps for venv in venvs])
        big.prev_done = np.zeros(sum(sizes), bool)
        _, rew, term, trunc, _ = big.step(np.concatenate([actions[k] for k in ks]))
        start = 0
        for venv, size, k in zip(venvs, sizes, ks, strict=True):
            part = slice(start, start + size)
            start += size
            env = venv.env  # as its own step would leave it, before the restarts
            env.state = np.ascontiguousarray(big.state[:, part])
            env.steps = big.steps[part].copy()
            env.prev_done = (term[part] | trunc[part]).copy()
            venv.pending = (np.array(actions[k]), venv.restart(
                env.state.T.astype(np.float32), rew[part].copy(), term[part].copy(),
                trunc[part].copy()))

    def _env(self, num_envs: int) -> Any:
        if num_envs not in self._big:
            self._big[num_envs] = gym.make_vec(self.env_id, num_envs=num_envs,
                                               vectorization_mode="vector_entry_point").unwrapped
            self._big[num_envs].reset(seed=0)
        return self._big[num_envs]

    def close(self) -> None:
        for env in self._big.values():
            env.close()
        self._big.clear()
