"""MADDPG (Lowe et al. 2017): decentralised actors, centralised critics, for several agents.

Each agent's actor sees only its own observation; each agent's critic sees every agent's
observation and action, which keeps its target stationary while the others learn. The
shared core (``offpolicy.py``) runs the replay loop and, as for DDPG, rescales [-1, 1]
actions to the Box, draws the random actions before learning starts and keeps the action
noise; ``ParallelLoader`` turns a PettingZoo parallel env (``mpe2/simple_spread_v3``) into
stacked ``(agents, ...)`` arrays. Continuous actions explore with action noise; discrete ones
(``mpe2/...-discrete``) are sampled, and differentiated through, with the straight-through
Gumbel-softmax.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rltasks.envs.multi import ParallelLoader
from rltasks.explore import NOISE_HPARAMS, NOISES
from rltasks.hparams import HP, choices
from rltasks.nets import mlp, polyak_update
from rltasks.optim import make_optimizer
from rltasks.tasks.offpolicy import OFFPOLICY_HPARAMS, NoisyActorTask, with_default


class MADDPG(NoisyActorTask):
    name = "maddpg"
    LOADER = ParallelLoader
    DEFAULT_ENV = "mpe2/simple_spread_v3"
    ACTION_SPACES = (spaces.Box, spaces.MultiDiscrete)
    OBS_NDIM = 2  # agents x features
    # the MADDPG paper's settings for the particle envs, with 4 updates every 100 steps
    HPARAMS = {
        **OFFPOLICY_HPARAMS,
        "batch_size": with_default("batch_size", 1024),
        "learning_starts": with_default("learning_starts", 1000),
        "train_freq": with_default("train_freq", 100),
        "gradient_steps": with_default("gradient_steps", 4),
        "gamma": with_default("gamma", 0.95),
        "hidden": with_default("hidden", 64),
        "tau": HP(0.01, "loguniform(0.001, 0.1)", low=0.0, high=1.0, low_open=True,
                  help="Polyak coefficient of the target networks"),
        "noise": HP("gaussian", choices(*NOISES), kind=str, choices=tuple(NOISES), shape=True,
                    help="action noise (continuous actions)"),
        **NOISE_HPARAMS,
        "gumbel_temperature": HP(1.0, "loguniform(0.1, 10.0)", low=0.0, low_open=True,
                                 help="Gumbel-softmax temperature (discrete actions)"),
        "max_grad_norm": HP(0.5, "uniform(0.1, 10.0)", low=0.0, low_open=True,
                            help="global gradient-norm clip"),
    }
    DEFAULTS = {"lr": 1e-2}
    LOSSES = ("critic_loss", "actor_loss")
    # the paper's neighbourhood: lr and tau around 1e-2, batch 1024, 64-unit networks
    CURATED = {"lr": "loguniform(1e-3, 3e-2)", "tau": None, "gamma": choices(0.9, 0.95, 0.99),
               "batch_size": choices(256, 512, 1024), "hidden": choices(64, 128),
               "noise_sigma": "uniform(0.1, 0.5)", "gumbel_temperature": None}

    def applies(self, name: str, values: dict[str, Any]) -> bool:
        """Discrete actions explore by Gumbel-softmax sampling, continuous ones by noise."""
        discrete = isinstance(self.action_space, spaces.MultiDiscrete)
        if name == "gumbel_temperature":
            return discrete
        if name in NOISE_HPARAMS and discrete:
            return False
        return super().applies(name, values)

    def setup(self) -> None:
        hp = self.hp
        self.n_agents, self.agent_obs = self.observation_space.shape
        self.discrete = isinstance(self.action_space, spaces.MultiDiscrete)
        self.act_dim = int(self.action_space.nvec[0] if self.discrete
                           else np.prod(self.action_space.shape[1:]))
        n, hidden = self.n_agents, [hp["hidden"]] * hp["layers"]
        self.actors = nn.ModuleList(
            mlp(self.agent_obs, hidden, self.act_dim, hp["activation"],
                orthogonal=hp["ortho_init"]) for _ in range(n))
        self.critics = nn.ModuleList(
            mlp(n * (self.agent_obs + self.act_dim), hidden, 1, hp["activation"],
                orthogonal=hp["ortho_init"])
            for _ in range(n))
        self.actors_target = copy.deepcopy(self.actors).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.modules = {"actors": self.actors, "critics": self.critics,
                        "actors_target": self.actors_target,
                        "critics_target": self.critics_target}
        self.optimizers = {}
        for i in range(n):
            self.optimizers[f"actor_{i}"] = make_optimizer(list(self.actors[i].parameters()), hp)
            self.optimizers[f"critic_{i}"] = make_optimizer(list(self.critics[i].parameters()),
                                                            hp)
        self.buffer = self.make_buffer((n, self.act_dim), np.float32, (n, self.agent_obs),
                                       reward_shape=(n,))
        self.build_exploration(n * self.act_dim)

    # -- acting -------------------------------------------------------------------------------
    def _policies(self, actors: nn.ModuleList, obs: torch.Tensor) -> torch.Tensor:
        """Every agent's actor output (logits or pre-tanh), shape (batch, agents, act_dim)."""
        return torch.stack([actor(obs[:, i]) for i, actor in enumerate(actors)], 1)

    def _gumbel(self, logits: torch.Tensor) -> torch.Tensor:
        """Straight-through Gumbel-softmax: a one-hot sample forward, soft gradients back."""
        u = torch.rand(logits.shape, generator=self.gen).clamp_(1e-20, 1.0).to(logits.device)
        soft = torch.softmax((logits - torch.log(-torch.log(u))) / self.hp["gumbel_temperature"],
                             -1)
        hard = nn.functional.one_hot(soft.argmax(-1), self.act_dim).to(soft.dtype)
        return hard + soft - soft.detach()

    def _actions(self, out: torch.Tensor) -> torch.Tensor:
        """Actions as the critics see them: one-hot samples, or tanh in [-1, 1]."""
        return self._gumbel(out) if self.discrete else torch.tanh(out)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Discrete: the one-hot actions' indices; continuous: rescaled to the Box."""
        return actions.argmax(-1) if self.discrete else super().to_env(actions)

    def random_actions(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.discrete:
            return super().random_actions()
        idx = torch.randint(self.act_dim, (self.num_envs, self.n_agents), generator=self.gen)
        a = nn.functional.one_hot(idx, self.act_dim).float().numpy()
        return a, self.to_env(a)

    @torch.no_grad()
    def explore(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._policies(self.actors, self.tensor(obs))
        if self.discrete:
            a = self._gumbel(out)
        else:
            noise = self.noise.sample(self.env_steps, self.gen).view(out.shape)
            a = (torch.tanh(out) + noise).clamp(-1.0, 1.0)
        a = a.cpu().numpy()
        return a, self.to_env(a)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        out = self._policies(self.actors, self.tensor(obs, dtype=torch.float32))
        if self.discrete:
            return out.argmax(-1).cpu().numpy()
        return self.to_env(torch.tanh(out).cpu().numpy())

    def policy_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """``act`` in torch ops, for export: a batch of (agents, obs) observations."""
        out = self._policies(self.actors, obs)
        return out.argmax(-1) if self.discrete else self.to_env_tensor(torch.tanh(out))

    # -- learning -----------------------------------------------------------------------------
    def train_step(self) -> dict[str, torch.Tensor]:
        hp = self.hp
        b = self.buffer.sample(hp["batch_size"], self.np_rng)
        obs, actions, batch = b["obs"], b["actions"], len(b["obs"])
        flat_obs = obs.reshape(batch, -1)
        with torch.no_grad():
            next_actions = self._actions(self._policies(self.actors_target, b["next_obs"]))
            next_in = torch.cat([b["next_obs"].reshape(batch, -1),
                                 next_actions.reshape(batch, -1)], -1)
        critic_losses, actor_losses = [], []
        for i in range(self.n_agents):
            with torch.no_grad():
                target = b["returns"][:, i] + b["discounts"] * (
                    self.critics_target[i](next_in).squeeze(-1))
            q = self.critics[i](torch.cat([flat_obs, actions.reshape(batch, -1)], -1))
            critic_loss = ((q.squeeze(-1) - target) ** 2).mean()
            self.optimizer_step(f"critic_{i}", critic_loss, clip=self.critics[i].parameters())
            out = self.actors[i](obs[:, i])
            mine = actions.clone()
            mine[:, i] = self._actions(out)
            q_pi = self.critics[i](torch.cat([flat_obs, mine.reshape(batch, -1)], -1))
            actor_loss = -q_pi.mean() + 1e-3 * (out ** 2).mean()  # keep pre-activations small
            self.optimizer_step(f"actor_{i}", actor_loss, clip=self.actors[i].parameters())
            critic_losses.append(critic_loss.detach())
            actor_losses.append(actor_loss.detach())
        polyak_update(self.actors, self.actors_target, hp["tau"])
        polyak_update(self.critics, self.critics_target, hp["tau"])
        return {"critic_loss": torch.stack(critic_losses).mean(),
                "actor_loss": torch.stack(actor_losses).mean()}
