"""SAC (Haarnoja et al. 2018): a squashed-Gaussian policy maximising reward plus entropy,
twin critics, and an entropy temperature tuned towards ``-dim(A)`` nats (or held fixed). With
``use_sde`` it explores with gSDE (Raffin et al. 2022), SB3's ``use_sde``: the noise is a
linear function of the actor's last features whose weights are drawn anew every
``sde_sample_freq`` env steps (-1: every ``train_freq``) and at every gradient step.

The shared core (``offpolicy.py``) runs the replay loop and owns the networks (the actor
outputs a mean and a log std per action dimension; there is no target actor: the targets
sample the current policy). This file holds the policy's sampling and the update: soft
targets from the smaller target critic, the actor's reparameterised loss, the temperature's
loss, and Polyak-averaged target critics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from rltasks.buffers import flat_obs
from rltasks.hparams import HP, choices
from rltasks.nets import SDEActor, polyak_update
from rltasks.optim import make_optimizer
from rltasks.tasks.offpolicy import ContinuousActorCritic, crossed

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class SAC(ContinuousActorCritic):
    name = "sac"
    N_CRITICS = 2
    ACTOR_OUT = 2  # mean and log std
    TARGET_ACTOR = False
    HPARAMS = {
        **ContinuousActorCritic.HPARAMS,
        "ent_coef_init": HP(1.0, "loguniform(0.01, 1.0)", low=0.0, low_open=True,
                            help="initial entropy temperature (the temperature itself "
                                 "with auto_ent_coef=False)"),
        "auto_ent_coef": HP(True, choices(True, False), kind=bool,
                            help="tune the temperature towards -dim(A) nats (SB3's 'auto'); "
                                 "False keeps ent_coef_init"),
        "use_sde": HP(False, choices(True, False), kind=bool, shape=True,
                      help="gSDE: state-dependent exploration noise (SB3's use_sde)"),
        "sde_sample_freq": HP(-1, choices(-1, 4, 8, 16, 64), kind=int, low=-1, high=10**9,
                              excluded=(0,), help="env steps between gSDE noise draws; -1 "
                                                  "draws once every train_freq"),
        "log_std_init": HP(-3.0, "uniform(-4.0, 0.0)", low=-20.0, high=2.0,
                           help="initial log std of gSDE's noise weights"),
    }
    DEFAULTS = {"lr": 1e-3, "noise": "none", "learning_starts": 100}
    # rl-zoo3's MuJoCo set (SB3's defaults with 10k random steps), LunarLanderContinuous and
    # MountainCarContinuous
    ENV_DEFAULTS = {
        **{env: {"lr": 3e-4, "learning_starts": 10_000, "buffer_size": 1_000_000}
           for env in ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5")},
        "LunarLanderContinuous-v3": {"lr": 7.3e-4, "buffer_size": 1_000_000, "tau": 0.01,
                                     "learning_starts": 10_000},
        # rl-zoo3's set: gSDE at a fixed temperature finds the hilltop (plain Gaussian
        # exploration learns to stand still); under SB3's init, which the set was tuned on
        # (docs/algorithms.md)
        "MountainCarContinuous-v0": {"lr": 3e-4, "buffer_size": 50_000, "batch_size": 512,
                                     "ent_coef_init": 0.1, "auto_ent_coef": False,
                                     "train_freq": 32, "gradient_steps": 32, "gamma": 0.9999,
                                     "tau": 0.01, "learning_starts": 0, "use_sde": True,
                                     "log_std_init": -3.67, "hidden": 64,
                                     "ortho_init": False},
    }
    LOSSES = ("critic_loss", "actor_loss", "ent_coef")
    CURATED = {**ContinuousActorCritic.CURATED, "ent_coef_init": None}

    def applies(self, name: str, values: dict[str, Any]) -> bool:
        """gSDE's parameters apply only with ``use_sde``."""
        if name in ("sde_sample_freq", "log_std_init"):
            return bool(values["use_sde"])
        return super().applies(name, values)

    def build_actor(self, n_obs: int, hidden: list[int]) -> nn.Module:
        if self.hp["use_sde"]:
            return SDEActor(n_obs, hidden, self.act_dim, self.hp["activation"],
                            self.hp["log_std_init"], self.hp["ortho_init"])
        return super().build_actor(n_obs, hidden)

    def setup(self) -> None:
        super().setup()
        self.log_alpha = nn.Parameter(torch.tensor([math.log(self.hp["ent_coef_init"])]),
                                      requires_grad=self.hp["auto_ent_coef"])
        self.modules["log_alpha"] = nn.ParameterDict({"log_alpha": self.log_alpha})
        self.optimizers["alpha"] = make_optimizer([self.log_alpha], self.hp)
        self.target_entropy = -float(self.act_dim)
        if self.hp["use_sde"]:  # one noise matrix per env, kept in the task state
            with torch.no_grad():
                self.sde_weights = self.actor.draw(self.gen, (self.num_envs,))

    def sample(self, obs: torch.Tensor, weights: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised tanh-Gaussian action and its log-probability (with gSDE, under
        the noise weights ``weights``)."""
        if self.hp["use_sde"]:
            pre, logp = self.actor.sample(obs, weights)
        else:
            mean, log_std = self.actor(obs).chunk(2, -1)
            log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
            noise = torch.randn(mean.shape, generator=self.gen).to(mean.device)  # CPU gen
            pre = mean + log_std.exp() * noise
            logp = (-0.5 * ((pre - mean) / log_std.exp()) ** 2 - log_std
                    - 0.5 * math.log(2 * math.pi)).sum(-1)
        action = torch.tanh(pre)
        logp = logp - (2 * (math.log(2) - pre - nn.functional.softplus(-2 * pre))).sum(-1)
        return action, logp

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        if self.hp["use_sde"]:
            return torch.tanh(self.actor(obs))
        return torch.tanh(self.actor(obs).chunk(2, -1)[0])

    @torch.no_grad()
    def explore(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weights = self.sde_weights if self.hp["use_sde"] else None
        a = self.sample(self.tensor(flat_obs(obs)), weights)[0]
        a = (a + self.noise.sample(self.env_steps, self.gen)).clamp(-1.0, 1.0)
        a = a.cpu().numpy().reshape(self.num_envs, *self.action_space.shape)
        return a, self.to_env(a)

    def after_env_step(self, before: int) -> None:
        """gSDE draws new noise weights every ``sde_sample_freq`` env steps (-1: every
        ``train_freq``, where SB3 draws them at the start of each collection)."""
        super().after_env_step(before)
        hp = self.hp
        if hp["use_sde"]:
            every = hp["train_freq"] if hp["sde_sample_freq"] == -1 else hp["sde_sample_freq"]
            if crossed(before, self.num_envs, every):
                with torch.no_grad():
                    self.sde_weights = self.actor.draw(self.gen, (self.num_envs,))

    def extra_state(self) -> dict[str, Any]:
        state = super().extra_state()
        return {**state, "sde_weights": self.sde_weights} if self.hp["use_sde"] else state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        if self.hp["use_sde"]:
            self.sde_weights = state["sde_weights"].to(self.device)

    def train_step(self) -> dict[str, torch.Tensor]:
        hp = self.hp
        b = self.buffer.sample(hp["batch_size"], self.np_rng)
        alpha = self.log_alpha.exp().detach()
        # gSDE: new weights every gradient step, as SB3 (log_std moved since the last draw)
        weights = self.actor.draw(self.gen) if hp["use_sde"] else None
        with torch.no_grad():
            next_a, next_logp = self.sample(b["next_obs"], weights)
            next_q = self.critic_target(b["next_obs"], next_a).min(0).values
            target = b["returns"] + b["discounts"] * (next_q - alpha * next_logp)
        critic_loss = 0.5 * ((self.critic(b["obs"], b["actions"]) - target) ** 2).mean(1).sum()
        self.optimizer_step("critic", critic_loss)
        action, logp = self.sample(b["obs"], weights)
        actor_loss = (alpha * logp - self.critic(b["obs"], action).min(0).values).mean()
        self.optimizer_step("actor", actor_loss)
        if hp["auto_ent_coef"]:
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            self.optimizer_step("alpha", alpha_loss)
        polyak_update(self.critic, self.critic_target, hp["tau"])
        self.updates += 1
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "ent_coef": alpha}
