"""The lockstep epoch of DQN members (vector observations) with stacked Q-networks.

Each member's Q-network and target network become slices of one ``StackedQ`` each (a
``StackedMLP`` body, ``rltasks.nets``, and dueling heads stacked alike): one stacked forward
gives every member's acting Q-values (computed only when some member's policy needs them, as
a solo run skips it while every env explores), and each gradient step is one stacked forward
of the target network (and, for double DQN, of the online one) on every member's next
observations, one stacked forward and one backward. What draws on a member's random streams
or state runs member by member with the task's own methods: the exploration draws with its
generator, env steps (taken as one vector env where the envs allow it:
``rltasks.envs.StepAsOne``), storing, drawing a batch's indices from its own replay buffer
with its own generator, priorities, target updates with its interval and tau. What is
arithmetic on every member's rows runs once for all: epsilon-greedy's pick of random or
greedy actions (``EpsilonGreedy.pick``), the gathering of the batches (uniform buffers share
one storage, ``StackedReplay``; others are sampled apart and stacked), the TD
targets and losses (``DQN.td_target`` and ``td_loss`` of one member of each ``double`` and
``loss`` kind, on all rows: each row's result is its member's solo bits) and the gradient
clipping and the optimizer steps (``Members.clip_and_step``). So member k ends with the
bits of the same trial run alone (``tests/test_population.py``).

Members share the env settings, the networks' shapes, the buffer's kind and size, the
exploration policy's kind and ``batch_size`` (``lockstep_keys``); they may differ in every
scalar, the replay ratio and ``learning_starts`` included: a member with no gradient step
due fills its slice of the stacked batch with another member's rows, which it does not use.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from rltasks.envs import StepAsOne
from rltasks.explore import EpsilonGreedy
from rltasks.nets import QNetwork, StackedMLP, aligned_stack, aligned_zeros
from rltasks.population.members import Members
from rltasks.tasks.dqn import DQN
from rltasks.tasks.offpolicy import StepLosses

#: hyperparameters that are not shapes but fix the lockstep (the stacked batch's shape)
LOCKSTEP = ("activation", "batch_size")


def train_epoch(members: list[DQN]) -> list[dict[str, float] | BaseException]:
    """Each member's ``train_epoch``, computed together: the replay loop of
    ``OffPolicyTask.train_epoch`` (choose, env step, due gradient steps, target update),
    one env step of every member at a time."""
    step = Lockstep(members)
    rows = {k: StepLosses(m.LOSSES) for k, m in enumerate(members)}
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
                rows[k].extend(done)
            step.update_targets(due)
    finally:
        envs.close()
    return step.results(step.each(lambda k, m: m.end_collect(rows[k])))


class Lockstep(Members):
    """The members of one epoch, their stacked Q and target networks, those that failed."""

    def __init__(self, members: list[DQN]) -> None:
        super().__init__(members)
        self.q = StackedQ([m.q for m in members])
        self.target = StackedQ([m.target for m in members])
        self.replay = StackedReplay.of(members)
        self._q_all: torch.Tensor | None = None
        self._obs: tuple[tuple, torch.Tensor] | None = None  # (layout, buffer)

    @torch.no_grad()
    def act(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Every member's ``choose`` on its observations. Epsilon-greedy members draw their
        own random numbers, then every member's actions are picked at once from one stacked
        forward (made only when some env does not explore); other policies choose member by
        member, on their slice of one stacked forward made the first time one asks."""
        self._q_all = None
        if not isinstance(self.members[0].policy, EpsilonGreedy):  # one kind for all
            return self.each(lambda k, m: m.choose(m.obs, q_of=lambda: self.q_all()[k]))
        chosen = self.each(lambda k, m: m.random_actions() if m.warming_up() else None)
        draws = self.each(lambda k, m: m.policy.draw(m.q_shape, m.env_steps, m.gen),
            only={k for k, a in chosen.items() if a is None})
        if draws:
            explore, random = (torch.stack(d) for d in zip(*draws.values(), strict=True))
            if bool(explore.all()):
                picked = random
            else:
                q = self.q_all()
                picked = EpsilonGreedy.pick(explore, random, q if len(draws) == len(q) else
                                            q[torch.tensor(list(draws), device=q.device)])
            for k, a in zip(draws, picked.cpu().numpy(), strict=True):
                chosen[k] = (a, a)
        return chosen

    def q_all(self) -> torch.Tensor:
        """Every member's Q-values of its observations, from one stacked forward (made once
        an env step)."""
        if self._q_all is None:
            self._q_all = self.q(self.observations())
        return self._q_all

    def observations(self) -> torch.Tensor:
        """Every member's observations as ``aligned_stack`` stacks their tensors; on the CPU
        copied into one buffer kept from step to step (16 tensors made and stacked cost
        ~60 us a step at K = 16; the forward keeps nothing of its input)."""
        first = self.members[0].tensor(self.members[0].obs)
        if first.device.type != "cpu":
            return aligned_stack([m.tensor(m.obs) for m in self.members])
        layout = (first.shape, first.dtype, first.stride())  # what aligned_zeros copies
        if self._obs is None or self._obs[0] != layout:
            self._obs = (layout, aligned_zeros(len(self.members), first))
        buf = self._obs[1]
        rows = buf.numpy()
        for k, m in enumerate(self.members):
            rows[k] = m.obs
        return buf

    def update_targets(self, ks: Any) -> None:
        """Each member's ``after_env_step`` (members ``ks``): the target copies (``tau`` 1)
        that fall due at this step made together, one indexed copy per stacked layer (a
        copy's bits whichever way it is made), any other update member by member."""
        due = self.each(lambda k, m: m.target_due(m.env_steps - m.num_envs), only=ks)
        copies = [k for k, d in due.items() if d and self.members[k].hp["tau"] == 1.0]
        if copies:
            self.target.copy_from(self.q, copies)
        self.each(lambda k, m: m.after_env_step(m.env_steps - m.num_envs),
                  only={k for k, d in due.items() if d and k not in copies})

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
        """``DQN.train_step`` of the members ``ks``: their replay batches stacked, stacked
        forwards, the TD targets and losses of every row at once (by one member of each
        ``double`` and ``loss`` kind), one backward (each member's gradient is its own
        loss's alone)."""
        size, device = len(self.members), self.members[0].device
        if self.replay is not None:  # each member's draw, then one gather for all
            drawn = self.each(lambda k, m: m.buffer.draw(
                m.hp["batch_size"], m.np_rng, m.per_beta_now()), only=ks)
            arrays = {k: {"indices": idx} for k, (idx, _) in drawn.items()}
            b = self.replay.batch(drawn, size, device) if drawn else {}
        else:
            arrays = self.each(lambda k, m: m.buffer.sample_arrays(
                m.hp["batch_size"], m.np_rng, m.per_beta_now()), only=ks)
            b = stacked_batch(arrays, size, device) if arrays else {}
        if not arrays:
            return {}
        with torch.no_grad():
            next_q = self.target(b["next_obs"])
            online = (self.q(b["next_obs"]) if any(self.members[k].hp["double"] for k in arrays)
                      else None)
        q_all = self.q(b["obs"])
        total, losses, errors = self.td(b, q_all, next_q, online, list(arrays))
        if total is None:  # every kind failed
            return {}
        for k in losses:
            self.members[k].optimizers["opt"].zero_grad(set_to_none=True)
        total.backward()
        self.q.scatter_grads()

        self.clip_and_step("opt", only=losses)

        def finish(k: int, m: DQN) -> dict[str, torch.Tensor]:
            m.buffer.update_priorities(torch.from_numpy(arrays[k]["indices"]), errors[k])
            return {"loss": losses[k]}

        return self.each(finish, only=losses)

    def td(self, b: dict[str, torch.Tensor], q_all: torch.Tensor, next_q: torch.Tensor,
           online: torch.Tensor | None, ks: list[int]
           ) -> tuple[torch.Tensor | None, dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """(the sum of the members' losses, each one's loss, each one's TD errors): every
        row's by ``td_target`` and ``td_loss`` of one member of each kind (a row's result is
        its solo run's bits); a kind that fails takes its members out."""
        kinds: dict[tuple[bool, str], list[int]] = {}
        for k in ks:
            kinds.setdefault((self.members[k].hp["double"], self.members[k].hp["loss"]),
                             []).append(k)
        parts, losses, errors = [], {}, {}
        for group in kinds.values():
            m = self.members[group[0]]
            try:
                with torch.no_grad():
                    target = m.td_target(b, next_q, online)
                loss, error = m.td_loss(b, q_all, target)
            except Exception as err:  # the members of this kind are out, not the others
                self.failed.update(dict.fromkeys(group, err))
                continue
            parts.append(loss[torch.tensor(group, device=loss.device)].sum())
            rows, error_rows = loss.detach().unbind(), error.unbind()
            for k in group:
                losses[k], errors[k] = rows[k], error_rows[k]
        return (torch.stack(parts).sum() if parts else None), losses, errors


def stacked_batch(arrays: dict[int, dict[str, np.ndarray]], size: int, device: torch.device
                  ) -> dict[str, torch.Tensor]:
    """The members' replay batches (numpy, by member index) as ``[size, ...]`` tensors on
    ``device``, laid out as ``aligned_stack`` lays them; the rows of a member without a batch
    hold another member's, which it does not use."""
    fill = next(iter(arrays.values()))
    out = {}
    for key, first in fill.items():
        if key == "indices":
            continue
        stacked = aligned_zeros(size, torch.from_numpy(first))
        rows = stacked.numpy()
        for k in range(size):
            rows[k] = arrays.get(k, fill)[key]
        out[key] = stacked.to(device)
    return out


class StackedReplay:
    """The members' uniform replay buffers held in one array per field, ``[K, capacity,
    ...]``, each buffer using its slice (``ReplayBuffer.use_arrays``), so that one fancy
    index gathers every member's batch where ``sample_arrays`` gathered member by member
    (the same rows: each member still draws its indices with its own generator). The
    storage outlives the epoch: the next epoch's lockstep of the same members finds its
    buffers on it and copies nothing."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        #: the batch's CPU tensors by field, kept from step to step (a step's batch is done
        #: with before the next is drawn: its graph is freed by the backward)
        self._out: dict[str, torch.Tensor] = {}

    @classmethod
    def of(cls, members: list[DQN]) -> StackedReplay | None:
        """The members' shared storage (made, with their transitions copied in, unless they
        already use one, in this order); None unless every buffer is a plain
        ``ReplayBuffer`` of two observation arrays, all of one layout."""
        own = [m.buffer.arrays() for m in members]
        if any(a is None for a in own):
            return None
        arrays: list[dict[str, np.ndarray]] = own  # type: ignore[assignment]
        if len({tuple((k, v.shape, v.dtype) for k, v in a.items()) for a in arrays}) != 1:
            return None
        bases = {key: array.base for key, array in arrays[0].items()}
        if all(isinstance(base, np.ndarray) and len(base) == len(members) and all(
                a[key].base is base and a[key].ctypes.data == base[k].ctypes.data
                for k, a in enumerate(arrays)) for key, base in bases.items()):
            return cls(bases)  # type: ignore[arg-type]
        stacked = {key: np.zeros((len(members), *a.shape), a.dtype)
                   for key, a in arrays[0].items()}
        for k, m in enumerate(members):
            m.buffer.use_arrays({key: array[k] for key, array in stacked.items()})
        return cls(stacked)

    def batch(self, drawn: dict[int, tuple[np.ndarray, np.ndarray]], size: int,
              device: torch.device) -> dict[str, torch.Tensor]:
        """``stacked_batch`` of the rows ``drawn`` (member k's indices and weights; a
        member without a draw fills its slice with another's rows), gathered at once."""
        fill = next(iter(drawn))
        ks = [k if k in drawn else fill for k in range(size)]
        capacity = len(self.arrays["obs"][0])
        # row i of member k is row k * capacity + i of the storage seen as one array
        flat = np.stack([drawn[k][0] + k * capacity for k in ks])
        out = {}
        for key, array in self.arrays.items():
            whole = array.reshape(-1, *array.shape[2:])
            stacked = self.buffer(key, (size, flat.shape[1], *array.shape[2:]), array.dtype)
            np.take(whole, flat, axis=0, out=stacked.numpy())
            out[key] = stacked.to(device)
        first = drawn[fill][1]
        weights = self.buffer("weights", (size, *first.shape), first.dtype)
        weights.numpy()[...] = np.stack([drawn[k][1] for k in ks])
        return {**out, "weights": weights.to(device)}

    def buffer(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
        """Field ``key``'s ``aligned_zeros`` of ``shape`` (C-ordered rows, as a gather makes
        them), kept from step to step."""
        kept = self._out.get(key)
        if kept is None or kept.shape != shape or kept.numpy().dtype != dtype:
            like = torch.from_numpy(np.empty(shape[1:], dtype))
            kept = self._out[key] = aligned_zeros(shape[0], like)
        return kept


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

    def copy_from(self, source: StackedQ, ks: list[int]) -> None:
        """Members ``ks``' parameters set to ``source``'s (a target network's hard update)."""
        for part, other in zip(self.parts, source.parts, strict=True):
            part.copy_from(other, ks)

