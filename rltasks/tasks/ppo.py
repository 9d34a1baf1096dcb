"""PPO: clipped surrogate, GAE, value clipping, entropy bonus (Schulman et al. 2017).

Reads like CleanRL's ``ppo.py``: collect ``n_steps`` from every env, compute advantages with
GAE, then ``update_epochs`` passes of minibatch updates. Discrete actions use a categorical
policy; Box actions a diagonal Gaussian whose samples are clipped and rescaled to the bounds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rltasks.nets import CategoricalHead, GaussianHead, mlp
from rltasks.optim import SCHEDULES, make_optimizer, set_lr
from rltasks.space import HP, choices
from rltasks.task import Task


class PPO(Task):
    name = "ppo"
    HPARAMS = {
        "n_steps": HP(32, choices(16, 32, 64, 128, 256, 512, 1024), kind=int, low=1,
                      help="steps per env per rollout"),
        "batch_size": HP(256, choices(32, 64, 128, 256, 512), kind=int, low=1,
                         help="minibatch size"),
        "update_epochs": HP(20, "uniform(1, 20, discrete=True)", kind=int, low=1, high=1000,
                            help="passes over each rollout"),
        "gamma": HP(0.98, "uniform(0.9, 0.9999)", low=0.0, high=1.0, help="discount"),
        "gae_lambda": HP(0.8, "uniform(0.8, 1.0)", low=0.0, high=1.0, help="GAE lambda"),
        "clip_range": HP(0.2, "uniform(0.05, 0.4)", low=0.0, high=10.0, low_open=True,
                         help="policy ratio clip"),
        "clip_schedule": HP("constant", choices(*SCHEDULES), kind=str,
                            choices=tuple(SCHEDULES), help="schedule of clip_range"),
        "vf_clip": HP(0.0, "uniform(0.0, 1.0)", low=0.0,
                      help="value clip range around the old value; 0 disables"),
        "ent_coef": HP(0.0, "uniform(0.0, 0.02)", low=0.0, high=1.0, help="entropy bonus"),
        "vf_coef": HP(0.5, "uniform(0.1, 1.0)", low=0.0, high=10.0, help="value loss weight"),
        "max_grad_norm": HP(0.5, "uniform(0.1, 5.0)", low=0.0, low_open=True,
                            help="global gradient-norm clip"),
        "norm_adv": HP(True, choices(True, False), kind=bool,
                       help="normalise advantages per minibatch"),
        "hidden": HP(64, choices(32, 64, 128, 256), kind=int, low=1, help="layer width"),
        "layers": HP(2, choices(1, 2, 3), kind=int, low=1, high=8, help="hidden layers"),
        "activation": HP("tanh", choices("tanh", "relu"), kind=str, choices=("tanh", "relu"),
                         help="hidden activation"),
        "log_std_init": HP(0.0, "uniform(-2.0, 1.0)", low=-20.0, high=5.0,
                           help="initial log std of a Gaussian policy"),
    }
    ENV_DEFAULTS = {
        # rl-zoo3's Pendulum set (without gSDE), which our Gaussian policy solves too.
        "Pendulum-v1": {"n_steps": 1024, "batch_size": 64, "update_epochs": 10,
                        "gamma": 0.9, "gae_lambda": 0.95, "lr": 1e-3},
    }

    def check_env(self) -> None:
        if not isinstance(self.action_space, (spaces.Discrete, spaces.Box)):
            raise ValueError(f"ppo needs Discrete or Box actions; {self.env_id} has "
                             f"{self.action_space}")
        if not isinstance(self.observation_space, spaces.Box):
            raise ValueError(f"ppo needs Box observations; {self.env_id} has "
                             f"{self.observation_space}")

    def setup(self) -> None:
        hp = self.hp
        n_obs = int(np.prod(self.observation_space.shape))
        self.discrete = isinstance(self.action_space, spaces.Discrete)
        n_act = int(self.action_space.n) if self.discrete else int(np.prod(self.action_space.shape))
        hidden = [hp["hidden"]] * hp["layers"]
        self.actor = mlp(n_obs, hidden, n_act, hp["activation"], out_gain=0.01)
        self.critic = mlp(n_obs, hidden, 1, hp["activation"], out_gain=1.0)
        self.log_std = nn.Parameter(torch.full((n_act,), hp["log_std_init"]))
        self.modules = {"actor": self.actor, "critic": self.critic}
        params = [*self.actor.parameters(), *self.critic.parameters()]
        if not self.discrete:
            self.modules["log_std"] = nn.ParameterDict({"log_std": self.log_std})
            params.append(self.log_std)
            low, high = self.action_space.low, self.action_space.high
            self.act_center, self.act_scale = (high + low) / 2, (high - low) / 2
        self.params = params
        self.optimizers = {"opt": make_optimizer(params, hp)}

    # -- policy -------------------------------------------------------------------------------
    def _sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.actor(obs)
        if self.discrete:
            action = CategoricalHead.sample(out, self.gen)
            return action, CategoricalHead.log_prob(out, action)
        action = GaussianHead.sample(out, self.log_std, self.gen)
        return action, GaussianHead.log_prob(out, self.log_std, action)

    def _evaluate(self, obs: torch.Tensor, actions: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.actor(obs)
        if self.discrete:
            return CategoricalHead.log_prob(out, actions), CategoricalHead.entropy(out)
        return (GaussianHead.log_prob(out, self.log_std, actions),
                GaussianHead.entropy(self.log_std, len(obs)))

    def _to_env(self, actions: torch.Tensor) -> np.ndarray:
        a = actions.numpy()
        if self.discrete:
            return a
        return self.act_center + self.act_scale * np.clip(a, -1.0, 1.0)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        out = self.actor(torch.as_tensor(obs, dtype=torch.float32))
        return self._to_env(CategoricalHead.mode(out) if self.discrete else out)

    # -- one epoch ----------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        n, m = self.hp["n_steps"], self.num_envs
        rollouts = math.ceil(self.steps_per_epoch / (n * m))
        sums: dict[str, float] = {}
        for _ in range(rollouts):
            batch = self._collect(n, m)
            for key, value in self._update(batch).items():
                sums[key] = sums.get(key, 0.0) + value / rollouts
        return sums

    @torch.inference_mode()
    def _collect(self, n: int, m: int) -> dict[str, torch.Tensor]:
        hp = self.hp
        obs_buf = torch.zeros((n, m, *self.observation_space.shape))
        act_shape = () if self.discrete else self.action_space.shape
        act_buf = torch.zeros((n, m, *act_shape), dtype=torch.long if self.discrete else None)
        logp_buf, rew_buf, val_buf = torch.zeros((n, m)), torch.zeros((n, m)), torch.zeros((n, m))
        done_buf = torch.zeros((n, m))
        obs = torch.from_numpy(self.obs)
        for t in range(n):
            action, logp = self._sample(obs)
            value = self.critic(obs).squeeze(-1)
            next_obs, reward, term, trunc, final = self.loader.step(self._to_env(action))
            reward = torch.from_numpy(reward)
            if trunc.any():  # a time-out is not a failure: bootstrap from the final state
                idx = torch.from_numpy(np.flatnonzero(trunc & ~term))
                if len(idx):
                    final_v = self.critic(torch.from_numpy(final[idx.numpy()])).squeeze(-1)
                    reward[idx] += hp["gamma"] * final_v
            obs_buf[t], act_buf[t], logp_buf[t], val_buf[t] = obs, action, logp, value
            rew_buf[t], done_buf[t] = reward, torch.from_numpy(term | trunc).float()
            obs = torch.from_numpy(next_obs)
        self.obs = next_obs
        self.env_steps += n * m
        # GAE; the rollout's end is a truncation: bootstrap from the value of the next state.
        next_value = self.critic(obs).squeeze(-1)
        adv = torch.zeros((n, m))
        last = torch.zeros(m)
        for t in reversed(range(n)):
            nonterminal = 1.0 - done_buf[t]
            nv = next_value if t == n - 1 else val_buf[t + 1]
            delta = rew_buf[t] + hp["gamma"] * nv * nonterminal - val_buf[t]
            last = delta + hp["gamma"] * hp["gae_lambda"] * nonterminal * last
            adv[t] = last
        return {"obs": obs_buf.flatten(0, 1), "actions": act_buf.flatten(0, 1),
                "logp": logp_buf.flatten(), "values": val_buf.flatten(),
                "adv": adv.flatten(), "returns": (adv + val_buf).flatten()}

    def _update(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        hp, opt = self.hp, self.optimizers["opt"]
        lr = self.scheduled("lr", "lr_schedule")
        clip = self.scheduled("clip_range", "clip_schedule")
        set_lr(opt, lr)
        size = len(b["adv"])
        mb = min(hp["batch_size"], size)
        stats = torch.zeros(6)
        count = 0
        for _ in range(hp["update_epochs"]):
            perm = torch.randperm(size, generator=self.gen)
            for start in range(0, size, mb):
                idx = perm[start:start + mb]
                logp, entropy = self._evaluate(b["obs"][idx], b["actions"][idx])
                value = self.critic(b["obs"][idx]).squeeze(-1)
                log_ratio = logp - b["logp"][idx]
                ratio = log_ratio.exp()
                adv = b["adv"][idx]
                if hp["norm_adv"] and len(idx) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
                ret = b["returns"][idx]
                v_loss = (value - ret) ** 2
                if hp["vf_clip"] > 0:
                    old = b["values"][idx]
                    v_clipped = old + (value - old).clamp(-hp["vf_clip"], hp["vf_clip"])
                    v_loss = torch.max(v_loss, (v_clipped - ret) ** 2)
                v_loss = 0.5 * v_loss.mean()
                ent = entropy.mean()
                loss = pg_loss - hp["ent_coef"] * ent + hp["vf_coef"] * v_loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.params, hp["max_grad_norm"])
                opt.step()
                with torch.no_grad():
                    kl = ((ratio - 1) - log_ratio).mean()
                    clipped = ((ratio - 1).abs() > clip).float().mean()
                    stats += torch.stack([loss, pg_loss, v_loss, ent, kl, clipped]).detach()
                count += 1
        stats = (stats / count).tolist()
        var_y = b["returns"].var()
        explained = 1 - (b["returns"] - b["values"]).var() / var_y if var_y > 0 else 0.0
        return {"loss": stats[0], "policy_loss": stats[1], "value_loss": stats[2],
                "entropy": stats[3], "approx_kl": stats[4], "clip_frac": stats[5],
                "explained_variance": float(explained), "lr": lr, "clip_range": clip}
