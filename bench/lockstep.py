"""Lockstep: rltasks' updates against Stable-Baselines3's own code, step by step, on the same
weights and the same data.

The fidelity pairs (``fidelity.py``) compare final returns over seeds, which can only show a
large gap; this bench compares the updates themselves, for DQN, PPO, A2C, TD3 and DDPG at
their bench settings (``dqn_cartpole``, ``ppo_cartpole``, ``a2c_cartpole``, ``td3_pendulum``
with 64-unit layers, its DDPG half). SB3's networks start as copies of rltasks' (built with
PyTorch's init for the off-policy ones, as SB3's), and at every update both train on the
same data handed in through their buffers: for the off-policy tasks one replay batch drawn
here (CartPole- or Pendulum-like transitions, 10% terminal), through ``train_step`` and
SB3's ``train(gradient_steps=1)``; for PPO and A2C one rollout that a third, untrained
rltasks task collects on CartPole, through ``update`` and SB3's ``train``, with PPO's
minibatches in the order rltasks' generator draws them. DQN's target networks are copied
every ``--target-every`` updates in both; TD3 and DDPG move theirs themselves. TD3's target
smoothing noise is off (``target_noise=0``): the two libraries draw it from different
generators.

Per algorithm it prints, after that many updates, both libraries' loss (DQN's TD loss, the
critics' loss, the value loss on-policy) and the largest absolute difference of any
parameter of the trained networks:

- rltasks against SB3 with Adam's epsilon matched (rltasks' 1e-5 given to SB3's off-policy
  optimizers; SB3's on-policy ones have 1e-5 already): the same update should leave the same
  weights up to float rounding;
- for DQN, TD3 and DDPG also as each library has it (1e-5 against torch's 1e-8, the one known
  difference in those updates);
- SB3 against itself from weights one float32 step apart in a single element: how fast a
  rounding difference alone grows under this training. A gap between rltasks and SB3 (epsilon
  matched) growing faster than that would be a defect in rltasks' update.

    .venv/bin/python bench/lockstep.py [--algos dqn ppo a2c td3 ddpg] [--updates 2000]
    .venv/bin/python bench/lockstep.py --algos ppo-atari --updates 20

``ppo-atari`` (not in the default run: about 2 s an update here) is PPO on Breakout's frames
at rltasks' Atari defaults (rl-zoo3's set, lr and clip range constant), the Nature CNN
shared by both heads against SB3's ``CnnPolicy``: its rollouts are 8 x 128 stacks of 84 x 84
frames that an untrained rltasks task collects from ale-py's env.

Needs the bench extra: ``pip install -e '.[bench]'`` (stable-baselines3).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import a2c_cartpole
import dqn_cartpole
import numpy as np
import ppo_cartpole
import td3_pendulum
import torch
from common import make_task

CHECKPOINTS = (1, 10, 100, 1000, 2000, 5000)
Batch = dict[str, Any]
#: algorithm -> (env, rltasks hyperparameters, num_envs)
SETS = {
    "dqn": ("CartPole-v1", {**dqn_cartpole.HP, "learning_starts": 0, "eps_decay": 1000}, 1),
    "ppo": ("CartPole-v1", {**ppo_cartpole.HP, "lr_schedule": "constant"}, 8),
    "a2c": ("CartPole-v1", a2c_cartpole.HP, 8),
    "td3": ("Pendulum-v1", {**td3_pendulum.HP, "hidden": 64, "learning_starts": 0,
                            "target_noise": 0.0}, 1),
}
SETS["ddpg"] = ("Pendulum-v1", {k: v for k, v in SETS["td3"][1].items()
                                if k not in td3_pendulum.TD3_ONLY}, 1)
#: PPO on pixels: rltasks' Atari defaults (rl-zoo3's Atari set) with lr and clip range
#: constant, the Nature CNN shared by the policy and value heads, as SB3's ``CnnPolicy``
SETS["ppo-atari"] = ("BreakoutNoFrameskip-v4", {"lr_schedule": "constant",
                                                "clip_schedule": "constant"}, 8)
ON_POLICY = ("ppo", "a2c", "ppo-atari")
#: not in the default run: an update of the CNN on 1,024 frames takes about 2 s here
SLOW = ("ppo-atari",)


def task_name(algo: str) -> str:
    return algo.partition("-")[0]


def rltasks_task(algo: str, seed: int):
    env, hp, num_envs = SETS[algo]
    task = make_task(task_name(algo), env=env, num_envs=num_envs, seed=seed,
                     steps_per_epoch=2048)
    init = {} if algo in ON_POLICY else {"ortho_init": False}  # SB3's off-policy init
    return task.init(**hp, **init)


# -- the data both learners train on -------------------------------------------------------------
def replay_batches(algo: str, seed: int) -> Iterator[Batch]:
    """Replay batches in rltasks' layout (1-step returns, 10% terminal)."""
    rng = np.random.default_rng(seed)
    env, hp, _ = SETS[algo]
    size, gamma = hp["batch_size"], hp["gamma"]
    dims = 4 if env == "CartPole-v1" else 3
    while True:
        obs = rng.standard_normal((size, dims)).astype(np.float32)
        if algo == "dqn":
            actions = torch.from_numpy(rng.integers(0, 2, size))
            rewards = np.ones(size, np.float32)
        else:
            actions = torch.from_numpy(rng.uniform(-1, 1, (size, 1)).astype(np.float32))
            rewards = -rng.uniform(0, 10, size).astype(np.float32)
        done = rng.random(size) < 0.1
        yield {"obs": torch.from_numpy(obs), "actions": actions,
               "returns": torch.from_numpy(rewards),
               "discounts": torch.from_numpy(np.where(done, 0.0, gamma).astype(np.float32)),
               "next_obs": torch.from_numpy(
                   obs + 0.05 * rng.standard_normal((size, dims)).astype(np.float32)),
               "weights": torch.ones(size), "indices": torch.arange(size)}


