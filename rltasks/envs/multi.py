"""The dataloader of multi-agent tasks: PettingZoo parallel envs, as a vectorized loader.

``ParallelLoader`` keeps ``VecLoader``'s contract (same-step autoreset, seeds derived per env
and epoch, episode statistics, ``state_dict``) for PettingZoo parallel envs whose agents are
alike (the same observation and action spaces). Observations stack to
``(num_envs, n_agents, obs_dim)``, actions to ``(num_envs, n_agents, ...)`` and rewards to
``(num_envs, n_agents)``; an episode's return is the team's, the agents' mean.

Env ids name a module of the ``mpe2`` package (``mpe2/simple_spread_v3``); continuous
actions are used when the env offers them, unless the id ends in ``-discrete``.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import numpy as np
from gymnasium import spaces

from rltasks.envs.loader import derive_seed
from rltasks.envs.snapshot import resolve
from rltasks.failpoints import failpoint

_ID = re.compile(r"^mpe2/([a-z0-9_]+)(-discrete)?$")


def make_parallel_env(env_id: str, **kwargs: Any) -> Any:
    """Build the PettingZoo parallel env named ``env_id`` or raise a one-line ValueError."""
    match = _ID.match(env_id)
    if not match:
        raise ValueError(f"unknown multi-agent env id {env_id!r}: use mpe2/<env>, e.g. "
                         f"mpe2/simple_spread_v3 (append -discrete for discrete actions)")
    try:
        module = importlib.import_module(f"mpe2.{match.group(1)}")
    except ImportError as err:
        raise ValueError(f"cannot load multi-agent env {env_id!r} ({err}); install the "
                         f"'multiagent' extra: pip install -e '.[multiagent]'") from None
    try:
        return module.parallel_env(continuous_actions=match.group(2) is None, **kwargs)
    except TypeError as err:  # an env kwarg the env does not take
        raise ValueError(f"{env_id} does not take these env kwargs {kwargs}: {err}") from None


class ParallelLoader:
    """Vectorized PettingZoo parallel envs for one multi-agent task."""

    multi_agent = True
    obs_rms = None  # no observation normalisation for several agents

    def __init__(self, env_id: str, num_envs: int = 1, vectorization: str = "auto",
                 norm_obs: bool = False, norm_reward: bool = False, gamma: float = 0.99,
                 env_kwargs: dict[str, Any] | None = None, env_state: str = "auto") -> None:
        # PettingZoo envs keep their state in objects rltasks cannot capture: every epoch resets
        self.env_state, self.env_state_reason = resolve(
            env_id, env_state, "PettingZoo parallel envs are not capturable")
        if norm_obs or norm_reward:
            raise ValueError("norm_obs/norm_reward are not supported for multi-agent envs")
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs} must be >= 1")
        self.env_kwargs = dict(env_kwargs or {})
        self.envs = [make_parallel_env(env_id, **self.env_kwargs) for _ in range(num_envs)]
        env = self.envs[0]
        self.agents = list(env.possible_agents)
        obs_spaces = [env.observation_space(a) for a in self.agents]
        act_spaces = [env.action_space(a) for a in self.agents]
        if any(s != obs_spaces[0] for s in obs_spaces) or any(
                s != act_spaces[0] for s in act_spaces):
            raise ValueError(f"{env_id}: agents with different spaces are not supported")
        n = len(self.agents)
        o, a = obs_spaces[0], act_spaces[0]
        self.single_observation_space = spaces.Box(
            np.broadcast_to(o.low, (n, *o.shape)), np.broadcast_to(o.high, (n, *o.shape)),
            dtype=np.float32)
        if isinstance(a, spaces.Discrete):
            self.single_action_space: spaces.Space = spaces.MultiDiscrete([int(a.n)] * n)
        else:
            self.single_action_space = spaces.Box(
                np.broadcast_to(a.low, (n, *a.shape)), np.broadcast_to(a.high, (n, *a.shape)),
                dtype=np.float32)
        self.env_id, self.num_envs, self.vectorization = env_id, num_envs, "sync"
        self.gamma, self.goal_env, self.max_episode_steps = gamma, None, None
        self._ep_return = np.zeros(num_envs)
        self._ep_length = np.zeros(num_envs, np.int64)
        self.episodes: list[tuple[float, int, bool | None]] = []

    def _stack(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.stack([obs[a] for a in self.agents]).astype(np.float32)

    def reset(self, seed: int) -> np.ndarray:
        """Reset every env from seeds derived from ``seed`` and forget running episodes."""
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        return np.stack([self._stack(env.reset(seed=derive_seed(seed, i))[0])
                         for i, env in enumerate(self.envs)])

    def step(self, actions: np.ndarray, train: bool = True
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Step every env; finished ones restart at once (their last observation in
        ``final_obs``). Returns ``(obs, rewards per agent, terminated, truncated, final)``."""
        failpoint("collect")
        m, n = self.num_envs, len(self.agents)
        obs = np.zeros((m, *self.single_observation_space.shape), np.float32)
        rewards = np.zeros((m, n), np.float32)
        term, trunc = np.zeros(m, bool), np.zeros(m, bool)
        final = None
        for i, env in enumerate(self.envs):
            act = {a: actions[i][j] for j, a in enumerate(self.agents)}
            o, r, te, tr, _ = env.step(act)
            obs[i] = self._stack(o)
            rewards[i] = [r[a] for a in self.agents]
            term[i], trunc[i] = any(te.values()), any(tr.values())
            if term[i] or trunc[i] or not env.agents:
                trunc[i] |= not term[i]
                final = obs.copy() if final is None else final
                final[i] = obs[i]
                obs[i] = self._stack(env.reset()[0])
        self._ep_return += rewards.mean(1)
        self._ep_length += 1
        for i in np.flatnonzero(term | trunc):
            self.episodes.append((float(self._ep_return[i]), int(self._ep_length[i]), None))
            self._ep_return[i], self._ep_length[i] = 0.0, 0
        if final is not None:
            final[~(term | trunc)] = obs[~(term | trunc)]
        return obs, rewards, term, trunc, final

    def normalize_obs(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        return obs

    def pop_episodes(self) -> list[tuple[float, int, bool | None]]:
        episodes, self.episodes = self.episodes, []
        return episodes

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
