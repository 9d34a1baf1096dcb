"""EnvPool (``vectorization='envpool'``, the ``envpool`` extra): its C++ Atari, MuJoCo and
classic-control envs behind the loader's same-step autoreset.

An env is named by its gymnasium id, as everywhere in rltasks; ``envpool_id`` maps it onto
EnvPool's task (``ALE/Pong-v5`` and ``PongNoFrameskip-v4`` onto ``Pong-v5`` with the sticky
actions the id says, ``HalfCheetah-v5`` onto itself). On Atari, EnvPool applies the same
preprocessing as ale-py's vector env (no-op starts, frame-skip 4 with max-pooling, FIRE on
reset, 84x84 grayscale, 4 stacked frames, whole games with true rewards), and the loader
adds the training-only parts (terminal on a lost life, clipped rewards) as it does for ale.

EnvPool resets a finished env on its *next* step; ``EnvPoolSameStep`` resets it in the same
step instead (``reset`` of those env ids alone), as the loader's other envs do. EnvPool seeds
its envs when it builds them and takes no seed on reset, so ``reset(seed)`` with new seeds
builds the pool again (~0.8 s for 8 Atari envs): each epoch of a run in reset mode, and each
evaluation, starts from its own seeds, so a resumed run replays an uninterrupted one. The
envs' states cannot be saved (reset mode, said once).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import numpy as np

from rltasks.envs.registry import atari_settings, is_ale_id

#: what ``why_not`` says of an EnvPool env
NO_STATE = "EnvPool does not hand out its envs' states"


def _envpool() -> Any:
    if importlib.util.find_spec("envpool") is None:
        raise ValueError("vectorization='envpool' needs EnvPool, which is not installed; "
                         "pip install 'rltasks[envpool]'")
    import envpool

    return envpool


@contextmanager
def _quiet() -> Iterator[None]:
    """Without gymnasium's warning that EnvPool's float64 Box bounds are cast to float32."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*precision lowered by casting to float32")
        yield


def _key(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def envpool_id(spec: gym.envs.registration.EnvSpec) -> tuple[str, dict[str, Any]]:
    """EnvPool's task for the gymnasium env ``spec`` and the arguments that make it that env
    (an Atari game's sticky actions, frame cap and action set); a one-line ``ValueError``
    when EnvPool has no such env."""
    tasks = _envpool().list_all_envs()
    if is_ale_id(spec.id):
        game = _key(str(spec.kwargs.get("game", "")))
        found = next((t for t in tasks if t.endswith("-v5") and _key(t[:-3]) == game), None)
        if found is None:
            raise ValueError(f"EnvPool has no Atari game {spec.kwargs.get('game')!r} "
                             f"({spec.id}); use vectorization='ale'")
        settings = atari_settings(spec)  # EnvPool counts an episode's cap in steps
        frames = settings.pop("max_num_frames_per_episode")
        return found, {**settings, "max_episode_steps": frames // 4}
    if spec.id in tasks:
        return spec.id, {}
    raise ValueError(f"EnvPool has no {spec.id} (it has Atari, MuJoCo and classic control "
                     f"envs: envpool.list_all_envs()); use vectorization='sync'")


class EnvPoolSameStep:
    """Same-step autoreset over an EnvPool gymnasium env of ``num_envs`` envs; ``seeds_of``
    gives the envs' seeds for a reset seed. ``life_lost`` marks, on Atari, the envs that lost
    a life in the last step (as ``_AleSameStep`` does)."""

    def __init__(self, spec: gym.envs.registration.EnvSpec, num_envs: int,
                 env_kwargs: dict[str, Any], seeds_of: Callable[[int], list[int]]) -> None:
        self.task, defaults = envpool_id(spec)
        self.kwargs = {**defaults, **env_kwargs}
        self.num_envs, self.seeds_of = num_envs, seeds_of
        self.seeds = seeds_of(0)
        self.env = self._build(self.seeds)
        with _quiet():
            self.single_observation_space = self.env.observation_space
            self.single_action_space = self.env.action_space
        self.lives = np.zeros(num_envs, np.int64)
        self.life_lost = np.zeros(num_envs, bool)

    def _build(self, seeds: list[int]) -> Any:
        try:
            with _quiet():
                return _envpool().make(self.task, env_type="gymnasium",
                                       num_envs=self.num_envs, env_seed=seeds, **self.kwargs)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"EnvPool's {self.task} does not take these env kwargs "
                             f"{self.kwargs}: {str(err).splitlines()[0]}") from None

    def reset(self, seed: int) -> np.ndarray:
        seeds = self.seeds_of(seed)
        if seeds != self.seeds:  # EnvPool seeds its envs when it builds them, only then
            self.env.close()  # its threads go with it
            self.env, self.seeds = self._build(seeds), seeds
        with _quiet():
            obs, info = self.env.reset()
        self.lives = np.asarray(info.get("lives", self.lives), np.int64).copy()
        self.life_lost[:] = False
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        with _quiet():  # EnvPool builds its spaces again on every step
            obs, rew, term, trunc, info = self.env.step(np.asarray(actions))
        done = term | trunc
        lives = np.asarray(info["lives"], np.int64).copy() if "lives" in info else None
        final = None
        if done.any():  # the finished envs' first observations now, not a step later
            ids = np.flatnonzero(done).astype(np.int32)
            final, obs = obs, obs.copy()
            with _quiet():
                obs[ids], started = self.env.reset(ids)
            if lives is not None:
                lives[ids] = started["lives"]
        if lives is not None:
            self.life_lost = (lives < self.lives) & ~done
            self.lives = lives
        return obs, rew, term, trunc, final, None

    def close(self) -> None:
        self.env.close()