def rollouts(algo: str, seed: int) -> Iterator[Batch]:
    """Rollouts that an untrained rltasks task collects (its policy stays the first one)."""
    collector = rltasks_task(algo, seed + 1)
    collector.obs = collector.loader.reset(seed=seed)
    try:
        while True:
            yield collector.collect(collector.hp["n_steps"])
    finally:
        collector.close()


# -- the learners --------------------------------------------------------------------------------
class Ours:
    """rltasks' task, trained on the data handed to it."""

    def __init__(self, algo: str, seed: int) -> None:
        self.algo, self.task = algo, rltasks_task(algo, seed)

    def params(self) -> list[torch.Tensor]:
        t = self.task
        if self.algo == "dqn":
            return list(t.q.net.parameters())
        return [*t.torso.parameters(), *t.actor.parameters(), *t.critic.parameters()]

    def minibatch_order(self, size: int) -> list[torch.Tensor]:
        """The permutations PPO's next update will draw from the task's generator."""
        gen = torch.Generator()
        gen.set_state(self.task.gen.get_state())
        return [torch.randperm(size, generator=gen) for _ in range(self.task.hp["update_epochs"])]

    def train(self, batch: Batch, order: list[torch.Tensor] | None) -> float:
        if self.algo in ON_POLICY:
            return self.task.update(batch)["value_loss"]
        self.task.buffer.sample = lambda *_args: batch
        out = self.task.train_step()
        return float(out["loss" if self.algo == "dqn" else "critic_loss"])

    def copy_target(self) -> None:
        self.task.target.load_state_dict(self.task.q.state_dict())


class SB3:
    """SB3's algorithm at the same settings, its networks copied from ``ours``; ``adam_eps``
    None keeps its own epsilon."""

    def __init__(self, algo: str, seed: int, ours: Ours, adam_eps: float | None) -> None:
        from stable_baselines3.common.logger import configure

        self.algo, self.gen = algo, torch.Generator().manual_seed(seed)
        self.model = sb3_model(algo, seed)
        self.model.set_logger(configure(None, []))
        copy_weights(algo, ours.task, self.model)
        if adam_eps is not None:
            for opt in optimizers(self.model):
                for group in opt.param_groups:
                    group["eps"] = adam_eps

    def params(self) -> list[torch.Tensor]:
        m = self.model
        if self.algo == "dqn":
            return list(m.q_net.q_net.parameters())
        if self.algo == "ppo-atari":  # the order of Ours.params
            p = m.policy
            return [*p.features_extractor.parameters(), *p.action_net.parameters(),
                    *p.value_net.parameters()]
        if self.algo in ON_POLICY:
            p = m.policy
            return [*p.mlp_extractor.policy_net.parameters(), *p.action_net.parameters(),
                    *p.mlp_extractor.value_net.parameters(), *p.value_net.parameters()]
        return [*m.actor.mu.parameters(),
                *(p for q in m.critic.q_networks for p in q.parameters())]

    def minibatch_order(self, size: int) -> list[torch.Tensor]:
        return [torch.randperm(size, generator=self.gen) for _ in range(self.model.n_epochs)]

    def train(self, batch: Batch, order: list[torch.Tensor] | None) -> float:
        m = self.model
        if self.algo in ON_POLICY:  # PPO: each call of get is one epoch of minibatches
            epochs = iter(order or [slice(None)])
            m.rollout_buffer.get = lambda batch_size=None: (
                rollout_samples(batch, idx) for idx in (
                    next(epochs).split(batch_size) if batch_size else [next(epochs)]))
            m.train()
            return m.logger.name_to_value["train/value_loss"]
        m.replay_buffer.sample = lambda *_args, **_kw: replay_samples(batch)
        m.train(gradient_steps=1, batch_size=SETS[self.algo][1]["batch_size"])
        return m.logger.name_to_value["train/loss" if self.algo == "dqn"
                                      else "train/critic_loss"]

    def copy_target(self) -> None:
        from stable_baselines3.common.utils import polyak_update

        polyak_update(self.model.q_net.parameters(), self.model.q_net_target.parameters(), 1.0)


