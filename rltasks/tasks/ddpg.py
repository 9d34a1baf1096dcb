"""DDPG (Lillicrap et al. 2016): a deterministic actor trained through a learned critic.

The shared core (``offpolicy.py``) runs the replay loop and owns the actor, the critic, their
target networks and the action noise (``noise``: Gaussian or Ornstein-Uhlenbeck). This file
holds the update: regress Q(s, a) on ``r + gamma Q'(s', mu'(s'))``, push the actor up the
critic's gradient, and Polyak-average both targets.
"""

from __future__ import annotations

import torch

from rltasks.nets import polyak_update
from rltasks.tasks.offpolicy import ContinuousActorCritic


class DDPG(ContinuousActorCritic):
    name = "ddpg"
    DEFAULTS = {"lr": 1e-3, "gamma": 0.98}

    def train_step(self) -> dict[str, torch.Tensor]:
        hp = self.hp
        b = self.buffer.sample(hp["batch_size"], self.np_rng)
        with torch.no_grad():
            next_a = torch.tanh(self.actor_target(b["next_obs"]))
            target = b["returns"] + b["discounts"] * self.critic_target(b["next_obs"], next_a)[0]
        critic_loss = ((self.critic(b["obs"], b["actions"])[0] - target) ** 2).mean()
        self.step("critic", critic_loss)
        actor_loss = -self.critic(b["obs"], self.policy(b["obs"]))[0].mean()
        self.step("actor", actor_loss)
        polyak_update(self.actor, self.actor_target, hp["tau"])
        polyak_update(self.critic, self.critic_target, hp["tau"])
        self.updates += 1
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach()}
