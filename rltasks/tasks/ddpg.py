"""DDPG (Lillicrap et al. 2016): a deterministic actor trained through a learned critic.

The shared core (``offpolicy.py``) runs the replay loop and owns the actor, the critic, their
target networks and the action noise (``noise``: Gaussian or Ornstein-Uhlenbeck). The update
is TD3's (``td3.py``) without TD3's three additions, as in SB3: one critic, regressed on
``r + gamma Q'(s', mu'(s'))`` at the target actor's own action (no smoothing noise), and the
actor and both targets updated at every step (no policy delay).
"""

from __future__ import annotations

from rltasks.tasks.offpolicy import ContinuousActorCritic
from rltasks.tasks.td3 import TD3


class DDPG(TD3):
    name = "ddpg"
    N_CRITICS = 1
    TARGET_SMOOTHING = False
    POLICY_DELAY = 1
    HPARAMS = ContinuousActorCritic.HPARAMS  # none of TD3's own
    DEFAULTS = {"lr": 1e-3, "gamma": 0.98}
    LOSSES = ("critic_loss", "actor_loss")
