"""Lockstep: rltasks' DQN update against Stable-Baselines3's own, step by step, on the same
weights and the same batches.

The fidelity pairs (``fidelity.py``) compare final returns over seeds, which can only show a
large gap; this bench compares the two updates themselves. Both libraries get rl-zoo3's
CartPole-v1 DQN set (``dqn_cartpole.HP``: 256x256 ReLU, Adam at lr 2.3e-3, Huber loss,
grad-norm clip 10, gamma 0.99); SB3's Q-network and target
start as copies of rltasks' (its default init), and every gradient step both train on one
batch drawn here (CartPole-like states, both actions, terminal with probability 0.1),
handed to rltasks' ``train_step`` and to SB3's ``DQN.train`` through their replay buffers'
``sample``. The target networks are copied every ``--target-every`` steps in both.

Per row it prints, after that many gradient steps, both losses and the largest absolute
difference of any Q-network parameter, first with the Adam epsilon matched (rltasks' 1e-5
given to SB3's optimizer: the same update should leave the same weights up to float
rounding) and then as each library has it (1e-5 against torch's 1e-8: the one known
difference in the update), and last SB3 against itself from weights one float32 step apart
in a single element: how fast a rounding difference alone grows under this training. A gap
between rltasks and SB3 (epsilon matched) growing faster than that would be a defect in
rltasks' update.

    .venv/bin/python bench/lockstep.py [--steps 2000] [--batch 64] [--seed 0]

Needs the bench extra: ``pip install -e '.[bench]'`` (stable-baselines3).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import make_task
from dqn_cartpole import HP

CHECKPOINTS = (1, 10, 100, 1000, 2000, 5000)


def batches(rng: np.random.Generator, size: int, gamma: float) -> dict[str, torch.Tensor]:
    """One batch of CartPole-like transitions in rltasks' layout (1-step returns)."""
    scale = np.array([1.0, 1.0, 0.1, 1.0], np.float32)
    obs = (rng.standard_normal((size, 4)) * scale).astype(np.float32)
    done = rng.random(size) < 0.1
    return {"obs": torch.from_numpy(obs),
            "actions": torch.from_numpy(rng.integers(0, 2, size)),
            "returns": torch.ones(size),
            "discounts": torch.from_numpy(np.where(done, 0.0, gamma).astype(np.float32)),
            "next_obs": torch.from_numpy(obs + (rng.standard_normal((size, 4)) * scale
                                                * 0.05).astype(np.float32)),
            "weights": torch.ones(size), "indices": torch.arange(size)}


def sb3_samples(batch: dict[str, torch.Tensor]):
    """The same batch as SB3's ``ReplayBufferSamples`` (rewards and dones as columns)."""
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    done = (batch["discounts"] == 0).float()
    return ReplayBufferSamples(observations=batch["obs"],
                               actions=batch["actions"].unsqueeze(1),
                               next_observations=batch["next_obs"], dones=done.unsqueeze(1),
                               rewards=batch["returns"].unsqueeze(1))


class Ours:
    """rltasks' DQN (SB3's init: ``ortho_init=False``), trained on the batches given."""

    def __init__(self, seed: int) -> None:
        self.task = make_task("dqn", num_envs=1, seed=seed, steps_per_epoch=2048)
        self.task.init(**{**HP, "learning_starts": 0, "ortho_init": False, "eps_decay": 1000})
        self.net = self.task.q.net

    def train(self, batch: dict[str, torch.Tensor]) -> float:
        self.task.buffer.sample = lambda *_args: batch
        return float(self.task.train_step()["loss"])

    def copy_target(self) -> None:
        self.task.target.load_state_dict(self.task.q.state_dict())


class SB3:
    """SB3's DQN starting from ``weights``; ``adam_eps`` None keeps torch's 1e-8."""

    def __init__(self, seed: int, weights: dict[str, torch.Tensor], adam_eps: float | None
                 ) -> None:
        from stable_baselines3 import DQN
        from stable_baselines3.common.logger import configure

        self.model = DQN("MlpPolicy", "CartPole-v1", learning_rate=HP["lr"],
                         batch_size=HP["batch_size"], gamma=HP["gamma"],
                         max_grad_norm=HP["max_grad_norm"],
                         policy_kwargs={"net_arch": [HP["hidden"]] * HP["layers"]},
                         device="cpu", seed=seed)
        self.model.set_logger(configure(None, []))
        for net in (self.model.q_net.q_net, self.model.q_net_target.q_net):
            net.load_state_dict(weights)
        if adam_eps is not None:
            for group in self.model.policy.optimizer.param_groups:
                group["eps"] = adam_eps
        self.net = self.model.q_net.q_net

    def train(self, batch: dict[str, torch.Tensor]) -> float:
        self.model.replay_buffer.sample = lambda *_args, **_kw: sb3_samples(batch)
        self.model.train(gradient_steps=1, batch_size=len(batch["obs"]))
        return self.model.logger.name_to_value["train/loss"]

    def copy_target(self) -> None:
        from stable_baselines3.common.utils import polyak_update

        polyak_update(self.model.q_net.parameters(), self.model.q_net_target.parameters(), 1.0)


def nudged(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights with one element moved to the next float32 (the smallest change)."""
    out = {key: value.clone() for key, value in weights.items()}
    first = out[next(iter(out))].view(-1)
    first[0] = torch.nextafter(first[0], torch.tensor(float("inf")))
    return out


def lockstep(a, b, seed: int, steps: int, size: int, target_every: int
             ) -> list[tuple[int, float, float, float]]:
    """Train learners ``a`` and ``b`` on the same batches: (step, a's loss, b's loss, the
    largest absolute difference of their Q-network parameters) at each checkpoint."""
    rng, rows = np.random.default_rng(seed), []
    for step in range(1, steps + 1):
        batch = batches(rng, size, HP["gamma"])
        loss_a, loss_b = a.train(batch), b.train(batch)
        if step % target_every == 0:
            a.copy_target()
            b.copy_target()
        if step in CHECKPOINTS or step == steps:
            with torch.no_grad():
                diff = max(float((x - y).abs().max()) for x, y in zip(
                    a.net.parameters(), b.net.parameters(), strict=True))
            rows.append((step, loss_a, loss_b, diff))
    return rows


def pairs(seed: int):
    """(label, learner a, learner b): ours against SB3 with Adam's epsilon matched and as
    each library has it, and SB3 against itself from weights one float32 step apart in one
    element (how fast float rounding alone grows under this training)."""
    ours = Ours(seed)
    weights = {k: v.detach().clone() for k, v in ours.net.state_dict().items()}
    yield "rltasks / SB3, Adam eps 1e-5 both", ours, SB3(seed, weights, 1e-5)
    yield "rltasks / SB3, Adam eps 1e-5 / 1e-8", Ours(seed), SB3(seed, weights, None)
    yield "SB3 / SB3 one ulp apart, Adam eps 1e-8", SB3(seed, weights, None), SB3(
        seed, nudged(weights), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=HP["batch_size"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-every", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| learners a / b | gradient steps | a's loss | b's loss | "
          "max abs parameter difference |\n| --- | ---: | ---: | ---: | ---: |")
    for label, a, b in pairs(args.seed):
        for step, loss_a, loss_b, diff in lockstep(a, b, args.seed, args.steps, args.batch,
                                                   args.target_every):
            print(f"| {label} | {step} | {loss_a:.6g} | {loss_b:.6g} | {diff:.3g} |",
                  flush=True)


if __name__ == "__main__":
    main()
