"""K members of one on-policy task (ppo, a2c, pg) trained in lockstep with stacked networks.

A member is an ordinary task (``make_task(...).init(**hparams)``): its own loader, seed,
generator, optimizer, schedules, counters, history and observers, so its checkpoint is a
solo run's. The population only changes where the arithmetic happens: each member's actor
and critic become slices of one ``StackedMLP`` (``rltasks.nets``), so one batched forward
serves every member's rollout step and one batched forward and backward every member's
minibatch. Everything member-specific (sampling with the member's generator, env steps,
GAE with its gamma and lambda, the loss with its coefficients and clip range, gradient
clipping, the optimizer step with its lr) runs member by member on the member's own slice,
with the task's own methods, so member k ends with the bits of the same trial run alone
(``tests/test_population.py``).

Members share what fixes a shape or the lockstep (``lockstep_keys``: the env, num_envs,
steps per epoch, network sizes and activation, n_steps, batch size, update epochs) and may
differ in seed and in every other hyperparameter, the optimizer's family included. A member
that diverges, fails or stops early leaves the lockstep: the others are restacked and go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from rltasks.device import cpu_numerics
from rltasks.envs.images import is_image_space
from rltasks.nets import StackedMLP, aligned_stack
from rltasks.tasks.onpolicy import OnPolicyTask, add_mean, select

#: the loader settings every member must share (``Task.fixed``)
SHARED_FIXED = ("env", "num_envs", "steps_per_epoch", "horizon", "vectorization",
                "norm_obs", "norm_reward", "env_kwargs")
#: hyperparameters that are not shapes but fix the lockstep (minibatch shape, loop counts)
LOCKSTEP = ("activation", "batch_size", "update_epochs")
#: the end of a member's minibatches
DONE = object()


def lockstep_keys(task: OnPolicyTask) -> list[str]:
    """The hyperparameters members of ``task``'s kind must share."""
    specs = task.hparam_specs()
    return sorted(k for k, spec in specs.items() if spec.shape or k in LOCKSTEP)


class Population:
    """K on-policy members (PPO, A2C, REINFORCE) on vector observations, trained together.

    ``fit(epochs)`` trains every member to ``epochs``, as each member's own ``fit`` would;
    ``members[k]`` is then the task a solo run of member k's settings ends as.
    ``errors`` maps the index of each member that broke to its exception.
    """

    def __init__(self, members: Sequence[OnPolicyTask]) -> None:
        self.members = list(members)
        check_members(self.members)
        self.errors: dict[int, BaseException] = {}

    def fit(self, epochs: int) -> list[list[dict[str, Any]]]:
        """Train every member until its ``epoch == epochs`` (or its early stop); each
        member's history."""
        if int(epochs) != epochs or epochs < 0:
            raise ValueError(f"epochs={epochs!r} must be a non-negative integer")
        for m in self.members:
            m._guard()  # a poisoned member (BadResume) is not trained on
        with cpu_numerics():
            self._catch_up()
            active = self._active(epochs)
            while active:
                for k in active:
                    self._guarded(k, self.members[k].begin_epoch)
                active = [k for k in active if k not in self.errors]
                try:
                    metrics = self.train_epoch([self.members[k] for k in active])
                except BaseException as err:  # half an epoch: no member can go on
                    for k in active:
                        self.members[k].poison(err)
                    raise
                for k, row in zip(active, metrics, strict=True):
                    if isinstance(row, BaseException):
                        self.members[k].poison(row)
                        self.errors[k] = row
                    else:
                        self._guarded(k, self.members[k].end_epoch, row)
                active = self._active(epochs)
        return [m.history for m in self.members]

    def _catch_up(self) -> None:
        """Members resumed from different epochs: the laggards train alone up to the others
        (a population killed while its members wrote their checkpoints resumes so)."""
        top = max(m.epoch for m in self.members)
        for k, m in enumerate(self.members):
            if m.epoch < top and m.stop_reason is None:
                self._guarded(k, m.fit, top)

    def _active(self, epochs: int) -> list[int]:
        return [k for k, m in enumerate(self.members) if k not in self.errors
                and m.epoch < epochs and m.stop_reason is None]

    def _guarded(self, k: int, step: Any, *args: Any) -> None:
        """Run a member's step; an exception takes the member out (poisoned, as its solo run
        would be) and leaves the others to go on."""
        try:
            step(*args)
        except Exception as err:  # one member's NaN or failure must not stop the others
            self.members[k].poison(err)
            self.errors[k] = err

    # -- one epoch in lockstep ---------------------------------------------------------------
    def train_epoch(self, members: list[OnPolicyTask]
                    ) -> list[dict[str, float] | BaseException]:
        """Each member's ``train_epoch``, computed together (stacked anew, as the set of
        members in the lockstep can change between epochs). A member that raises half way
        is left out of the rest of the epoch; its entry is its exception, which ``fit``
        records in ``errors`` for that member alone."""
        if not members:
            return []
        step = Lockstep(members)
        first = members[0]
        n = first.hp["n_steps"]
        rollouts = first.epoch_steps() // (n * first.num_envs)
        sums: list[dict[str, float]] = [{} for _ in members]
        for _ in range(rollouts):
            for k, metrics in step.update(step.collect(n)).items():
                add_mean(sums[k], metrics, rollouts)
        return [step.failed.get(k, sums[k]) for k in range(len(members))]


