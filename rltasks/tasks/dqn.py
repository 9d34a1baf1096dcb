"""DQN (Mnih et al. 2015) with its common extensions, each a switchable hyperparameter.

Reads like CleanRL's ``dqn.py``: act with an exploration policy, store the transition in a
replay buffer, and every ``train_freq`` env steps take ``gradient_steps`` TD steps on sampled
batches; copy (``tau=1``) or Polyak-average the online network into the target network every
``target_update`` env steps. Extensions: double DQN, dueling heads, n-step returns, Huber or
squared loss, and prioritized replay (``replay='prioritized'``, beta annealed to 1).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rltasks.buffers import PrioritizedReplayBuffer, ReplayBuffer
from rltasks.explore import POLICIES, POLICY_HPARAMS, make_policy
from rltasks.nets import QNetwork
from rltasks.optim import make_optimizer, set_lr
from rltasks.space import HP, choices
from rltasks.task import Task

LOSSES = {"huber": nn.functional.smooth_l1_loss, "mse": nn.functional.mse_loss}


class DQN(Task):
    name = "dqn"
    ACTION_SPACES = (spaces.Discrete,)
    DEFAULT_NUM_ENVS = 1
    HPARAMS = {
        "buffer_size": HP(100_000, choices(10_000, 50_000, 100_000, 1_000_000), kind=int,
                          low=1, help="replay capacity (transitions)"),
        "batch_size": HP(64, choices(32, 64, 128, 256), kind=int, low=1, help="TD batch"),
        "learning_starts": HP(1000, choices(0, 1000, 5000), kind=int, low=0,
                              help="env steps of random actions before training"),
        "train_freq": HP(256, choices(1, 4, 16, 64, 256), kind=int, low=1,
                         help="env steps between training phases"),
        "gradient_steps": HP(128, choices(1, 4, 16, 64, 128), kind=int, low=1,
                             help="TD steps per training phase"),
        "target_update": HP(10, choices(1, 10, 100, 1000, 10000), kind=int, low=1,
                            help="env steps between target-network updates"),
        "tau": HP(1.0, "uniform(0.005, 1.0)", low=0.0, high=1.0, low_open=True,
                  help="Polyak coefficient of the target update; 1 copies"),
        "gamma": HP(0.99, "uniform(0.9, 0.9999)", low=0.0, high=1.0, help="discount"),
        "double": HP(False, choices(True, False), kind=bool, help="double DQN targets"),
        "dueling": HP(False, choices(True, False), kind=bool, help="dueling Q heads"),
        "n_step": HP(1, choices(1, 3, 5), kind=int, low=1, high=100, help="n-step returns"),
        "loss": HP("huber", choices(*LOSSES), kind=str, choices=tuple(LOSSES),
                   help="TD loss"),
        "max_grad_norm": HP(10.0, "uniform(0.5, 10.0)", low=0.0, low_open=True,
                            help="global gradient-norm clip"),
        "replay": HP("uniform", choices("uniform", "prioritized"), kind=str,
                     choices=("uniform", "prioritized"), help="replay buffer"),
        "per_alpha": HP(0.6, "uniform(0.0, 1.0)", low=0.0, high=1.0,
                        help="prioritization exponent"),
        "per_beta": HP(0.4, "uniform(0.0, 1.0)", low=0.0, high=1.0,
                       help="initial importance-sampling exponent"),
        "per_beta_steps": HP(50_000, choices(10_000, 50_000, 100_000, 1_000_000), kind=int,
                             low=1, help="env steps over which beta anneals to 1"),
        "exploration": HP("adaptive_epsilon", choices(*POLICIES), kind=str,
                          choices=tuple(POLICIES), help="exploration policy"),
        **POLICY_HPARAMS,
        "hidden": HP(256, choices(64, 128, 256), kind=int, low=1, help="layer width"),
        "layers": HP(2, choices(1, 2, 3), kind=int, low=1, high=8, help="hidden layers"),
        "activation": HP("relu", choices("tanh", "relu"), kind=str, choices=("tanh", "relu"),
                         help="hidden activation"),
    }
    # rl-zoo3's CartPole set
    DEFAULTS = {"lr": 2.3e-3}

    def setup(self) -> None:
        hp = self.hp
        n_obs = int(np.prod(self.observation_space.shape))
        n_act = int(self.action_space.n)
        hidden = [hp["hidden"]] * hp["layers"]
        self.q = QNetwork(n_obs, hidden, n_act, hp["activation"], hp["dueling"])
        self.target = copy.deepcopy(self.q).requires_grad_(False)
        self.modules = {"q": self.q, "target": self.target}
        self.optimizers = {"opt": make_optimizer(list(self.q.parameters()), hp)}
        cls = PrioritizedReplayBuffer if hp["replay"] == "prioritized" else ReplayBuffer
        extra = {"alpha": hp["per_alpha"]} if hp["replay"] == "prioritized" else {}
        self.buffer = cls(hp["buffer_size"], self.observation_space.shape, (), np.int64,
                          self.num_envs, n_step=hp["n_step"], gamma=hp["gamma"], **extra)
        self.policy = make_policy(hp, n_act)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.q(torch.as_tensor(obs, dtype=torch.float32)).argmax(-1).numpy()

    def train_epoch(self) -> dict[str, float]:
        hp, m = self.hp, self.num_envs
        obs, done_steps, losses = self.obs, 0, []
        while done_steps < self.steps_per_epoch:
            with torch.no_grad():
                q = self.q(torch.from_numpy(obs))
            if self.env_steps < hp["learning_starts"]:
                actions = torch.randint(q.shape[-1], (m,), generator=self.gen)
            else:
                actions = self.policy.select(q, self.env_steps, self.gen)
            next_obs, reward, term, trunc, final = self.loader.step(actions.numpy())
            real_next = final if final is not None else next_obs
            self.buffer.add(obs, actions.numpy(), reward, real_next, term, term | trunc)
            obs = next_obs
            before, self.env_steps = self.env_steps, self.env_steps + m
            done_steps += m
            if self.env_steps >= hp["learning_starts"] and _crossed(before, m, hp["train_freq"]):
                losses += [self.train_step() for _ in range(hp["gradient_steps"])]
            if _crossed(before, m, hp["target_update"]):
                _polyak(self.q, self.target, hp["tau"])
        self.buffer.flush(obs)  # the epoch ends every n-step window as a truncation
        self.obs = obs
        loss = float(torch.stack(losses).mean()) if losses else 0.0
        return {"loss": loss, "gradient_steps": len(losses),
                "lr": self.optimizers["opt"].param_groups[0]["lr"],
                "exploration": self.policy.scale(self.env_steps), "buffer": len(self.buffer)}

    def train_step(self) -> torch.Tensor:
        hp = self.hp
        set_lr(self.optimizers["opt"], self.scheduled("lr", "lr_schedule"))
        beta = hp["per_beta"] + (1 - hp["per_beta"]) * min(1.0, self.env_steps
                                                           / hp["per_beta_steps"])
        b = self.buffer.sample(hp["batch_size"], self.np_rng, beta)
        with torch.no_grad():
            next_q = self.target(b["next_obs"])
            if hp["double"]:
                next_v = next_q.gather(1, self.q(b["next_obs"]).argmax(1, keepdim=True))
            else:
                next_v = next_q.max(1, keepdim=True).values
            target = b["returns"] + b["discounts"] * next_v.squeeze(1)
        q = self.q(b["obs"]).gather(1, b["actions"].unsqueeze(1)).squeeze(1)
        loss = (b["weights"] * LOSSES[hp["loss"]](q, target, reduction="none")).mean()
        opt = self.optimizers["opt"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), hp["max_grad_norm"])
        opt.step()
        self.buffer.update_priorities(b["indices"], (q - target).detach())
        return loss.detach()

    def extra_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "policy": self.policy.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.policy.load_state_dict(state["policy"])


def _crossed(before: int, step: int, every: int) -> bool:
    """Whether the counter passed a multiple of ``every`` going from ``before`` to +step."""
    return (before + step) // every > before // every


@torch.no_grad()
def _polyak(source: nn.Module, target: nn.Module, tau: float) -> None:
    """target <- tau * source + (1 - tau) * target (a copy when tau is 1)."""
    for s, t in zip(source.parameters(), target.parameters(), strict=True):
        t.copy_(s) if tau == 1.0 else t.lerp_(s, tau)
