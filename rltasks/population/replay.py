"""The lockstep epoch of DQN members (vector observations) with stacked Q-networks.

Each member's Q-network and target network become slices of one ``StackedQ`` each (a
``StackedMLP`` body, ``rltasks.nets``, and dueling heads stacked alike): one stacked forward
gives every member's acting Q-values (computed only when some member's policy needs them, as
a solo run skips it while every env explores), and each gradient step is one stacked forward
of the target network (and, for double DQN, of the online one) on every member's next
observations, one stacked forward and one backward. Everything member-specific runs member
by member with the task's own methods: the choice of actions with the member's generator,
env steps (taken as one vector env where the envs allow it: ``rltasks.envs.StepAsOne``),
storing, sampling from its own replay buffer with its own generator, the TD targets with its
gamma, the loss, the optimizer step with its lr, priorities, target updates with its
interval and tau; the gradient clipping is computed for all at once
(``Members.clip_and_step``). So member k ends with the bits of the same trial run alone
(``tests/test_population.py``).

Members share the env settings, the networks' shapes, the buffer's kind and size, the
exploration policy's kind and ``batch_size`` (``lockstep_keys``); they may differ in every
scalar, the replay ratio and ``learning_starts`` included: a member with no gradient step
due fills its slice of the stacked batch with another member's rows, which it does not use.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rltasks.envs import StepAsOne
from rltasks.nets import QNetwork, StackedMLP, aligned_stack
from rltasks.population.members import Members
from rltasks.tasks.dqn import DQN

#: hyperparameters that are not shapes but fix the lockstep (the stacked batch's shape)
LOCKSTEP = ("activation", "batch_size")


def train_epoch(members: list[DQN]) -> list[dict[str, float] | BaseException]:
    """Each member's ``train_epoch``, computed together: the replay loop of
    ``OffPolicyTask.train_epoch`` (choose, env step, due gradient steps, target update),
    one env step of every member at a time."""
    step = Lockstep(members)
    rows: dict[int, list[dict[str, torch.Tensor]]] = {k: [] for k in range(len(members))}
    counts = step.each(lambda k, m: m.begin_collect())
    envs = StepAsOne([m.loader for m in members])
    try:
        for _ in range(max(counts.values(), default=0)):
            actions = step.act()
            if not actions:  # every member is out
                break
            envs.step({k: env_actions for k, (_, env_actions) in actions.items()})
            due = step.each(lambda k, m, a=actions: m.env_step(*a[k]), only=actions)
            for k, done in step.train(due).items():
                rows[k] += done
            step.each(lambda k, m: m.after_env_step(m.env_steps - m.num_envs), only=due)
    finally:
        envs.close()
    return step.results(step.each(lambda k, m: m.end_collect(rows[k])))


class Lockstep(Members):
    """The members of one epoch, their stacked Q and target networks, those that failed."""

    def __init__(self, members: list[DQN]) -> None:
        super().__init__(members)
        self.q = StackedQ([m.q for m in members])
        self.target = StackedQ([m.target for m in members])

    @torch.no_grad()
    def act(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Every member's ``choose`` on its observations; the Q-values its policy asks for
        are its slice of one stacked forward, made the first time one is asked for."""
        stacked: list[torch.Tensor] = []

        def q_of(k: int) -> torch.Tensor:
            if not stacked:
                stacked.append(self.q(aligned_stack([m.tensor(m.obs) for m in self.members])))
            return stacked[0][k]

        return self.each(lambda k, m: m.choose(m.obs, q_of=lambda: q_of(k)))

    def train(self, due: dict[int, int]) -> dict[int, list[dict[str, torch.Tensor]]]:
        """Each member's ``due[k]`` gradient steps (at the lr its schedule says now), the
        i-th steps of every member taken together."""
        rows: dict[int, list[dict[str, torch.Tensor]]] = {k: [] for k in due}
        self.each(lambda k, m: m.set_scheduled_lr(), only={k for k, n in due.items() if n})
        for i in range(max(due.values(), default=0)):
            for k, row in self.train_step({k for k, n in due.items() if n > i}).items():
                rows[k].append(row)
        return rows

    def train_step(self, ks: set[int]) -> dict[int, dict[str, torch.Tensor]]:
        """``DQN.train_step`` of the members ``ks``, with stacked forwards and one backward
        (each member's gradient is its own loss's alone)."""
        batches = self.each(lambda k, m: m.sample(), only=ks)
        if not batches:
            return {}
        fill = next(iter(batches.values()))

        def stack(key: str) -> torch.Tensor:
            return aligned_stack([batches.get(k, fill)[key] for k in range(len(self.members))])

        with torch.no_grad():
            next_obs = stack("next_obs")
            next_q = self.target(next_obs)
            online = (self.q(next_obs) if any(self.members[k].hp["double"] for k in batches)
                      else None)
        targets = self.each(lambda k, m: m.td_target(
            batches[k], next_q[k], None if online is None else online[k]), only=batches)
        q_all = self.q(stack("obs"))
        losses = self.each(lambda k, m: m.td_loss(batches[k], q_all[k], targets[k]),
                           only=targets)
        if not losses:
            return {}
        for k in losses:
            self.members[k].optimizers["opt"].zero_grad(set_to_none=True)
        torch.stack([loss for loss, _ in losses.values()]).sum().backward()
        self.q.scatter_grads()

        self.clip_and_step("opt", only=losses)

        def finish(k: int, m: DQN) -> dict[str, torch.Tensor]:
            m.buffer.update_priorities(batches[k]["indices"], losses[k][1])
            return {"loss": losses[k][0].detach()}

        return self.each(finish, only=losses)


class StackedQ:
    """K members' ``QNetwork``s run as one: the body a ``StackedMLP`` and, with dueling
    heads, the value and advantage heads two more, combined as ``QNetwork`` combines them."""

    def __init__(self, nets: list[QNetwork]) -> None:
        self.dueling = nets[0].dueling
        self.parts = [StackedMLP([n.net for n in nets])]
        if self.dueling:
            self.act = nets[0].act
            self.parts += [StackedMLP([nn.Sequential(n.value) for n in nets]),
                           StackedMLP([nn.Sequential(n.advantage) for n in nets])]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.parts[0](x)
        if not self.dueling:
            return out
        h = self.act(out)
        return QNetwork.combine(self.parts[1](h), self.parts[2](h))

    def scatter_grads(self) -> None:
        for part in self.parts:
            part.scatter_grads()

