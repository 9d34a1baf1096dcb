"""What PPO, A2C and REINFORCE share: actor-critic networks and rollout collection.

``OnPolicyTask`` builds a policy network (categorical logits, or a Gaussian mean with a
state-independent log std for Box actions) and a value network, collects ``n_steps`` from
every env into a ``RolloutBuffer`` and computes GAE. A subclass holds only its update rule
(``update``) and its own hyperparameters.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rltasks.buffers import RolloutBuffer
from rltasks.envs.images import is_image_space
from rltasks.hparams import BODY, HP, PRECISION, ZOO_GAE_LAMBDA, ZOO_GAMMA, ZOO_NET, choices
from rltasks.nets import CategoricalHead, GaussianHead, layer_init, mlp
from rltasks.optim import make_optimizer, set_lr
from rltasks.task import Task

#: Hyperparameters of every on-policy task (a subclass may change the defaults).
ONPOLICY_HPARAMS: dict[str, HP] = {
    "n_steps": HP(32, choices(5, 8, 16, 32, 64, 128, 256, 512, 1024), kind=int, low=1,
                  high=65_536, shape=True, help="steps per env per rollout"),
    "gamma": HP(0.99, "uniform(0.9, 0.9999)", low=0.0, high=1.0, help="discount"),
    "ent_coef": HP(0.0, "uniform(0.0, 0.02)", low=0.0, high=1.0, help="entropy bonus"),
    "vf_coef": HP(0.5, "uniform(0.1, 1.0)", low=0.0, high=10.0, help="value loss weight"),
    "max_grad_norm": HP(0.5, "uniform(0.1, 5.0)", low=0.0, low_open=True,
                        help="global gradient-norm clip"),
    "hidden": HP(64, choices(32, 64, 128, 256), kind=int, low=1, high=4096, shape=True,
                  help="layer width"),
    "layers": HP(2, choices(1, 2, 3), kind=int, low=1, high=8, shape=True,
                 help="hidden layers"),
    "activation": HP("tanh", choices("tanh", "relu"), kind=str, choices=("tanh", "relu"),
                     help="hidden activation"),
    "log_std_init": HP(0.0, "uniform(-2.0, 1.0)", low=-20.0, high=5.0,
                       help="initial log std of a Gaussian policy, in the env's action units"),
    "body": BODY,
    "precision": PRECISION,
}

#: what every on-policy task's curated space hunts: rl-zoo3's PPO/A2C sampler ranges
#: (``hyperparams_opt.py``; its gamma and GAE choices, its tiny/small/medium networks), and
#: a constant or linearly annealed lr, as PPO's paper anneals it on Atari and rl-zoo3's tuned
#: sets (``lin_...``) do on CartPole, Atari and PyBullet
CURATED_ONPOLICY: dict[str, str | None] = {
    "gamma": ZOO_GAMMA, "gae_lambda": ZOO_GAE_LAMBDA, "lr": "loguniform(1e-5, 2e-3)",
    "lr_schedule": choices("constant", "linear"),
    "ent_coef": "loguniform(1e-8, 0.1)", "max_grad_norm": "uniform(0.3, 2.0)", **ZOO_NET,
    "activation": None, "log_std_init": "uniform(-4.0, 1.0)", "body": None,
}


class OnPolicyTask(Task):
    """Actor-critic on-policy base: networks, sampling, rollouts; subclasses ``update``."""

    IMAGES = True

    def setup(self) -> None:
        hp = self.hp
        self.discrete = isinstance(self.action_space, spaces.Discrete)
        n_act = int(self.action_space.n) if self.discrete else int(np.prod(self.action_space.shape))
        self.torso, self.actor, self.critic = self.networks(n_act)
        self.log_std = nn.Parameter(torch.full((n_act,), hp["log_std_init"]))
        self.modules = {"actor": self.actor, "critic": self.critic}
        if is_image_space(self.observation_space):
            self.modules["torso"] = self.torso
        self.params = [*self.torso.parameters(), *self.actor.parameters(),
                       *self.critic.parameters()]
        if not self.discrete:
            self.modules["log_std"] = nn.ParameterDict({"log_std": self.log_std})
            self.params.append(self.log_std)
            low, high = self.action_space.low, self.action_space.high
            self.act_center, self.act_scale = (high + low) / 2, (high - low) / 2
            # log_std_init is in the env's action units, as SB3's and rl-zoo3's tuned values
            # are; the Gaussian works in [-1, 1], so its own log std is less log(scale)
            with torch.no_grad():
                self.log_std -= torch.from_numpy(np.log(self.act_scale).astype(np.float32)
                                                 ).reshape(-1)
        self.optimizers = {"opt": make_optimizer(self.params, hp)}

    def networks(self, n_act: int) -> tuple[nn.Module, nn.Module, nn.Module]:
        """``(torso, actor, critic)``: on vectors no torso and two MLPs; on images one CNN
        torso (``body``) under a linear policy head and a linear value head, so that actor
        and critic share it (CleanRL's ``ppo_atari.py``)."""
        hp, space = self.hp, self.observation_space
        image = self.image_torso()
        if image is not None:
            torso, width = image
            return (torso, layer_init(nn.Linear(width, n_act), gain=0.01),
                    layer_init(nn.Linear(width, 1), gain=1.0))
        n_obs, hidden = int(np.prod(space.shape)), [hp["hidden"]] * hp["layers"]
        return (nn.Identity(), mlp(n_obs, hidden, n_act, hp["activation"], out_gain=0.01),
                mlp(n_obs, hidden, 1, hp["activation"], out_gain=1.0))

    # -- policy -------------------------------------------------------------------------------
    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions drawn with the task's generator, their log-probabilities, the values."""
        h = self.torso(obs)
        return self.draw(self.actor(h), self.critic(h).squeeze(-1))

    def draw(self, out: torch.Tensor, value: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``sample`` given the actor's output: actions, log-probabilities, ``value``."""
        if self.discrete:
            action = CategoricalHead.sample(out, self.gen)
            return action, CategoricalHead.log_prob(out, action), value
        action = GaussianHead.sample(out, self.log_std, self.gen)
        return action, GaussianHead.log_prob(out, self.log_std, action), value

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities of ``actions``, the policy entropy and the values, with
        gradients (the torso runs once)."""
        h = self.torso(obs)
        return self.judge(self.actor(h), self.critic(h).squeeze(-1), actions)

    def judge(self, out: torch.Tensor, value: torch.Tensor, actions: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``evaluate_actions`` given the actor's output and the values."""
        if self.discrete:
            return CategoricalHead.log_prob(out, actions), CategoricalHead.entropy(out), value
        return (GaussianHead.log_prob(out, self.log_std, actions),
                GaussianHead.entropy(self.log_std, len(actions)), value)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.torso(obs)).squeeze(-1)

    def to_env(self, actions: torch.Tensor) -> np.ndarray:
        """Env actions: discrete as they are; Gaussian samples clipped to [-1, 1] and rescaled
        to the Box bounds (the buffer keeps the unclipped sample for its log-probability)."""
        a = actions.cpu().numpy()
        if self.discrete:
            return a
        return self.act_center + self.act_scale * np.clip(a, -1.0, 1.0)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        out = self.actor(self.torso(self.tensor(obs, dtype=torch.float32)))
        return self.to_env(CategoricalHead.mode(out) if self.discrete else out)

    def policy_actions(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.actor(self.torso(obs))
        if self.discrete:
            return out.argmax(-1)
        center = torch.as_tensor(self.act_center, dtype=torch.float32, device=out.device)
        scale = torch.as_tensor(self.act_scale, dtype=torch.float32, device=out.device)
        return center + scale * out.clamp(-1.0, 1.0)

    # -- one epoch ----------------------------------------------------------------------------
    def epoch_unit(self) -> tuple[int, str]:
        """An epoch is whole rollouts of ``n_steps`` in every env."""
        n, m = self.hp["n_steps"], self.num_envs
        return n * m, f"a rollout is n_steps {n} x {m} envs"

    def train_epoch(self) -> dict[str, float]:
        n, m = self.hp["n_steps"], self.num_envs
        rollouts = self.epoch_steps() // (n * m)
        sums: dict[str, float] = {}
        for _ in range(rollouts):
            add_mean(sums, self.update(self.collect(n)), rollouts)
        return sums

    @torch.no_grad()  # not inference_mode: the update builds its graph on these tensors
    def collect(self, n: int) -> dict[str, torch.Tensor]:
        """Run ``n`` steps in every env from ``self.obs``; return the flat rollout with GAE."""
        buf = self.start_rollout(n)
        obs = self.tensor(self.obs)
        for t in range(n):
            obs = self.record_step(buf, t, obs, *self.sample(obs))
        return self.finish_rollout(buf, obs)

    def start_rollout(self, n: int) -> RolloutBuffer:
        """An empty buffer for a rollout of ``n`` steps in every env."""
        act_shape = () if self.discrete else self.action_space.shape
        return RolloutBuffer(n, self.num_envs, self.observation_space.shape, act_shape,
                             self.discrete, device=self.device,
                             obs_dtype=torch.uint8 if is_image_space(self.observation_space)
                             else torch.float32)

    def record_step(self, buf: RolloutBuffer, t: int, obs: torch.Tensor, action: torch.Tensor,
                    logp: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Step the envs with ``action`` drawn at ``obs``, store step ``t``; the next obs."""
        next_obs, reward, term, trunc, final = self.loader.step(self.to_env(action))
        reward = self.tensor(reward)
        cut = np.flatnonzero(trunc & ~term)
        if len(cut):  # a time-out is not a failure: bootstrap from the final state
            reward[self.tensor(cut)] += self.hp["gamma"] * self.value(self.tensor(final[cut]))
        buf.add(t, obs, action, logp, reward, value, self.tensor(term | trunc).float())
        self.obs = next_obs
        return self.tensor(next_obs)

    def finish_rollout(self, buf: RolloutBuffer, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Count the rollout's steps and compute its GAE; the flat rollout."""
        hp = self.hp
        self.env_steps += buf.n_steps * self.num_envs
        # the rollout's end is a truncation too: bootstrap from the value of the next state
        buf.compute_gae(self.value(obs), hp["gamma"], hp.get("gae_lambda", 1.0))
        return buf.flat()

    def update(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        """The update on one rollout: a gradient step on each minibatch of ``minibatches``
        (A2C and REINFORCE: the whole rollout, once) with the loss of ``loss``."""
        ctx = self.begin_update()
        total, count = None, 0
        for idx in self.minibatches(len(b["adv"])):
            mb = select(b, idx)
            loss, stats = self.loss(mb, *self.evaluate_actions(mb["obs"], mb["actions"]), ctx)
            self.optimizer_step("opt", loss, clip=self.params)
            total, count = stats if total is None else total + stats, count + 1
        return self.end_update(b, total / count, ctx)

    def begin_update(self) -> dict[str, float]:
        """Set the scheduled lr; the update's scheduled values (``ctx`` of ``loss``)."""
        lr = self.scheduled("lr", "lr_schedule")
        set_lr(self.optimizers["opt"], lr)
        return {"lr": lr}

    def minibatches(self, size: int) -> Iterator[torch.Tensor | None]:
        """The rows of each gradient step (``None``: all ``size`` rows, once)."""
        yield None

    def loss(self, b: dict[str, torch.Tensor], logp: torch.Tensor, entropy: torch.Tensor,
             value: torch.Tensor, ctx: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor-critic loss (A2C, REINFORCE) and its statistics: policy loss
        ``-A log pi(a|s)`` (advantages normalised if ``norm_adv``), value loss
        ``(R - V(s))**2``, entropy bonus. PPO has its clipped surrogate."""
        hp = self.hp
        adv = b["adv"]
        if hp["norm_adv"] and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = -(adv * logp).mean()
        v_loss = ((b["returns"] - value) ** 2).mean()
        ent = entropy.mean()
        loss = pg_loss - hp["ent_coef"] * ent + hp["vf_coef"] * v_loss
        return loss, torch.stack([loss, pg_loss, v_loss, ent]).detach()

    def end_update(self, b: dict[str, torch.Tensor], stats: torch.Tensor,
                   ctx: dict[str, float]) -> dict[str, float]:
        """The update's metrics from the mean of ``loss``'s statistics."""
        names = ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac")
        return {**dict(zip(names, stats.tolist(), strict=False)),
                "explained_variance": explained_variance(b["values"], b["returns"]), **ctx}


def add_mean(sums: dict[str, float], metrics: dict[str, float], count: int) -> None:
    """Add ``metrics / count`` to ``sums`` key by key (an epoch's mean over its updates)."""
    for key, value in metrics.items():
        sums[key] = sums.get(key, 0.0) + value / count


def select(b: dict[str, torch.Tensor], idx: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The rows ``idx`` of a flat rollout (all of it for ``None``)."""
    return b if idx is None else {key: value[idx] for key, value in b.items()}


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var[returns - values] / Var[returns]: how much of the return the critic explains."""
    var = returns.var()
    return float(1 - (returns - values).var() / var) if var > 0 else 0.0
