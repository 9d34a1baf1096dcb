"""TD3 (Fujimoto et al. 2018): DDPG with twin critics, target policy smoothing and delayed
actor updates.

The shared core (``offpolicy.py``) runs the replay loop and owns the networks and the action
noise. This file holds the update: the target is the smaller of the target critics at the
target actor's action, smoothed with clipped Gaussian noise; every critic regresses on it,
and every ``policy_delay`` updates the actor follows the first critic and the targets move.
DDPG is this update with one critic, no smoothing and no delay (``ddpg.py``).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from rltasks.hparams import HP
from rltasks.nets import polyak_update
from rltasks.tasks.offpolicy import ContinuousActorCritic


class TD3(ContinuousActorCritic):
    name = "td3"
    N_CRITICS = 2
    #: add clipped Gaussian noise to the target action (target policy smoothing)
    TARGET_SMOOTHING: ClassVar[bool] = True
    #: critic updates per actor update; None: the ``policy_delay`` hyperparameter
    POLICY_DELAY: ClassVar[int | None] = None
    HPARAMS = {
        **ContinuousActorCritic.HPARAMS,
        "policy_delay": HP(2, "uniform(1, 4, discrete=True)", kind=int, low=1, high=1000,
                           help="critic updates per actor update"),
        "target_noise": HP(0.2, "uniform(0.0, 0.5)", low=0.0, help="target smoothing std"),
        "target_noise_clip": HP(0.5, "uniform(0.1, 1.0)", low=0.0,
                                help="target smoothing clip"),
    }
    DEFAULTS = {"lr": 1e-3, "gamma": 0.98}
    # rl-zoo3's MuJoCo set: 10k random steps, Gaussian noise 0.1, a 1M buffer (DDPG inherits)
    ENV_DEFAULTS = {env: {"gamma": 0.99, "learning_starts": 10_000, "noise": "gaussian",
                          "noise_sigma": 0.1, "buffer_size": 1_000_000}
                    for env in ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5")}
    LOSSES = ("critic_loss",)  # the actor's loss exists only every policy_delay steps

    def train_step(self) -> dict[str, torch.Tensor]:
        hp = self.hp
        b = self.buffer.sample(hp["batch_size"], self.np_rng)
        with torch.no_grad():
            next_a = torch.tanh(self.actor_target(b["next_obs"]))
            if self.TARGET_SMOOTHING:
                noise = torch.randn(b["actions"].shape, generator=self.gen).to(self.device)
                noise = noise * hp["target_noise"]
                noise = noise.clamp(-hp["target_noise_clip"], hp["target_noise_clip"])
                next_a = (next_a + noise).clamp(-1.0, 1.0)
            next_q = self.critic_target(b["next_obs"], next_a).min(0).values
            target = b["returns"] + b["discounts"] * next_q
        critic_loss = ((self.critic(b["obs"], b["actions"]) - target) ** 2).mean(1).sum()
        self.optimizer_step("critic", critic_loss)
        self.updates += 1
        losses = {"critic_loss": critic_loss.detach()}
        if self.updates % (self.POLICY_DELAY or hp["policy_delay"]) == 0:
            actor_loss = -self.critic(b["obs"], self.policy(b["obs"]))[0].mean()
            self.optimizer_step("actor", actor_loss)
            polyak_update(self.actor, self.actor_target, hp["tau"])
            polyak_update(self.critic, self.critic_target, hp["tau"])
            losses["actor_loss"] = actor_loss.detach()
        return losses