class Lockstep:
    """The members of one epoch, their stacked actor and critic, and those that failed."""

    def __init__(self, members: list[OnPolicyTask]) -> None:
        self.members = members
        self.actor = StackedMLP([m.actor for m in members])
        self.critic = StackedMLP([m.critic for m in members])
        self.failed: dict[int, BaseException] = {}

    def each(self, call: Callable[[int, OnPolicyTask], Any]) -> dict[int, Any]:
        """``call(k, member)`` for every member still in, by index; one that raises is out."""
        out = {}
        for k, m in enumerate(self.members):
            if k in self.failed:
                continue
            try:
                out[k] = call(k, m)
            except Exception as err:  # one member's failure must not stop the others
                self.failed[k] = err
        return out

    @torch.no_grad()  # not inference_mode: the update builds its graph on these tensors
    def collect(self, n: int) -> dict[int, dict[str, torch.Tensor]]:
        """Every member's ``collect(n)``, with one stacked forward per step."""
        bufs = self.each(lambda k, m: m.start_rollout(n))
        obs = {k: m.tensor(m.obs) for k, m in enumerate(self.members)}
        for t in range(n):
            x = aligned_stack(list(obs.values()))
            out, value = self.actor(x), self.critic(x).squeeze(-1)
            obs.update(self.each(lambda k, m, t=t, out=out, value=value: m.record_step(
                bufs[k], t, obs[k], *m.draw(out[k], value[k]))))
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
            self.each(lambda k, m: m.clip_and_step("opt", clip=m.params))
            count += 1
        return self.each(lambda k, m: m.end_update(batches[k], totals[k] / count, ctxs[k]))


class CannotJoin(ValueError):
    """The task or its env cannot train in a population (its trials train alone)."""


def lockstep_group(task: Any) -> tuple[str, ...] | None:
    """What ``task`` shares with every other member of a population it joins (its kind,
    device, env settings and ``lockstep_keys``), or None when it cannot join one."""
    try:
        check_members([task])
    except CannotJoin:
        return None
    return (task.name, str(task.device), *(repr(task.fixed.get(k)) for k in SHARED_FIXED),
            *(f"{k}={task.hp.get(k)!r}" for k in lockstep_keys(task)))


def check_members(members: list[OnPolicyTask]) -> None:
    """Refuse, in one line, members that cannot train in lockstep."""
    if not members:
        raise ValueError("a population needs at least one member")
    first = members[0]
    if not isinstance(first, OnPolicyTask):
        raise CannotJoin(f"task {first.name!r} cannot join a population; ppo, a2c and pg can")
    if is_image_space(first.observation_space):
        raise CannotJoin("a population trains MLP members on vector observations; "
                         f"{first.env_id} has images: train its trials alone")
    for m in members:
        if type(m) is not type(first):
            raise ValueError(f"a population holds one task; got {first.name!r} and {m.name!r}")
        if not m.hp:
            raise ValueError("call init() on every member before building the population")
        if m.device != first.device:
            raise ValueError(f"population members run on one device; got {first.device} and "
                             f"{m.device}")
        for key in SHARED_FIXED:
            if m.fixed.get(key) != first.fixed.get(key):
                raise ValueError(f"population members differ in {key} ({first.fixed.get(key)!r} "
                                 f"and {m.fixed.get(key)!r}); members share it")
        for key in lockstep_keys(first):
            if m.hp.get(key) != first.hp.get(key):
                raise ValueError(f"population members differ in {key} ({first.hp.get(key)!r} "
                                 f"and {m.hp.get(key)!r}), which fixes the networks' shapes or "
                                 "the lockstep; group trials by it")
