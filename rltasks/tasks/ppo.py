"""PPO: clipped surrogate, GAE, value clipping, entropy bonus (Schulman et al. 2017).

Reads like CleanRL's ``ppo.py``: the shared on-policy core collects ``n_steps`` from every
env, computes GAE and takes a gradient step per minibatch; this file holds the update:
``update_epochs`` shuffled passes of minibatches over the rollout (``minibatches``), each
step's loss clipping the policy ratio (and optionally the value change) (``loss``).
The value loss is SB3's mean squared error, not CleanRL's half of it: rl-zoo3's ``vf_coef``
values were tuned on that scale, and through the global-norm clip shared with the actor the
scale changes learning (docs/benchmarks.md: Acrobot).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch

from rltasks.hparams import HP, choices
from rltasks.optim import SCHEDULES
from rltasks.task import ATARI, ATARI_GAME_STEPS
from rltasks.tasks.onpolicy import (
    CURATED_ONPOLICY,
    ONPOLICY_HPARAMS,
    OnPolicyTask,
)

#: what rl-zoo3's tuned MuJoCo sets share: normalisation, one env, 512 steps, a 2x256 ReLU
#: body and a small initial std
MUJOCO = {"norm_obs": True, "norm_reward": True, "num_envs": 1, "n_steps": 512,
          "hidden": 256, "activation": "relu", "log_std_init": -2.0}
LUNAR = {"num_envs": 16, "n_steps": 1024, "batch_size": 64, "gae_lambda": 0.98, "gamma": 0.999,
         "update_epochs": 4, "ent_coef": 0.01}


class PPO(OnPolicyTask):
    name = "ppo"
    HPARAMS = {
        **ONPOLICY_HPARAMS,
        "gamma": dataclasses.replace(ONPOLICY_HPARAMS["gamma"], default=0.98),
        "batch_size": HP(256, choices(32, 64, 128, 256, 512), kind=int, low=1, high=65_536,
                         help="minibatch size"),
        "update_epochs": HP(20, "uniform(1, 20, discrete=True)", kind=int, low=1, high=1000,
                            help="passes over each rollout"),
        "gae_lambda": HP(0.8, "uniform(0.8, 1.0)", low=0.0, high=1.0, help="GAE lambda"),
        "clip_range": HP(0.2, "uniform(0.05, 0.4)", low=0.0, high=10.0, low_open=True,
                         help="policy ratio clip"),
        "clip_schedule": HP("constant", choices(*SCHEDULES), kind=str,
                            choices=tuple(SCHEDULES), help="schedule of clip_range"),
        "vf_clip": HP(0.0, "uniform(0.0, 1.0)", low=0.0,
                      help="value clip range around the old value; 0 disables"),
        "norm_adv": HP(True, choices(True, False), kind=bool,
                       help="normalise advantages per minibatch"),
    }
    CURATED = {**CURATED_ONPOLICY, "n_steps": choices(32, 64, 128, 256, 512, 1024, 2048),
               "batch_size": choices(32, 64, 128, 256, 512),
               "clip_range": choices(0.1, 0.2, 0.3, 0.4),
               "clip_schedule": choices("constant", "linear"),
               "update_epochs": choices(1, 5, 10, 20)}
    ENV_DEFAULTS = {
        # rl-zoo3's Atari set (atari.yml), for every ALE id: lr and clip range annealed to 0
        ATARI: {"num_envs": 8, "steps_per_epoch": 8 * 128 * -(-ATARI_GAME_STEPS // 128),
                "n_steps": 128, "update_epochs": 4, "batch_size": 256,
                "lr": 2.5e-4, "lr_schedule": "linear", "clip_range": 0.1,
                "clip_schedule": "linear", "vf_coef": 0.5, "ent_coef": 0.01, "gamma": 0.99,
                "gae_lambda": 0.95},
        # rltasks' pixel Catch: short rollouts and episodes (9 steps), a CNN torso
        "rltasks/Catch-v0": {"n_steps": 32, "batch_size": 256, "update_epochs": 4,
                             "gamma": 0.9, "lr": 1e-3, "ent_coef": 0.01},
        # rl-zoo3's Pendulum set (without gSDE), which our Gaussian policy solves too.
        "Pendulum-v1": {"n_steps": 1024, "batch_size": 64, "update_epochs": 10,
                        "gamma": 0.9, "gae_lambda": 0.95, "lr": 1e-3},
        # rl-zoo3's tuned MuJoCo sets (v4 ids there; ortho_init=False has no equivalent here)
        "Hopper-v5": {**MUJOCO, "batch_size": 32, "gamma": 0.999, "lr": 9.80828e-05,
                      "ent_coef": 0.00229519, "clip_range": 0.2, "update_epochs": 5,
                      "gae_lambda": 0.99, "max_grad_norm": 0.7, "vf_coef": 0.835671},
        "HalfCheetah-v5": {**MUJOCO, "batch_size": 64, "gamma": 0.98, "lr": 2.0633e-05,
                           "ent_coef": 0.000401762, "clip_range": 0.1, "update_epochs": 20,
                           "gae_lambda": 0.92, "max_grad_norm": 0.8, "vf_coef": 0.58096},
        "InvertedPendulum-v5": {"norm_obs": True, "norm_reward": True, "num_envs": 1,
                                "n_steps": 32, "batch_size": 64, "gamma": 0.999,
                                "lr": 0.000222425, "ent_coef": 1.37976e-07, "clip_range": 0.4,
                                "update_epochs": 5, "gae_lambda": 0.9, "max_grad_norm": 0.3,
                                "vf_coef": 0.19816},
        # rl-zoo3's Acrobot set (SB3's defaults for the rest: batch 64, lr 3e-4, clip 0.2)
        "Acrobot-v1": {"norm_obs": True, "norm_reward": True, "num_envs": 16, "n_steps": 256,
                       "gae_lambda": 0.94, "gamma": 0.99, "update_epochs": 4, "ent_coef": 0.0,
                       "batch_size": 64, "lr": 3e-4},
        # rl-zoo3's LunarLander (v2 there) and BipedalWalker sets
        "LunarLander-v3": LUNAR,
        "LunarLanderContinuous-v3": LUNAR,
        "BipedalWalker-v3": {"norm_obs": True, "norm_reward": True, "num_envs": 32,
                             "n_steps": 2048, "batch_size": 64, "gae_lambda": 0.95,
                             "gamma": 0.999, "update_epochs": 10, "ent_coef": 0.0,
                             "lr": 3e-4, "clip_range": 0.18},
    }

    def begin_update(self) -> dict[str, float]:
        """Set the scheduled lr; the scheduled clip range."""
        return {**super().begin_update(), "clip_range": self.scheduled("clip_range",
                                                                       "clip_schedule")}

    def minibatches(self, size: int) -> Iterator[torch.Tensor]:
        """``update_epochs`` shuffled passes over the rollout in minibatches."""
        mb = min(self.hp["batch_size"], size)
        for _ in range(self.hp["update_epochs"]):
            perm = torch.randperm(size, generator=self.gen).to(self.device)  # drawn on the CPU
            for start in range(0, size, mb):
                yield perm[start:start + mb]

    def loss(self, b: dict[str, torch.Tensor], logp: torch.Tensor, entropy: torch.Tensor,
             value: torch.Tensor, ctx: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        hp, clip = self.hp, ctx["clip_range"]
        log_ratio = logp - b["logp"]
        ratio = log_ratio.exp()
        adv = b["adv"]
        if hp["norm_adv"] and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
        ret = b["returns"]
        v_loss = (value - ret) ** 2
        if hp["vf_clip"] > 0:
            old = b["values"]
            v_clipped = old + (value - old).clamp(-hp["vf_clip"], hp["vf_clip"])
            v_loss = torch.max(v_loss, (v_clipped - ret) ** 2)
        v_loss = v_loss.mean()  # SB3's scale (CleanRL halves it): rl-zoo3's vf_coef
        ent = entropy.mean()
        loss = pg_loss - hp["ent_coef"] * ent + hp["vf_coef"] * v_loss
        with torch.no_grad():
            kl = ((ratio - 1) - log_ratio).mean()
            clipped = ((ratio - 1).abs() > clip).float().mean()
        return loss, torch.stack([loss, pg_loss, v_loss, ent, kl, clipped]).detach()
