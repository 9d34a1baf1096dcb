"""REINFORCE with a learned value baseline (Williams 1992; Polyaxon's ``PGAgent``).

The shared on-policy core (``onpolicy.py``) collects ``n_steps`` from every env and, with
no ``gae_lambda`` (so lambda = 1), turns rewards into returns-to-go minus the baseline
``V(s)``; an episode cut at the end of a rollout or epoch bootstraps from the value, as a
truncation. Its update is one gradient step of ``-(G_t - V(s_t)) log pi(a_t|s_t)`` plus the
baseline's regression. What is REINFORCE's own: Monte-Carlo returns (no lambda to tune),
long rollouts and normalised advantages.
"""

from __future__ import annotations

import dataclasses

from rltasks.hparams import HP, choices
from rltasks.tasks.onpolicy import CURATED_ONPOLICY, ONPOLICY_HPARAMS, OnPolicyTask


class PG(OnPolicyTask):
    name = "pg"
    HPARAMS = {
        **ONPOLICY_HPARAMS,
        "n_steps": dataclasses.replace(ONPOLICY_HPARAMS["n_steps"], default=128),
        "norm_adv": HP(True, choices(True, False), kind=bool,
                       help="normalise the advantages (returns-to-go minus baseline)"),
    }
    DEFAULTS = {"lr": 1e-3}
    # the on-policy ranges (REINFORCE has no GAE) over whole-episode-scale rollouts
    CURATED = {**{k: v for k, v in CURATED_ONPOLICY.items() if k != "gae_lambda"},
               "n_steps": choices(128, 256, 512, 1024)}
