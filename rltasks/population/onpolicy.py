"""The lockstep epoch of on-policy members (ppo, a2c, pg) with stacked networks.

Each member's actor and critic become slices of one ``StackedMLP`` (``rltasks.nets``), so
one batched forward serves every member's rollout step and one batched forward and backward
every member's minibatch. Everything member-specific (sampling with the member's generator,
env steps (taken as one vector env where the envs allow it: ``rltasks.envs.StepAsOne``), GAE
with its gamma and lambda, the loss with its coefficients and clip range, the optimizer step
with its lr) runs member by member on the member's own slice, with the task's own methods;
the gradient clipping, each member's with its ``max_grad_norm``, is computed for all at once
(``Members.clip_and_step``). So member k ends with the bits of the same trial run alone
(``tests/test_population.py``).
"""

from __future__ import annotations

import torch

from rltasks.envs import StepAsOne
from rltasks.nets import StackedMLP, aligned_stack
from rltasks.population.members import Members
from rltasks.tasks.onpolicy import OnPolicyTask, add_mean, select

#: hyperparameters that are not shapes but fix the lockstep (minibatch shape, loop counts)
LOCKSTEP = ("activation", "batch_size", "update_epochs")
#: the end of a member's minibatches
DONE = object()


def train_epoch(members: list[OnPolicyTask]) -> list[dict[str, float] | BaseException]:
    """Each member's ``train_epoch``, computed together (stacked anew, as the set of members
    in the lockstep can change between epochs). A member that raises half way is left out of
    the rest of the epoch; its entry is its exception."""
    step = Lockstep(members)
    first = members[0]
    n = first.hp["n_steps"]
    rollouts = first.epoch_steps() // (n * first.num_envs)
    sums: list[dict[str, float]] = [{} for _ in members]
    for _ in range(rollouts):
        for k, metrics in step.update(step.collect(n)).items():
            add_mean(sums[k], metrics, rollouts)
    return step.results(dict(enumerate(sums)))


class Lockstep(Members):
    """The members of one epoch, their stacked actor and critic, and those that failed."""

    def __init__(self, members: list[OnPolicyTask]) -> None:
        super().__init__(members)
        self.actor = StackedMLP([m.actor for m in members])
        self.critic = StackedMLP([m.critic for m in members])

    @torch.no_grad()  # not inference_mode: the update builds its graph on these tensors
    def collect(self, n: int) -> dict[int, dict[str, torch.Tensor]]:
        """Every member's ``collect(n)``, with one stacked forward per step."""
        bufs = self.each(lambda k, m: m.start_rollout(n))
        obs = {k: m.tensor(m.obs) for k, m in enumerate(self.members)}
        envs = StepAsOne([m.loader for m in self.members])
        try:
            for t in range(n):
                x = aligned_stack(list(obs.values()))
                out, value = self.actor(x), self.critic(x).squeeze(-1)
                drawn = self.each(lambda k, m, out=out, value=value: m.draw(out[k], value[k]))
                envs.step(self.each(lambda k, m, d=drawn: m.to_env(d[k][0]), only=drawn))
                obs.update(self.each(lambda k, m, t=t, d=drawn: m.record_step(
                    bufs[k], t, obs[k], *d[k]), only=drawn))
        finally:
            envs.close()
        return self.each(lambda k, m: m.finish_rollout(bufs[k], obs[k]))

    def update(self, batches: dict[int, dict[str, torch.Tensor]]) -> dict[int, dict[str, float]]:
        """Every member's ``update`` on its rollout: the same minibatches, losses and steps,
        with one stacked forward and backward per minibatch."""
        ctxs = self.each(lambda k, m: m.begin_update())
        plans = self.each(lambda k, m: m.minibatches(len(batches[k]["adv"])))
        totals: dict[int, torch.Tensor] = {}
        count = 0
        while True:
            idxs = self.each(lambda k, m: next(plans[k], DONE))
            if not idxs or any(idx is DONE for idx in idxs.values()):
                break
            mbs = {k: select(batches[k], idx) for k, idx in idxs.items()}
            # a member out since its rollout still fills its slice (its rows are not used)
            x = aligned_stack([mbs[k]["obs"] if k in mbs else mbs[next(iter(mbs))]["obs"]
                               for k in range(len(self.members))])
            out, value = self.actor(x), self.critic(x).squeeze(-1)
            losses = self.each(lambda k, m, mbs=mbs, out=out, value=value: m.loss(
                mbs[k], *m.judge(out[k], value[k], mbs[k]["actions"]), ctxs[k]))
            for k, (_, stats) in losses.items():
                totals[k] = totals[k] + stats if k in totals else stats
                self.members[k].optimizers["opt"].zero_grad(set_to_none=True)
            if not losses:
                break  # every member is out
            # each member's gradient is its own loss's alone
            torch.stack([loss for loss, _ in losses.values()]).sum().backward()
            self.actor.scatter_grads()
            self.critic.scatter_grads()
            self.clip_and_step("opt")
            count += 1
        return self.each(lambda k, m: m.end_update(batches[k], totals[k] / count, ctxs[k]))
