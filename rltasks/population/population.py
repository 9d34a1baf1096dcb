"""K members of one task trained in lockstep with stacked networks.

A member is an ordinary task (``make_task(...).init(**hparams)``): its own loader, seed,
generator, optimizer, schedules, counters, history and observers, so its checkpoint is a
solo run's. The population only changes where the arithmetic happens: its kind's lockstep
(``onpolicy`` for ppo, a2c and pg; ``replay`` for dqn) stacks the members' networks and runs
each epoch's forwards and backwards for every member at once, and everything
member-specific member by member, so member k ends with the bits of the same trial run
alone (``tests/test_population.py``).

Members share what fixes a shape or the lockstep (``lockstep_keys``: the env, num_envs,
steps per epoch, network sizes and activation, and the kind's own: n_steps, batch size,
update epochs for on-policy; batch size, buffer and exploration kinds for dqn) and may
differ in seed and in every other hyperparameter, the optimizer's family included. A member
that diverges, fails or stops early leaves the lockstep: the others are restacked and go on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from rltasks.device import cpu_numerics
from rltasks.envs.images import is_image_space
from rltasks.population import onpolicy, replay
from rltasks.task import Task
from rltasks.tasks.dqn import DQN
from rltasks.tasks.onpolicy import OnPolicyTask

#: the loader settings every member must share (``Task.fixed``)
SHARED_FIXED = ("env", "num_envs", "steps_per_epoch", "horizon", "vectorization",
                "norm_obs", "norm_reward", "env_kwargs")


class Population:
    """K members of one task (PPO, A2C, REINFORCE, DQN) on vector observations, trained
    together.

    ``fit(epochs)`` trains every member to ``epochs``, as each member's own ``fit`` would;
    ``members[k]`` is then the task a solo run of member k's settings ends as.
    ``errors`` maps the index of each member that broke to its exception. A population of
    one, or the last member left in one, trains by its own ``fit`` (a solo run, with no
    stacking to pay for).
    """

    def __init__(self, members: Sequence[Task]) -> None:
        self.members = list(members)
        check_members(self.members)
        self.errors: dict[int, BaseException] = {}

    def fit(self, epochs: int,
            epoch_end: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
            ) -> list[list[dict[str, Any]]]:
        """Train every member until its ``epoch == epochs`` (or its early stop); each
        member's history. The members' ends of an epoch (their observers) run inside
        ``epoch_end()``: a trial's ``StopSignals.held``, so that a signal stops every member
        at the same epoch end."""
        if int(epochs) != epochs or epochs < 0:
            raise ValueError(f"epochs={epochs!r} must be a non-negative integer")
        for m in self.members:
            m._guard()  # a poisoned member (BadResume) is not trained on
        with cpu_numerics():
            self._catch_up()
            active = self._active(epochs)
            while len(active) > 1:
                for k in active:
                    self._guarded(k, self.members[k].begin_epoch)
                active = [k for k in active if k not in self.errors]
                try:
                    metrics = self.train_epoch([self.members[k] for k in active])
                except BaseException as err:  # half an epoch: no member can go on
                    for k in active:
                        self.members[k].poison(err)
                    raise
                with epoch_end():
                    self._end_epoch(active, metrics)
                active = self._active(epochs)
            for k in active:  # one member left (or from the start): its own solo fit
                self._guarded(k, self.members[k].fit, epochs)
        return [m.history for m in self.members]

    def _end_epoch(self, active: list[int], metrics: list[Any]) -> None:
        for k, row in zip(active, metrics, strict=True):
            if isinstance(row, BaseException):
                self.members[k].poison(row)
                self.errors[k] = row
            else:
                self._guarded(k, self.members[k].end_epoch, row)

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
    def train_epoch(self, members: list[Task]) -> list[dict[str, float] | BaseException]:
        """Each member's ``train_epoch``, computed together by its kind's lockstep (stacked
        anew, as the set of members in the lockstep can change between epochs). A member that
        raises half way is left out of the rest of the epoch; its entry is its exception,
        which ``fit`` records in ``errors`` for that member alone."""
        if not members:
            return []
        return kind_of(members[0]).train_epoch(members)


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


#: the task classes that join populations and their lockstep modules
KINDS: tuple[tuple[type[Task], Any], ...] = ((OnPolicyTask, onpolicy), (DQN, replay))


def joins(task_class: type[Task]) -> bool:
    """Whether tasks of this class can join a population (their env and settings are checked
    when the members are built: ``check_members``)."""
    return any(issubclass(task_class, cls) for cls, _ in KINDS)


def kind_of(task: Task) -> Any:
    """The lockstep module of ``task``'s kind (``onpolicy`` or ``replay``); ``CannotJoin``
    for a task or an env that has none."""
    for cls, module in KINDS:
        if isinstance(task, cls):
            return module
    raise CannotJoin(f"task {task.name!r} cannot join a population; ppo, a2c, pg and dqn can")


def lockstep_keys(task: Task) -> list[str]:
    """The hyperparameters members of ``task``'s kind must share."""
    specs, extra = task.hparam_specs(), kind_of(task).LOCKSTEP
    return sorted(k for k, spec in specs.items() if spec.shape or k in extra)


def check_members(members: list[Task]) -> None:
    """Refuse, in one line, members that cannot train in lockstep."""
    if not members:
        raise ValueError("a population needs at least one member")
    first = members[0]
    if any(not m.hp for m in members):
        raise ValueError("call init() on every member before building the population")
    kind_of(first)
    if is_image_space(first.observation_space):
        raise CannotJoin("a population trains MLP members on vector observations; "
                         f"{first.env_id} has images: train its trials alone")
    for m in members:
        if type(m) is not type(first):
            raise ValueError(f"a population holds one task; got {first.name!r} and {m.name!r}")
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