def sb3_model(algo: str, seed: int):
    """SB3's model of ``algo`` at the bench settings in ``SETS`` (a dummy env of the id)."""
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env

    env_id, hp, num_envs = SETS[algo]
    if algo == "ppo-atari":
        return atari_ppo(env_id, num_envs, seed)
    env = make_vec_env(env_id, n_envs=num_envs, seed=seed)
    arch = {"net_arch": [hp.get("hidden", 64)] * hp.get("layers", 2)}
    if algo == "dqn":
        return sb3.DQN("MlpPolicy", env, learning_rate=hp["lr"], batch_size=hp["batch_size"],
                       gamma=hp["gamma"], max_grad_norm=hp["max_grad_norm"],
                       policy_kwargs=arch, device="cpu", seed=seed)
    if algo == "ppo":
        return sb3.PPO("MlpPolicy", env, n_steps=hp["n_steps"], batch_size=hp["batch_size"],
                       n_epochs=hp["update_epochs"], gamma=hp["gamma"],
                       gae_lambda=hp["gae_lambda"], ent_coef=hp["ent_coef"],
                       learning_rate=hp["lr"], clip_range=hp["clip_range"], device="cpu",
                       seed=seed)
    if algo == "a2c":
        return sb3.A2C("MlpPolicy", env, n_steps=hp["n_steps"], learning_rate=hp["lr"],
                       gamma=hp["gamma"], gae_lambda=hp["gae_lambda"], ent_coef=hp["ent_coef"],
                       vf_coef=hp["vf_coef"], max_grad_norm=hp["max_grad_norm"],
                       normalize_advantage=hp["norm_adv"], use_rms_prop=True,
                       rms_prop_eps=1e-5, device="cpu", seed=seed)
    own = ({"policy_delay": hp["policy_delay"], "target_policy_noise": 0.0,
            "target_noise_clip": hp["target_noise_clip"]} if algo == "td3" else {})
    return getattr(sb3, algo.upper())(
        "MlpPolicy", env, learning_rate=hp["lr"], batch_size=hp["batch_size"], tau=hp["tau"],
        gamma=hp["gamma"], policy_kwargs=arch, device="cpu", seed=seed, **own)


def atari_ppo(env_id: str, num_envs: int, seed: int):
    """SB3's PPO ``CnnPolicy`` at rl-zoo3's Atari set (lr and clip range constant), on SB3's
    own Atari env (only its spaces are used: 4 stacked 84 x 84 frames)."""
    from atari_scores import SB3_PPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from rltasks.envs import check_env_id

    check_env_id(env_id)  # registers ale-py's ids
    env = VecFrameStack(make_atari_env(env_id, n_envs=num_envs, seed=seed), 4)
    return PPO("CnnPolicy", env, **SB3_PPO, learning_rate=2.5e-4, clip_range=0.1,
               device="cpu", seed=seed)


def optimizers(model) -> list[torch.optim.Optimizer]:
    if hasattr(model, "actor"):
        return [model.actor.optimizer, model.critic.optimizer]
    return [model.policy.optimizer]


