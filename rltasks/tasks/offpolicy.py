"""What DQN, DDPG, TD3, SAC and MADDPG share: the off-policy loop and the noisy actors.

``OffPolicyTask`` runs the loop: act (uniformly at random until ``learning_starts``, then with
the task's exploration), store the transition in the replay buffer, and every ``train_freq``
env steps take ``gradient_steps`` updates (``-1``: one per ``subsample_steps`` env steps
collected since the last phase, the replay ratio rl-zoo3's samplers hunt); the epoch ends every
pending n-step window as a truncation. The loop hands every buffer the env's observations as
they are: ``make_buffer`` chooses uniform, prioritized, n-step or hindsight replay, and a
buffer flattens or relabels a goal env's observations itself. ``NoisyActorTask`` adds what the
actors of the DDPG family and MADDPG share: actions in [-1, 1] rescaled to the Box bounds,
uniform random actions before learning starts, action noise restarted at every episode's end
and kept in the state. ``ContinuousActorCritic`` adds, for Box actions, the actor and critics
with their target networks. An algorithm file holds only its networks' specifics and its
``train_step``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rltasks.buffers import HerReplayBuffer, PrioritizedReplayBuffer, ReplayBuffer, flat_obs
from rltasks.envs.goal import is_goal_space
from rltasks.explore import NOISE_HPARAMS, NOISES, make_noise
from rltasks.hparams import HP, ZOO_GAMMA, choices
from rltasks.nets import Critic, mlp
from rltasks.optim import make_optimizer, set_lr
from rltasks.task import Task

#: The replay loop's hyperparameters (a subclass may change the defaults).
OFFPOLICY_HPARAMS: dict[str, HP] = {
    "buffer_size": HP(100_000, choices(10_000, 50_000, 100_000, 1_000_000), kind=int, low=1,
                      high=10_000_000, shape=True, help="replay capacity (transitions)"),
    "batch_size": HP(256, choices(32, 64, 128, 256, 512), kind=int, low=1, high=65_536,
                     help="transitions per gradient step"),
    "learning_starts": HP(1000, choices(0, 100, 1000, 5000, 10000), kind=int, low=0,
                          high=10**9, help="env steps of random actions before training"),
    "train_freq": HP(1, choices(1, 4, 16, 64, 256), kind=int, low=1, high=10**6,
                     help="env steps between training phases"),
    "gradient_steps": HP(1, choices(1, 4, 16, 64, 128), kind=int, low=-1, high=10_000,
                         excluded=(0,), help="updates per training phase; -1: one per "
                         "subsample_steps env steps collected since the last (SB3's -1)"),
    "subsample_steps": HP(1, choices(1, 2, 4, 8), kind=int, low=1, high=10**6,
                          help="with gradient_steps=-1, env steps per update"),
    "gamma": HP(0.99, "uniform(0.9, 0.9999)", low=0.0, high=1.0, help="discount"),
    "hidden": HP(256, choices(64, 128, 256, 400), kind=int, low=1, high=4096, shape=True,
                  help="layer width"),
    "layers": HP(2, choices(1, 2, 3), kind=int, low=1, high=8, shape=True,
                 help="hidden layers"),
    "activation": HP("relu", choices("tanh", "relu"), kind=str, choices=("tanh", "relu"),
                     help="hidden activation"),
    "ortho_init": HP(True, choices(True, False), kind=bool,
                     help="orthogonal init of the MLPs; False keeps PyTorch's default init, "
                          "as SB3's and CleanRL's off-policy algorithms do"),
}


#: what every off-policy task's curated space hunts (rl-zoo3's sampler ranges; buffers no
#: larger than a hunt's trials use). The replay ratio only where the task's default
#: ``gradient_steps`` is -1 (DQN's): rl-zoo3 derives gradient_steps from train_freq, which
#: Orion 0.2.7 can sample only as train_freq and subsample_steps.
CURATED_OFFPOLICY: dict[str, str | None] = {
    "gamma": ZOO_GAMMA, "lr": None, "batch_size": choices(64, 128, 256, 512),
    "buffer_size": choices(10_000, 50_000, 100_000), "learning_starts": choices(0, 1000, 10_000),
}


def with_default(name: str, value: Any) -> HP:
    """The replay loop's hyperparameter ``name`` with another default (an algorithm's own)."""
    return dataclasses.replace(OFFPOLICY_HPARAMS[name], default=value)


class OffPolicyTask(Task):
    """The replay loop. Subclasses build ``self.buffer`` (``make_buffer``) in ``setup`` and
    define ``explore``, ``random_actions`` and ``train_step``."""

    DEFAULT_NUM_ENVS = 1
    #: names of the tensors ``train_step`` returns, averaged into the epoch metrics
    LOSSES: ClassVar[tuple[str, ...]] = ("loss",)

    def obs_dim(self) -> int:
        """Size of the flat network input (a goal env's observation and desired goal)."""
        space = self.observation_space
        if isinstance(space, spaces.Dict):
            return int(np.prod(space["observation"].shape) + np.prod(space["desired_goal"].shape))
        return int(np.prod(space.shape))

    def make_buffer(self, act_shape: tuple[int, ...], act_dtype: Any,
                    obs_shape: tuple[int, ...] | None = None,
                    reward_shape: tuple[int, ...] = (), obs_dtype: Any = np.float32,
                    frames: int | None = None) -> ReplayBuffer:
        """Hindsight replay with ``her``; else uniform or (``replay='prioritized'``)
        prioritized replay, n-step if asked. Observations are flat (``obs_dim``) float32
        unless ``obs_shape`` and ``obs_dtype`` say otherwise (DQN's uint8 frames, stored once
        each with ``frames``, the stack's depth); ``reward_shape`` is MADDPG's one reward per
        agent."""
        hp = self.hp
        if hp.get("her", False):
            if not is_goal_space(self.observation_space):
                raise ValueError(
                    f"her=True needs a goal-conditioned env (dict observations with "
                    f"observation, achieved_goal, desired_goal and compute_reward); "
                    f"{self.env_id} has {self.observation_space}; set her=False")
            space, goal_env = self.observation_space, self.loader.goal_env
            return HerReplayBuffer(
                hp["buffer_size"], int(np.prod(space["observation"].shape)),
                int(np.prod(space["desired_goal"].shape)), act_shape, act_dtype, self.num_envs,
                hp["gamma"], goal_env.compute_reward, self.np_rng, hp["her_strategy"],
                hp["her_k"], getattr(goal_env, "terminate_on_success", False),
                device=self.device)
        prioritized = hp.get("replay") == "prioritized"
        cls = PrioritizedReplayBuffer if prioritized else ReplayBuffer
        extra = {"alpha": hp["per_alpha"]} if prioritized else {}
        return cls(hp["buffer_size"], obs_shape or (self.obs_dim(),), act_shape, act_dtype,
                   self.num_envs, n_step=hp.get("n_step", 1), gamma=hp["gamma"],
                   reward_shape=reward_shape, obs_dtype=obs_dtype, device=self.device,
                   frames=frames, **extra)

    def applies(self, name: str, values: dict[str, Any]) -> bool:
        """``subsample_steps`` applies only with ``gradient_steps=-1``."""
        if name == "subsample_steps":
            return values["gradient_steps"] == -1
        return super().applies(name, values)

    def updates_due(self, before: int) -> int:
        """Gradient steps due after the env steps went from ``before`` to ``self.env_steps``:
        ``gradient_steps`` each time a multiple of ``train_freq`` is passed, or with -1, the
        env steps of the ``train_freq`` periods passed, over ``subsample_steps`` (at least 1)."""
        hp = self.hp
        if self.env_steps < hp["learning_starts"] or not len(self.buffer):
            return 0
        periods = self.env_steps // hp["train_freq"] - before // hp["train_freq"]
        if not periods:
            return 0
        if hp["gradient_steps"] > 0:
            return hp["gradient_steps"]
        return max(periods * hp["train_freq"] // hp["subsample_steps"], 1)

    def train_epoch(self) -> dict[str, float]:
        rows = StepLosses(self.LOSSES)
        for _ in range(self.begin_collect()):
            updates = self.env_step(*self.choose(self.obs))
            if updates:
                self.set_scheduled_lr()
                rows.extend(self.train_step() for _ in range(updates))
            self.after_env_step(self.env_steps - self.num_envs)
        return self.end_collect(rows)

    # -- the loop's parts (a population runs them member by member: rltasks.population) ----
    def begin_collect(self) -> int:
        """Start an epoch's collection; the vector env steps it takes."""
        if self.epoch_reset:  # the loader reset every env for this epoch: new episodes
            self.episode_ended(np.ones(self.num_envs, bool))
        return -(-self.epoch_steps() // self.num_envs)

    def choose(self, obs: np.ndarray, **explore: Any) -> tuple[np.ndarray, np.ndarray]:
        """(actions to store, actions for the env): uniformly random until
        ``learning_starts``, then the exploring policy's (``explore``'s keyword arguments:
        DQN's ``q_of``)."""
        if self.warming_up():
            return self.random_actions()
        return self.explore(obs, **explore)

    def warming_up(self) -> bool:
        """Whether the env steps so far are short of ``learning_starts`` (random actions)."""
        return self.env_steps < self.hp["learning_starts"]

    def env_step(self, stored: np.ndarray, env_actions: np.ndarray) -> int:
        """Step the envs from ``self.obs``, store the transitions, count the steps; the
        gradient steps now due."""
        obs = self.obs
        next_obs, reward, term, trunc, final = self.loader.step(env_actions)
        real_next = final if final is not None else next_obs
        self.buffer.add(obs, stored, reward, real_next, term, term | trunc)
        self.episode_ended(term | trunc)
        self.obs = next_obs
        before, self.env_steps = self.env_steps, self.env_steps + self.num_envs
        # hindsight replay stores an episode when it ends: nothing to sample before that
        return self.updates_due(before)

    def set_scheduled_lr(self) -> None:
        """Every optimizer's lr as its schedule says now."""
        lr = self.scheduled("lr", "lr_schedule")
        for opt in self.optimizers.values():
            set_lr(opt, lr)

    def end_collect(self, rows: StepLosses) -> dict[str, float]:
        """End the epoch's collection: the epoch's metrics from the updates' ``rows``."""
        # the epoch ends every n-step window as a truncation, bootstrapped from ``obs``; in
        # snapshot mode the episode runs on and its next transitions start new windows
        self.buffer.flush(self.obs)
        return {**rows.means(), "gradient_steps": len(rows), "buffer": len(self.buffer),
                "lr": self.scheduled("lr", "lr_schedule"), **self.exploration_metrics()}

    def random_actions(self) -> tuple[np.ndarray, np.ndarray]:
        """(actions to store, actions for the env) before ``learning_starts``."""
        raise NotImplementedError

    def explore(self, obs: np.ndarray, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        """(actions to store, actions for the env) of the exploring policy."""
        raise NotImplementedError

    def train_step(self) -> dict[str, torch.Tensor]:
        """One update on a sampled batch; returns detached losses named in ``LOSSES``."""
        raise NotImplementedError

    def episode_ended(self, done: np.ndarray) -> None:
        """Called after every env step with the envs whose episode just ended."""

    def after_env_step(self, before: int) -> None:
        """Called after every env step (``before`` is the step counter before it)."""

    def exploration_metrics(self) -> dict[str, float]:
        """Exploration statistics for the epoch's metrics (an epsilon, a noise scale)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])


class StepLosses:
    """The losses of an epoch's gradient steps (``train_step``'s rows), each name's values in
    one preallocated 1-D tensor, grown by doubling; a name's mean has the bits of
    ``torch.stack(values).mean()``.

    Why not a list of the rows: each row's 0-dim tensors, kept alive to the epoch's end,
    were small allocations left between every step's large transient ones (the batch's
    activations), and glibc's heap could not reuse or return the space between them: a
    process grew by about 130 KB a gradient step at batch 256 (a 5-member DQN population
    reached 5 GB in a 100k-step epoch), freed only when the epoch ended.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.count = self.capacity = 0
        self._values: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.count

    def append(self, row: dict[str, torch.Tensor]) -> None:
        """Copy one gradient step's losses (0-dim tensors named in ``names``) in."""
        if self.count == self.capacity:  # the first row (on its device) or a full one
            self.capacity = max(2 * self.capacity, 1024)
            grown = {key: torch.empty(self.capacity, dtype=row[key].dtype,
                                      device=row[key].device) for key in self.names}
            for key, values in self._values.items():
                grown[key][:self.count] = values
            self._values = grown
        for key in self.names:
            self._values[key][self.count] = row[key]
        self.count += 1

    def extend(self, rows: Iterable[dict[str, torch.Tensor]]) -> None:
        for row in rows:
            self.append(row)

    def means(self) -> dict[str, float]:
        """Each name's mean over the steps (0.0 when there were none)."""
        return {key: float(self._values[key][:self.count].mean()) if self.count else 0.0
                for key in self.names}


def crossed(before: int, step: int, every: int) -> bool:
    """Whether a counter passed a multiple of ``every`` going from ``before`` to +``step``."""
    return (before + step) // every > before // every


class NoisyActorTask(OffPolicyTask):
    """Actors whose actions lie in [-1, 1], explored with additive action noise (``noise``)
    and rescaled to the bounds of a Box for the env: what the DDPG family and MADDPG share.

    ``setup`` calls ``build_exploration`` with the number of noisy action components per env.
    The buffer stores the [-1, 1] actions; the noise restarts when an episode ends, and its
    state (Ornstein-Uhlenbeck's current value) is part of the task state.
    """

    def applies(self, name: str, values: dict[str, Any]) -> bool:
        """A noise parameter applies only to the noise in use (none for ``noise='none'``)."""
        if name in NOISE_HPARAMS:
            return name in NOISES[values["noise"]].HPARAMS
        return super().applies(name, values)

    def build_exploration(self, noise_size: int) -> None:
        """The rescaling of a Box action space and the noise over ``noise_size`` components."""
        if isinstance(self.action_space, spaces.Box):
            low, high = self.action_space.low, self.action_space.high
            self.act_center, self.act_scale = (high + low) / 2, (high - low) / 2
        self.noise = make_noise(self.hp, self.num_envs, noise_size, self.device)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Env actions of [-1, 1] actions: rescaled to the Box bounds."""
        return (self.act_center + self.act_scale * actions).astype(self.action_space.dtype)

    def to_env_tensor(self, actions: torch.Tensor) -> torch.Tensor:
        """``to_env`` in torch ops, for the exported policy."""
        center = torch.as_tensor(self.act_center, dtype=torch.float32, device=actions.device)
        scale = torch.as_tensor(self.act_scale, dtype=torch.float32, device=actions.device)
        return center + scale * actions

    def random_actions(self) -> tuple[np.ndarray, np.ndarray]:
        a = torch.rand((self.num_envs, *self.action_space.shape), generator=self.gen)
        a = a.mul_(2).sub_(1).numpy()
        return a, self.to_env(a)

    def episode_ended(self, done: np.ndarray) -> None:
        if done.any():
            self.noise.reset(torch.from_numpy(done))

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "noise": self.noise.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.noise.load_state_dict(state["noise"])


class ContinuousActorCritic(NoisyActorTask):
    """Actor, ``N_CRITICS`` critics and their target networks for Box actions (DDPG, TD3, SAC).

    The actor works in [-1, 1]; its output size is ``ACTOR_OUT`` times the action size.
    ``TARGET_ACTOR`` says whether the update needs a target actor (SAC's does not: its
    targets sample the current policy).
    """

    ACTION_SPACES = (spaces.Box,)
    OBSERVATION_SPACES = (spaces.Box, spaces.Dict)  # Dict: goal envs
    DEFAULT_ENV = "Pendulum-v1"
    N_CRITICS: ClassVar[int] = 1
    ACTOR_OUT: ClassVar[int] = 1
    TARGET_ACTOR: ClassVar[bool] = True
    HPARAMS = {
        **OFFPOLICY_HPARAMS,
        "tau": HP(0.005, "loguniform(0.001, 0.1)", low=0.0, high=1.0, low_open=True,
                  help="Polyak coefficient of the target networks"),
        "noise": HP("gaussian", choices(*NOISES), kind=str, choices=tuple(NOISES), shape=True,
                    help="action noise process"),
        **NOISE_HPARAMS,
        "her": HP(False, choices(True, False), kind=bool, shape=True,
                  help="hindsight experience replay (goal envs only)"),
        "her_strategy": HP("future", choices(*HerReplayBuffer.STRATEGIES), kind=str,
                           choices=HerReplayBuffer.STRATEGIES, help="which goals relabel"),
        "her_k": HP(4, choices(1, 2, 4, 8), kind=int, low=1, high=64,
                    help="relabelled copies per transition"),
    }
    DEFAULTS = {"lr": 1e-3}
    LOSSES = ("critic_loss", "actor_loss")
    CURATED = {**CURATED_OFFPOLICY, "tau": choices(0.001, 0.005, 0.01, 0.02, 0.05, 0.08),
               "hidden": choices(64, 256, 400), "noise_sigma": "uniform(0.1, 0.5)",
               "her_strategy": None, "her_k": None}

    def applies(self, name: str, values: dict[str, Any]) -> bool:
        """HER's parameters apply only with ``her`` on a goal env."""
        if name.startswith("her"):
            goal = is_goal_space(self.observation_space)
            return goal and (name == "her" or bool(values["her"]))
        return super().applies(name, values)

    def setup(self) -> None:
        hp = self.hp
        n_obs = self.obs_dim()
        self.act_dim = int(np.prod(self.action_space.shape))
        hidden = [hp["hidden"]] * hp["layers"]
        self.actor = self.build_actor(n_obs, hidden)
        self.critic = Critic(n_obs, self.act_dim, hidden, hp["activation"], self.N_CRITICS,
                             orthogonal=hp["ortho_init"])
        self.modules = {"actor": self.actor, "critic": self.critic}
        if self.TARGET_ACTOR:
            self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
            self.modules["actor_target"] = self.actor_target
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.modules["critic_target"] = self.critic_target
        self.optimizers = {"actor": make_optimizer(list(self.actor.parameters()), hp),
                           "critic": make_optimizer(list(self.critic.parameters()), hp)}
        self.buffer = self.make_buffer(self.action_space.shape, np.float32)
        self.build_exploration(self.act_dim)
        self.updates = 0  # gradient steps so far (TD3's policy delay counts them)

    def build_actor(self, n_obs: int, hidden: list[int]) -> nn.Module:
        """The actor: an MLP with ``ACTOR_OUT`` outputs per action dimension."""
        return mlp(n_obs, hidden, self.ACTOR_OUT * self.act_dim, self.hp["activation"],
                   orthogonal=self.hp["ortho_init"])

    def check_env(self) -> None:
        super().check_env()
        if isinstance(self.observation_space, spaces.Dict) and not is_goal_space(
                self.observation_space):
            raise ValueError(f"{self.name} takes dict observations only from goal envs "
                             f"(observation, achieved_goal, desired_goal); {self.env_id} has "
                             f"{sorted(self.observation_space.spaces)}")

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action in [-1, 1] (DDPG, TD3: tanh of the actor's output)."""
        return torch.tanh(self.actor(obs))

    @torch.no_grad()
    def explore(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.policy(self.tensor(flat_obs(obs)))
        a = a + self.noise.sample(self.env_steps, self.gen)
        a = a.clamp(-1.0, 1.0).cpu().numpy().reshape(self.num_envs, *self.action_space.shape)
        return a, self.to_env(a)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        a = self.policy(self.tensor(flat_obs(obs), dtype=torch.float32)).cpu().numpy()
        return self.to_env(a.reshape(len(a), *self.action_space.shape))

    def policy_actions(self, obs: torch.Tensor) -> torch.Tensor:
        return self.to_env_tensor(self.policy(obs))

    def exploration_metrics(self) -> dict[str, float]:
        return {"noise_sigma": self.noise.sigma(self.env_steps) if self.hp["noise"] != "none"
                else 0.0}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "updates": self.updates}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.updates = int(state["updates"])
