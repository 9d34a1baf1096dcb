"""The dataloader of a task: vectorized gymnasium environments.

``VecLoader`` wraps a gymnasium vector env (``SyncVectorEnv``, ``AsyncVectorEnv`` or a native
numpy-vectorized env such as CartPole's) behind one interface with *same-step* autoreset:
``step`` returns the first observation of the next episode for a finished env and, apart, the
real final observation needed to bootstrap a truncated episode. It seeds every env and space,
keeps episode statistics, and optionally normalises observations and rewards with running
statistics that are part of the task state.

Checkpoints are taken at epoch boundaries only. ``env_state`` says what crosses them:
``"snapshot"`` keeps the running episodes, the envs' exact state (``rltasks.envs.snapshot``)
and the episode statistics being in the loader's state; ``"reset"`` (envs that cannot be
captured) leaves the task to start every epoch with ``reset`` from a seed derived from
``(seed, epoch)``, so the state never needs the envs' insides. Either way an interrupted run
follows the same path as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from rltasks.envs import snapshot
from rltasks.envs.flat import flat_observations
from rltasks.envs.goal import is_goal_space
from rltasks.envs.images import is_image_space
from rltasks.envs.native import NativeSameStep
from rltasks.envs.pool import EnvPoolSameStep
from rltasks.envs.registry import atari_settings, check_env_id, fire_action, is_ale_id, make_env
from rltasks.failpoints import failpoint

VECTORIZATIONS = ("auto", "sync", "async", "native", "ale", "envpool")


def derive_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed derived from ``seed`` and integer keys (epoch, env index, purpose)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def as_float32(obs: Any) -> Any:
    """``obs`` as float32 arrays (a goal env's dict key by key); float32 arrays as they are."""
    if isinstance(obs, dict):
        return {k: np.asarray(v, np.float32) for k, v in obs.items()}
    return np.asarray(obs, np.float32)


class RunningMeanStd:
    """Running mean and variance (parallel algorithm of Chan et al.), as in SB3's VecNormalize."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, batch: np.ndarray) -> None:
        b_mean, b_var, b_count = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": float(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], np.float64).copy()
        self.var = np.asarray(state["var"], np.float64).copy()
        self.count = float(state["count"])


class _GymSameStep:
    """Same-step autoreset over a gymnasium Sync/AsyncVectorEnv."""

    def __init__(self, env: VectorEnv) -> None:
        self.env = env
        self.num_envs = env.num_envs

    def reset(self, seed: int) -> np.ndarray:
        seeds = [derive_seed(seed, i) for i in range(self.num_envs)]
        obs, _ = self.env.reset(seed=seeds)
        for i, space in enumerate(getattr(self.env, "envs", [])):
            space.action_space.seed(seeds[i])
            space.observation_space.seed(seeds[i])
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        obs, rew, term, trunc, info = self.env.step(actions)
        final = success = None
        if "_final_obs" in info:
            mask = info["_final_obs"]
            if isinstance(obs, dict):  # goal envs: a dict of batched arrays
                final = {k: v.copy() for k, v in obs.items()}
                for key, value in final.items():
                    value[mask] = np.stack([o[key] for o in info["final_obs"][mask]])
            else:
                final = obs.copy()
                final[mask] = np.stack(info["final_obs"][mask])
            final_info = info.get("final_info", {})
            if "is_success" in final_info:
                success = np.asarray(final_info["is_success"], bool)
        return obs, rew, term, trunc, final, success

    def close(self) -> None:
        try:
            self.env.close()
        except (EOFError, OSError):  # an AsyncVectorEnv worker died (SIGTERM to the process
            # group): gymnasium waits for its answer and raises; end the others instead
            for process in getattr(self.env, "processes", ()):
                if process.is_alive():
                    process.terminate()
                process.join(timeout=10)
            self.env.closed = True


class _AleSameStep:
    """Same-step autoreset over ale-py's C++ ``AtariVectorEnv``, which applies the standard
    Atari preprocessing (Machado et al. 2018; SB3's ``AtariWrapper``): up to 30 no-op starts,
    frame-skip 4 with max-pooling of the last two frames, FIRE on reset where the game needs
    it, 84x84 grayscale, 4 stacked frames, sticky actions as the env id says (0.25 for
    ``ALE/...-v5``, none for ``...NoFrameskip-v4``). Its episodes are whole games with true
    rewards; ``life_lost`` marks the envs that lost a life in the last step, for the
    training-only parts (``VecLoader.step``: terminal on life loss, clipped rewards)."""

    def __init__(self, env: VectorEnv) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.lives = np.zeros(self.num_envs, np.int64)
        self.life_lost = np.zeros(self.num_envs, bool)

    def reset(self, seed: int) -> np.ndarray:
        # ALE takes int32 seeds
        seeds = np.array([derive_seed(seed, i) % 2**31 for i in range(self.num_envs)], np.int64)
        obs, info = self.env.reset(seed=seeds)
        self.lives = np.asarray(info["lives"], np.int64).copy()
        self.life_lost[:] = False
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        obs, rew, term, trunc, info = self.env.step(np.asarray(actions, np.int64))
        done = term | trunc
        lives = np.asarray(info["lives"], np.int64)
        self.life_lost = (lives < self.lives) & ~done
        self.lives = lives.copy()
        final = None
        if done.any():
            final = obs.copy()
            final[done] = np.asarray(info["final_obs"])[done]
        return obs, rew, term, trunc, final, None

    def close(self) -> None:
        self.env.close()


def in_process_vectorization(vectorization: str) -> str:
    """``vectorization`` with its envs in this process: ``async``'s worker processes become
    ``sync``; every other one (Atari's and EnvPool's included) is kept, since its envs are
    what the task's networks were shaped for."""
    return "sync" if vectorization == "async" else vectorization


def _is_ale(spec: gym.envs.registration.EnvSpec) -> bool:
    return is_ale_id(spec.id)


def _ale_vector_env(spec: gym.envs.registration.EnvSpec, num_envs: int,
                    env_kwargs: dict[str, Any]) -> VectorEnv:
    """ale-py's ``AtariVectorEnv`` for an ALE id, with the preprocessing of ``_AleSameStep``;
    ``env_kwargs`` go to its constructor (``stack_num``, ``noop_max``...)."""
    from ale_py.vector_env import AtariVectorEnv

    kwargs = {**atari_settings(spec), "frameskip": 4, "reward_clipping": False,
              "episodic_life": False, "autoreset_mode": AutoresetMode.SAME_STEP,
              "num_threads": 1, **env_kwargs}
    try:
        return AtariVectorEnv(spec.kwargs["game"], num_envs, **kwargs)
    except TypeError as err:
        raise ValueError(f"{spec.id} does not take these env kwargs {env_kwargs}: "
                         f"{err}") from None


def _has_native(spec: gym.envs.registration.EnvSpec) -> bool:
    return spec.vector_entry_point == (
        "gymnasium.envs.classic_control.cartpole:CartPoleVectorEnv")


class VecLoader:
    """Vectorized envs for one task: seeding, same-step autoreset, stats and normalisation
    (a ``rltasks.envs.protocol.Loader``).

    ``env_state``: ``"snapshot"`` puts the envs' exact state in ``state_dict`` (a one-line
    ``ValueError`` when they cannot be captured), ``"reset"`` leaves it out, ``"auto"``
    snapshots when it can. ``self.env_state`` is the mode in force and
    ``self.env_state_reason`` why it is ``"reset"`` (None in snapshot mode)."""

    multi_agent = False

    def __init__(self, env_id: str, num_envs: int = 8, vectorization: str = "auto",
                 norm_obs: bool = False, norm_reward: bool = False, gamma: float = 0.99,
                 env_kwargs: dict[str, Any] | None = None, env_state: str = "auto") -> None:
        spec = check_env_id(env_id)
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs} must be >= 1")
        if vectorization not in VECTORIZATIONS:
            raise ValueError(f"vectorization={vectorization!r} is not one of {VECTORIZATIONS}")
        if env_state not in snapshot.ENV_STATES:
            raise ValueError(f"env_state={env_state!r} is not one of {snapshot.ENV_STATES}")
        native = _has_native(spec) and not env_kwargs
        if vectorization == "native" and not native:
            raise ValueError(f"vectorization='native': gymnasium has no numpy-vectorized "
                             f"{env_id}; use 'sync' or 'async'")
        if vectorization == "ale" and not _is_ale(spec):
            raise ValueError(f"vectorization='ale' is ale-py's Atari vector env; {env_id} is "
                             f"not an ALE id (ALE/Pong-v5...): use 'sync' or 'async'")
        if vectorization == "auto":
            vectorization = "ale" if _is_ale(spec) else "native" if native else "sync"
        self.env_id, self.num_envs, self.vectorization = env_id, num_envs, vectorization
        # Atari's preprocessed envs (ale-py's or EnvPool's): training ends an episode on a
        # lost life and clips rewards; gymnasium's own raw env ('sync') is left as it is
        self.atari = _is_ale(spec) and vectorization in ("ale", "envpool")
        self.env_kwargs = dict(env_kwargs or {})
        # a lost life is followed by FIRE where the game has it (it launches Breakout's next
        # ball), in training and evaluation alike, as SB3's and CleanRL's wrappers do
        self._fire = fire_action(spec) if self.atari else None
        self._fire_next = np.zeros(num_envs, bool)
        venv = self._vector_env(spec)
        try:
            self.env_state, self.env_state_reason = snapshot.resolve(
                env_id, env_state, snapshot.why_not(self._venv.env))
        except ValueError:
            self._venv.close()
            raise
        self.single_observation_space = venv.single_observation_space
        self.single_action_space = venv.single_action_space
        self.max_episode_steps = spec.max_episode_steps
        # goal envs: one env instance lends its compute_reward to hindsight relabelling
        self.goal_env = (make_env(spec, **self.env_kwargs).unwrapped
                         if is_goal_space(self.single_observation_space) else None)
        if norm_obs and not isinstance(self.single_observation_space, gym.spaces.Box):
            raise ValueError(f"norm_obs needs Box observations; {env_id} has "
                             f"{type(self.single_observation_space).__name__} observations")
        self.images = is_image_space(self.single_observation_space)
        if norm_obs and self.images:
            raise ValueError(f"norm_obs is for vector observations; {env_id}'s are uint8 "
                             f"images, which the CNN bodies scale to [0, 1]: set norm_obs=False")
        self.obs_rms = RunningMeanStd(self.single_observation_space.shape) if norm_obs else None
        self.ret_rms = RunningMeanStd(()) if norm_reward else None
        self.gamma = gamma
        self._returns = np.zeros(num_envs)  # discounted, for reward normalisation
        self._ep_return = np.zeros(num_envs)
        self._ep_length = np.zeros(num_envs, np.int64)
        # (return, length, success or None) of episodes finished since the last pop_episodes()
        self.episodes: list[tuple[float, int, bool | None]] = []

    def _vector_env(self, spec: gym.envs.registration.EnvSpec) -> VectorEnv | EnvPoolSameStep:
        """The vector env behind the loader (its spaces), wrapped for same-step autoreset."""
        if self.vectorization == "native":
            venv = gym.make_vec(spec.id, num_envs=self.num_envs,
                                vectorization_mode="vector_entry_point")
            self._venv: NativeSameStep | _GymSameStep | _AleSameStep | EnvPoolSameStep = (
                NativeSameStep(venv))
            return venv
        if self.vectorization == "envpool":
            self._venv = EnvPoolSameStep(spec, self.num_envs, self.env_kwargs, lambda seed: [
                derive_seed(seed, i) % 2**31 for i in range(self.num_envs)])
            return self._venv
        if self.vectorization == "ale":
            venv = _ale_vector_env(spec, self.num_envs, self.env_kwargs)
            self._venv = _AleSameStep(venv)
            return venv
        kwargs = self.env_kwargs
        fns: list[Callable[[], gym.Env]] = [  # discrete or dict observations flat, as SB3 sees them
            lambda: flat_observations(make_env(spec, **kwargs)) for _ in range(self.num_envs)]
        cls = AsyncVectorEnv if self.vectorization == "async" else SyncVectorEnv
        try:
            venv = cls(fns, autoreset_mode=AutoresetMode.SAME_STEP)
        except TypeError as err:  # an env kwarg its constructor does not take
            raise ValueError(f"{spec.id} does not take these env kwargs {kwargs}: "
                             f"{err}") from None
        self._venv = _GymSameStep(venv)
        return venv

    # -- the data path ---------------------------------------------------------------------
    def reset(self, seed: int) -> np.ndarray:
        """Reset every env from ``seed`` (derived per env) and forget running episodes."""
        obs = self._venv.reset(seed)
        self._fire_next[:] = False
        self._returns[:] = 0.0
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        return self.normalize_obs(obs, update=True)

    def step(self, actions: np.ndarray, train: bool = True
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Step every env.

        Returns ``(obs, reward, terminated, truncated, final_obs)``. For a finished env,
        ``obs`` is the first observation of its next episode and ``final_obs`` (``None`` when
        no env finished) holds the last observation of the finished one. Rewards and
        observations are normalised when asked; statistics update only when ``train``. On
        Atari (``vectorization='ale'`` or ``'envpool'``), when ``train``, a lost life is
        terminal and rewards are clipped to their sign; the episode statistics are always
        the true game's. An Atari env that lost a life in the last step takes FIRE in this
        one, whatever its action (when the game has FIRE): the first step of each new life
        launches it, in training and evaluation.
        """
        failpoint("collect")
        if self._fire is not None and self._fire_next.any():
            actions = np.where(self._fire_next, self._fire, actions)
        obs, rew, term, trunc, final, success = self._venv.step(actions)
        if self._fire is not None:
            self._fire_next = self._venv.life_lost.copy()
        rew = np.asarray(rew, np.float64)
        self._ep_return += rew
        self._ep_length += 1
        done = term | trunc
        if done.any():
            for i in np.flatnonzero(done):
                self.episodes.append((float(self._ep_return[i]), int(self._ep_length[i]),
                                      None if success is None else bool(success[i])))
            self._ep_return[done] = 0.0
            self._ep_length[done] = 0
        if train and self.atari:  # the Atari preprocessing's training parts
            term, rew = term | self._venv.life_lost, np.sign(rew)
        if self.ret_rms is not None:
            self._returns = self._returns * self.gamma + rew
            if train:
                self.ret_rms.update(self._returns)
            rew = np.clip(rew / np.sqrt(self.ret_rms.var + 1e-8), -10.0, 10.0)
            self._returns[done] = 0.0
        obs = self.normalize_obs(obs, update=train)
        if final is not None:
            final = self.normalize_obs(final, update=False)
        return obs, rew.astype(np.float32), term, trunc, final

    def normalize_obs(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        """Observations as the networks see them: float32, normalised with the running
        statistics when ``norm_obs``. Every observation the loader hands out passes here, so
        this is the one place where MuJoCo's float64 or an integer Box becomes float32.
        Images stay uint8 (a quarter of the bytes in rollouts and replay)."""
        if self.images:
            return np.asarray(obs)
        if self.obs_rms is None:
            return as_float32(obs)
        if update:
            self.obs_rms.update(obs)
        norm = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        return np.clip(norm, -10.0, 10.0).astype(np.float32)

    def pop_episodes(self) -> list[tuple[float, int, bool | None]]:
        """Return and clear the (return, length, success) of episodes finished since the last
        call; success is None for envs that do not report ``is_success``."""
        episodes, self.episodes = self.episodes, []
        return episodes

    def close(self) -> None:
        self._venv.close()

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Normalisation statistics; in snapshot mode also the running episodes: every
        sub-env's snapshot (``envs``), the episode statistics and the discounted returns of
        reward normalisation, and the episodes not yet popped."""
        state: dict[str, Any] = {
            "obs_rms": None if self.obs_rms is None else self.obs_rms.state_dict(),
            "ret_rms": None if self.ret_rms is None else self.ret_rms.state_dict(),
        }
        if self.env_state == "snapshot":
            state.update(envs=snapshot.capture(self._venv.env),
                         ep_return=self._ep_return.copy(), ep_length=self._ep_length.copy(),
                         returns=self._returns.copy(),
                         episodes=[list(episode) for episode in self.episodes])
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``. In reset mode a snapshot's running episodes are ignored
        (the next epoch resets the envs); in snapshot mode they must be there."""
        for name in ("obs_rms", "ret_rms"):
            rms = getattr(self, name)
            if (rms is None) != (state[name] is None):
                raise ValueError(f"checkpoint {name} does not match this loader's normalisation")
            if rms is not None:
                rms.load_state_dict(state[name])
        if self.env_state == "snapshot":
            self._load_episodes(state)

    def _load_episodes(self, state: dict[str, Any]) -> None:
        if "envs" not in state:
            raise ValueError("the checkpoint holds no env snapshot (it was written with "
                             "env_state='reset'); continue it with env_state='reset'")
        stats = {}
        for key, dtype in (("ep_return", np.float64), ("ep_length", np.int64),
                           ("returns", np.float64)):
            stats[key] = np.array(state[key], dtype)
            if stats[key].shape != (self.num_envs,):
                raise ValueError(f"the checkpoint's {key} is for {stats[key].shape} envs, "
                                 f"not {self.num_envs}")
        snapshot.restore(self._venv.env, state["envs"])
        self._ep_return, self._ep_length, self._returns = (
            stats["ep_return"], stats["ep_length"], stats["returns"])
        self.episodes = [(float(r), int(n), None if s is None else bool(s))
                         for r, n, s in state["episodes"]]


#: the most steps an evaluation episode runs in an env without a time limit of its own
#: (CliffWalking-v1, a user's env): a deterministic policy can loop there for ever
EVAL_STEP_CAP = 100_000


def evaluate_policy(loader: Any, act: Callable[[np.ndarray], np.ndarray], seed: int,
                    normalize: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    """Run one episode in each env of ``loader`` (which it closes), from derived seeds.

    ``act`` maps a batch of (normalised) observations to actions; it should be deterministic
    and must not touch the training RNG, so evaluating never changes the task state. A
    multi-agent loader's rewards (one per agent) count as their mean, the team reward. In an
    env without a time limit an episode ends after ``EVAL_STEP_CAP`` steps, counted in the
    result's ``episodes_capped``.
    """
    episodes = loader.num_envs
    cap = getattr(loader, "max_episode_steps", None) or EVAL_STEP_CAP
    try:
        obs = normalize(loader.reset(seed))
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes, np.int64)
        running = np.ones(episodes, bool)
        successes: list[bool] = []
        while running.any() and lengths.max() < cap:
            obs, rew, term, trunc, _ = loader.step(act(obs), train=False)
            obs = normalize(obs)
            rew = rew.reshape(episodes, -1).mean(1)
            returns[running] += rew[running]
            lengths[running] += 1
            done = term | trunc
            for i, (_, _, success) in zip(np.flatnonzero(done), loader.pop_episodes(),
                                          strict=True):
                if running[i] and success is not None:  # each env's first episode only
                    successes.append(success)
            running &= ~done
    finally:
        loader.close()
    result = {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
              "length_mean": float(lengths.mean()), "episodes": int(episodes)}
    if successes:
        result["success_rate"] = float(np.mean(successes))
    if running.any():
        result["episodes_capped"] = int(running.sum())
    return result
