"""TD3 (Fujimoto et al. 2018): DDPG with twin critics, target policy smoothing and delayed
actor updates.

The shared core (``offpolicy.py``) runs the replay loop and owns the networks and the action
noise. This file holds the update: the target is the smaller of the two target critics at a
smoothed target action (clipped Gaussian noise), both critics regress on it, and every
``policy_delay`` updates the actor follows the first critic and the targets move.
"""

from __future__ import annotations

import torch

from rltasks.nets import polyak_update
from rltasks.space import HP
from rltasks.tasks.offpolicy import ContinuousActorCritic


class TD3(ContinuousActorCritic):
    name = "td3"
    N_CRITICS = 2
    HPARAMS = {
        **ContinuousActorCritic.HPARAMS,
        "policy_delay": HP(2, "uniform(1, 4, discrete=True)", kind=int, low=1,
                           help="critic updates per actor update"),
        "target_noise": HP(0.2, "uniform(0.0, 0.5)", low=0.0, help="target smoothing std"),
        "target_noise_clip": HP(0.5, "uniform(0.1, 1.0)", low=0.0,
                                help="target smoothing clip"),
    }
    DEFAULTS = {"lr": 1e-3, "gamma": 0.98}
    LOSSES = ("critic_loss",)

    def train_step(self) -> dict[str, torch.Tensor]:
        hp = self.hp
        b = self.buffer.sample(hp["batch_size"], self.np_rng)
        with torch.no_grad():
            noise = torch.randn(b["actions"].shape, generator=self.gen) * hp["target_noise"]
            noise = noise.clamp(-hp["target_noise_clip"], hp["target_noise_clip"])
            next_a = (torch.tanh(self.actor_target(b["next_obs"])) + noise).clamp(-1.0, 1.0)
            next_q = self.critic_target(b["next_obs"], next_a).min(0).values
            target = b["returns"] + b["discounts"] * next_q
        critic_loss = ((self.critic(b["obs"], b["actions"]) - target) ** 2).mean(1).sum()
        self.step("critic", critic_loss)
        self.updates += 1
        if self.updates % hp["policy_delay"] == 0:
            actor_loss = -self.critic(b["obs"], self.policy(b["obs"]))[0].mean()
            self.step("actor", actor_loss)
            polyak_update(self.actor, self.actor_target, hp["tau"])
            polyak_update(self.critic, self.critic_target, hp["tau"])
        return {"critic_loss": critic_loss.detach()}