def copy_weights(algo: str, task, model) -> None:
    """rltasks' networks into SB3's (and its targets)."""
    if algo == "dqn":
        for net in (model.q_net.q_net, model.q_net_target.q_net):
            net.load_state_dict(task.q.net.state_dict())
    elif algo == "ppo-atari":  # the torso's convolutions, its 512-unit layer, the two heads
        p, convs = model.policy, task.torso[1]
        for theirs, mine in ((p.features_extractor.cnn[0], convs[0]),
                             (p.features_extractor.cnn[2], convs[2]),
                             (p.features_extractor.cnn[4], convs[4]),
                             (p.features_extractor.linear[0], task.torso[2]),
                             (p.action_net, task.actor), (p.value_net, task.critic)):
            theirs.load_state_dict({k: v.contiguous() for k, v in mine.state_dict().items()})
    elif algo in ON_POLICY:
        p = model.policy
        for mine, body, head in ((task.actor, p.mlp_extractor.policy_net, p.action_net),
                                 (task.critic, p.mlp_extractor.value_net, p.value_net)):
            state = mine.state_dict()
            body.load_state_dict({k: v for k, v in state.items() if not k.startswith("4.")})
            head.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("4.")})
    else:
        for actor in (model.actor.mu, model.actor_target.mu):
            actor.load_state_dict(task.actor.state_dict())
        for critic in (model.critic, model.critic_target):
            for theirs, mine in zip(critic.q_networks, task.critic.qs, strict=True):
                theirs.load_state_dict(mine.state_dict())


def replay_samples(batch: Batch):
    """A replay batch as SB3's ``ReplayBufferSamples`` (rewards and dones as columns)."""
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    done = (batch["discounts"] == 0).float().unsqueeze(1)
    actions = batch["actions"] if batch["actions"].dim() > 1 else batch["actions"].unsqueeze(1)
    return ReplayBufferSamples(observations=batch["obs"], actions=actions,
                               next_observations=batch["next_obs"], dones=done,
                               rewards=batch["returns"].unsqueeze(1))


def rollout_samples(batch: Batch, idx: Any):
    """Rows ``idx`` of a rollout as SB3's ``RolloutBufferSamples``."""
    from stable_baselines3.common.type_aliases import RolloutBufferSamples

    return RolloutBufferSamples(observations=batch["obs"][idx], actions=batch["actions"][idx],
                                old_values=batch["values"][idx],
                                old_log_prob=batch["logp"][idx],
                                advantages=batch["adv"][idx], returns=batch["returns"][idx])


# -- the comparison ------------------------------------------------------------------------------
def nudge(params: list[torch.Tensor]) -> None:
    """Move one element of the first parameter to the next float32 (the smallest change)."""
    with torch.no_grad():
        first = params[0].view(-1)
        first[0] = torch.nextafter(first[0], torch.tensor(float("inf")))


def learner_pairs(algo: str, seed: int) -> Iterator[tuple[str, Any, Any]]:
    """(label, learner a, learner b) for ``algo``."""
    ours = Ours(algo, seed)
    yield "rltasks / SB3, Adam eps 1e-5 both", ours, SB3(algo, seed, ours, 1e-5)
    if algo not in ON_POLICY:
        ours = Ours(algo, seed)
        yield "rltasks / SB3, each its own Adam eps", ours, SB3(algo, seed, ours, None)
    source = Ours(algo, seed)
    sb3, nudged = SB3(algo, seed, source, None), SB3(algo, seed, source, None)
    source.task.close()
    nudge(nudged.params())
    yield "SB3 / SB3, one weight one ulp apart", sb3, nudged


def lockstep(algo: str, a: Any, b: Any, seed: int, updates: int, target_every: int
             ) -> list[tuple[int, float, float, float]]:
    """Train ``a`` and ``b`` on the same data: (update, a's loss, b's loss, the largest
    absolute difference of their parameters) at each checkpoint."""
    data: Callable[[str, int], Iterator[Batch]] = (rollouts if algo in ON_POLICY
                                                   else replay_batches)
    rows = []
    for step, batch in enumerate(islice(data(algo, seed), updates), start=1):
        order = a.minibatch_order(len(batch["obs"])) if algo.startswith("ppo") else None
        loss_a, loss_b = a.train(batch, order), b.train(batch, order)
        if algo == "dqn" and step % target_every == 0:
            a.copy_target()
            b.copy_target()
        if step in CHECKPOINTS or step == updates:
            with torch.no_grad():
                diff = max(float((x - y).abs().max())
                           for x, y in zip(a.params(), b.params(), strict=True))
            rows.append((step, loss_a, loss_b, diff))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", choices=list(SETS),
                        default=[a for a in SETS if a not in SLOW])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-every", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| algo | learners a / b | updates | a's loss | b's loss | max abs parameter "
          "difference |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for algo in args.algos:
        for label, a, b in learner_pairs(algo, args.seed):
            for step, loss_a, loss_b, diff in lockstep(algo, a, b, args.seed, args.updates,
                                                       args.target_every):
                print(f"| {algo} | {label} | {step} | {loss_a:.6g} | {loss_b:.6g} | "
                      f"{diff:.3g} |", flush=True)


if __name__ == "__main__":
    main()
