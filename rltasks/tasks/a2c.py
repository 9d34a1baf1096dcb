"""A2C: synchronous advantage actor-critic (Mnih et al. 2016), as in SB3 and CleanRL.

The shared on-policy core (``onpolicy.py``) collects ``n_steps`` (5 by default) from every
env, computes n-step returns (``gae_lambda=1``) or GAE (``gae_lambda<1``) and takes one
actor-critic gradient step on the whole rollout. What is A2C's own is its settings: short
rollouts, no advantage normalisation, RMSprop (alpha 0.99, eps 1e-5, lr 7e-4) as in the paper.
"""

from __future__ import annotations

import dataclasses

from rltasks.hparams import HP, choices
from rltasks.task import ATARI, ATARI_GAME_STEPS
from rltasks.tasks.onpolicy import CURATED_ONPOLICY, ONPOLICY_HPARAMS, OnPolicyTask


class A2C(OnPolicyTask):
    name = "a2c"
    HPARAMS = {
        **ONPOLICY_HPARAMS,
        "n_steps": dataclasses.replace(ONPOLICY_HPARAMS["n_steps"], default=5),
        "gae_lambda": HP(1.0, "uniform(0.8, 1.0)", low=0.0, high=1.0,
                         help="GAE lambda; 1 gives plain n-step returns"),
        "norm_adv": HP(False, choices(True, False), kind=bool,
                       help="normalise advantages over the rollout"),
    }
    DEFAULTS = {"optimizer": "rmsprop", "lr": 7e-4, "momentum": 0.0}
    # rl-zoo3's A2C sampler, with the paper's short rollouts (5 steps) as the shortest
    CURATED = {**CURATED_ONPOLICY, "n_steps": choices(5, 8, 16, 32, 64, 128)}
    # rl-zoo3's LunarLander set (v2 there; its lr decays linearly: --lr-schedule linear) and
    # its Acrobot set (normalised, 16 envs, A2C's defaults otherwise)
    # and its Atari set, for every ALE id
    ENV_DEFAULTS = {"LunarLander-v3": {"gamma": 0.995, "n_steps": 5, "lr": 0.00083,
                                       "ent_coef": 1e-5},
                    ATARI: {"num_envs": 16, "steps_per_epoch": 16 * ATARI_GAME_STEPS,
                            "ent_coef": 0.01, "vf_coef": 0.25},
                    "Acrobot-v1": {"norm_obs": True, "norm_reward": True, "num_envs": 16}}
