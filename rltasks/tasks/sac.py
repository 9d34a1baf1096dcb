"""SAC (Haarnoja et al. 2018): a squashed-Gaussian policy maximising reward plus entropy,
twin critics, and an entropy temperature tuned towards ``-dim(A)`` nats.

The shared core (``offpolicy.py``) runs the replay loop and owns the networks (the actor
outputs a mean and a log std per action dimension; there is no target actor: the targets
sample the current policy). This file holds the policy's sampling and the update: soft
targets from the smaller target critic, the actor's reparameterised loss, the temperature's
loss, and Polyak-averaged target critics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rltasks.buffers import flat_obs
from rltasks.hparams import HP
from rltasks.nets import polyak_update
from rltasks.optim import make_optimizer
from rltasks.tasks.offpolicy import ContinuousActorCritic

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class SAC(ContinuousActorCritic):
    name = "sac"
    N_CRITICS = 2
    ACTOR_OUT = 2  # mean and log std
    TARGET_ACTOR = False
    HPARAMS = {
        **ContinuousActorCritic.HPARAMS,
        "ent_coef_init": HP(1.0, "loguniform(0.01, 1.0)", low=0.0, low_open=True,
                            help="initial entropy temperature (tuned automatically)"),
    }
    DEFAULTS = {"lr": 1e-3, "noise": "none", "learning_starts": 100}
    # rl-zoo3's MuJoCo set (SB3's defaults with 10k random steps) and LunarLanderContinuous
    ENV_DEFAULTS = {
        **{env: {"lr": 3e-4, "learning_starts": 10_000, "buffer_size": 1_000_000}
           for env in ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5")},
        "LunarLanderContinuous-v3": {"lr": 7.3e-4, "buffer_size": 1_000_000, "tau": 0.01,
                                     "learning_starts": 10_000},
    }
    LOSSES = ("critic_loss", "actor_loss", "ent_coef")
    CURATED = {**ContinuousActorCritic.CURATED, "ent_coef_init": None}

    def setup(self) -> None:
        super().setup()
        self.log_alpha = nn.Parameter(torch.tensor([math.log(self.hp["ent_coef_init"])]))
        self.modules["log_alpha"] = nn.ParameterDict({"log_alpha": self.log_alpha})
        self.optimizers["alpha"] = make_optimizer([self.log_alpha], self.hp)
        self.target_entropy = -float(self.act_dim)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised tanh-Gaussian action and its log-probability."""
        mean, log_std = self.actor(obs).chunk(2, -1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.randn(mean.shape, generator=self.gen).to(mean.device)  # CPU generator
        pre = mean + log_std.exp() * noise
        action = torch.tanh(pre)
        logp = (-0.5 * ((pre - mean) / log_std.exp()) ** 2 - log_std
                - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - (2 * (math.log(2) - pre - nn.functional.softplus(-2 * pre))).sum(-1)
        return action, logp

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.actor(obs).chunk(2, -1)[0])

    @torch.no_grad()
    def explore(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.sample(self.tensor(flat_obs(obs)))[0]
        a = (a + self.noise.sample(self.env_steps, self.gen)).clamp(-1.0, 1.0)
        a = a.cpu().numpy().reshape(self.num_envs, *self.action_space.shape)
        return a, self.to_env(a)

    def train_step(self) -> dict[str, torch.Tensor]:
        hp = self.hp
        b = self.buffer.sample(hp["batch_size"], self.np_rng)
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_a, next_logp = self.sample(b["next_obs"])
            next_q = self.critic_target(b["next_obs"], next_a).min(0).values
            target = b["returns"] + b["discounts"] * (next_q - alpha * next_logp)
        critic_loss = 0.5 * ((self.critic(b["obs"], b["actions"]) - target) ** 2).mean(1).sum()
        self.optimizer_step("critic", critic_loss)
        action, logp = self.sample(b["obs"])
        actor_loss = (alpha * logp - self.critic(b["obs"], action).min(0).values).mean()
        self.optimizer_step("actor", actor_loss)
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.optimizer_step("alpha", alpha_loss)
        polyak_update(self.critic, self.critic_target, hp["tau"])
        self.updates += 1
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "ent_coef": alpha}
