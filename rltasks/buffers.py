"""Buffers: what a task fills from the env loader and its update reads.

- ``RolloutBuffer``: on-policy rollouts with GAE (PPO, A2C, REINFORCE).
- ``ReplayBuffer``: uniform experience replay with optional n-step returns (DQN...).
- ``PrioritizedReplayBuffer``: proportional prioritized replay over a ``SumTree``
  (Schaul et al. 2016): priorities ``p**alpha``, importance weights with ``beta``, new
  transitions at the maximum priority.
- ``HerReplayBuffer``: hindsight experience replay for goal-conditioned envs.

Every replay buffer takes the env's observations as they come: a goal env's dict
observations are stored flat, ``[observation, desired_goal]`` (``goal_obs``), by the plain
buffers, and kept apart until the episode ends by the hindsight one, which relabels the
goals. So the replay loop stores every step the same way, whichever buffer the task chose.

Every buffer's contents are part of the task state (``state_dict``), and sampling draws from
the generator the task passes in, so a resumed run samples exactly what an uninterrupted one
would. A rollout lives on the task's device; a replay buffer keeps its storage in numpy on the
CPU (its state is the same on every device) and hands out its sampled batches on ``device``.
"""

from __future__ import annotations

import hashlib
import heapq
import mmap
import sys
from typing import Any

import numpy as np
import torch


class RolloutBuffer:
    """``n_steps x num_envs`` on-policy transitions and their GAE advantages, on ``device``;
    observations of ``obs_dtype`` (uint8 frames for images)."""

    def __init__(self, n_steps: int, num_envs: int, obs_shape: tuple[int, ...],
                 act_shape: tuple[int, ...], discrete: bool,
                 device: torch.device | str = "cpu", obs_dtype: torch.dtype = torch.float32
                 ) -> None:
        n, m = n_steps, num_envs
        self.n_steps, self.num_envs, self.device = n, m, torch.device(device)

        def zeros(*shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=self.device)

        self.obs = zeros(n, m, *obs_shape, dtype=obs_dtype)  # uint8 for images
        self.actions = zeros(n, m, *act_shape, dtype=torch.long if discrete else None)
        self.logp, self.rewards = zeros(n, m), zeros(n, m)
        self.values, self.dones = zeros(n, m), zeros(n, m)
        self.adv, self.returns = zeros(n, m), zeros(n, m)

    def add(self, t: int, obs: torch.Tensor, action: torch.Tensor, logp: torch.Tensor,
            reward: torch.Tensor, value: torch.Tensor, done: torch.Tensor) -> None:
        """Store step ``t``; ``done`` marks the end of an episode (terminal or truncated)."""
        self.obs[t], self.actions[t], self.logp[t] = obs, action, logp
        self.rewards[t], self.values[t], self.dones[t] = reward, value, done

    def compute_gae(self, next_value: torch.Tensor, gamma: float, gae_lambda: float) -> None:
        """Generalised advantage estimation; the rollout's end bootstraps from ``next_value``.

        A truncated episode's bootstrap is already folded into its last reward, so every
        ``done`` cuts the recursion. ``gae_lambda=1`` gives Monte-Carlo returns-to-go minus
        the baseline (REINFORCE); ``gae_lambda=0`` one-step TD.
        """
        last = torch.zeros(self.num_envs, device=self.device)
        for t in reversed(range(self.n_steps)):
            nonterminal = 1.0 - self.dones[t]
            nv = next_value if t == self.n_steps - 1 else self.values[t + 1]
            delta = self.rewards[t] + gamma * nv * nonterminal - self.values[t]
            last = delta + gamma * gae_lambda * nonterminal * last
            self.adv[t] = last
        self.returns = self.adv + self.values

    def flat(self) -> dict[str, torch.Tensor]:
        """The rollout as flat ``(n_steps * num_envs, ...)`` tensors."""
        return {"obs": self.obs.flatten(0, 1), "actions": self.actions.flatten(0, 1),
                "logp": self.logp.flatten(), "values": self.values.flatten(),
                "adv": self.adv.flatten(), "returns": self.returns.flatten()}


def goal_obs(obs: dict[str, np.ndarray], goal: np.ndarray | None = None) -> np.ndarray:
    """A goal env's observations as the networks see them: ``[observation, goal]`` (the
    desired goal unless another is given)."""
    goal = obs["desired_goal"] if goal is None else goal
    return np.concatenate([obs["observation"], goal], -1).astype(np.float32)


def flat_obs(obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
    """Observations as arrays: a goal env's dicts flattened (``goal_obs``), others as they are."""
    return goal_obs(obs) if isinstance(obs, dict) else obs


class ReplayBuffer:
    """A ring buffer of transitions ``(obs, action, return, discount, next_obs)``.

    With ``n_step > 1`` the stored return sums ``n`` discounted rewards and ``discount`` is
    ``gamma**k`` (``k <= n`` steps actually taken), or 0 after a terminal state, so every
    update uses the target ``return + discount * Q(next_obs)``. ``flush`` ends the pending
    n-step windows at an epoch boundary as a truncation (the envs are reset there, or, with
    env-state snapshots, their episodes go on while the windows restart). The storage
    is numpy on the CPU; ``sample`` returns its batch as tensors on ``device``.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], act_shape: tuple[int, ...],
                 act_dtype: Any, num_envs: int, n_step: int = 1, gamma: float = 0.99,
                 obs_dtype: Any = np.float32, reward_shape: tuple[int, ...] = (),
                 device: torch.device | str = "cpu", frames: int | None = None) -> None:
        if n_step > 1 and reward_shape:
            raise ValueError("n-step returns need scalar rewards")
        self.capacity, self.n_step, self.gamma, self.num_envs = capacity, n_step, gamma, num_envs
        self.device = torch.device(device)
        #: the observations and next observations: two arrays, or with ``frames`` (images of
        #: that many stacked frames) each distinct frame once
        self.store: ObsArrays | SharedFrames = (
            ObsArrays(capacity, obs_shape, obs_dtype) if frames is None
            else SharedFrames(capacity, obs_shape, obs_dtype, frames))
        self.actions = np.zeros((capacity, *act_shape), act_dtype)
        self.returns = np.zeros((capacity, *reward_shape), np.float32)  # one per agent: (n,)
        self.discounts = np.zeros(capacity, np.float32)
        self.pos, self.size = 0, 0
        self._pending: list[list[tuple[np.ndarray, np.ndarray, float]]] = [
            [] for _ in range(num_envs)]

    def __len__(self) -> int:
        return self.size

    def arrays(self) -> dict[str, np.ndarray] | None:
        """The arrays that hold the transitions, each ``[capacity, ...]``, by name; None
        where the observations are not two plain arrays (shared frames) or a subclass keeps
        more per transition (priorities, episodes)."""
        if type(self) is not ReplayBuffer or not isinstance(self.store, ObsArrays):
            return None
        return {"obs": self.store.obs, "next_obs": self.store.next_obs,
                "actions": self.actions, "returns": self.returns, "discounts": self.discounts}

    def use_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Hold the transitions in ``arrays`` from now on (shaped as ``arrays()``'s: e.g. this
        buffer's slice of a population's stacked storage, ``rltasks.population.replay``), with
        what is held now copied in (the rows filled so far only: a fresh storage's pages stay
        unwritten until transitions fill them, as this buffer's own did)."""
        own = self.arrays()
        if own is None or {k: (v.shape, v.dtype) for k, v in own.items()} != {
                k: (v.shape, v.dtype) for k, v in arrays.items()}:
            raise ValueError("use_arrays needs arrays shaped as this buffer's own arrays()")
        for key, array in arrays.items():
            array[:self.size] = own[key][:self.size]
        self.store.obs, self.store.next_obs = arrays["obs"], arrays["next_obs"]
        self.actions, self.returns = arrays["actions"], arrays["returns"]
        self.discounts = arrays["discounts"]

    @property
    def obs(self) -> np.ndarray:
        """The stored observations (two-array storage only, as the vector tasks use)."""
        return self.store.obs

    @property
    def next_obs(self) -> np.ndarray:
        return self.store.next_obs

    def add(self, obs: np.ndarray | dict[str, np.ndarray], actions: np.ndarray,
            rewards: np.ndarray, next_obs: np.ndarray | dict[str, np.ndarray],
            terminated: np.ndarray, done: np.ndarray) -> None:
        """Add one vectorized step. ``next_obs`` must be the real final observation for envs
        that finished; ``done`` is terminated or truncated. A goal env's dict observations
        are stored flat (``flat_obs``)."""
        obs, next_obs = flat_obs(obs), flat_obs(next_obs)
        if self.n_step == 1:
            self._store(obs, actions, rewards.astype(np.float32),
                        np.where(terminated, 0.0, self.gamma).astype(np.float32), next_obs)
            return
        for i in range(self.num_envs):
            window = self._pending[i]
            # copies: the caller may reuse its arrays in place while the window is pending
            window.append((np.array(obs[i]), np.array(actions[i]), float(rewards[i])))
            if done[i]:
                self._emit(i, next_obs[i], bool(terminated[i]), all_=True)
            elif len(window) == self.n_step:
                self._emit(i, next_obs[i], False, all_=False)

    def flush(self, next_obs: np.ndarray | dict[str, np.ndarray]) -> None:
        """Emit every pending n-step window as truncated at ``next_obs`` (an epoch boundary)."""
        next_obs = flat_obs(next_obs)
        for i in range(self.num_envs):
            if self._pending[i]:
                self._emit(i, next_obs[i], False, all_=True)

    def _emit(self, i: int, next_obs: np.ndarray, terminated: bool, all_: bool) -> None:
        window = self._pending[i]
        while window:
            ret, disc = 0.0, 1.0
            for _, _, r in window:
                ret += disc * r
                disc *= self.gamma
            o, a, _ = window.pop(0)
            self._store(o[None], np.asarray(a)[None], np.array([ret], np.float32),
                        np.array([0.0 if terminated else disc], np.float32), next_obs[None])
            if not all_:
                break

    def _store(self, obs: np.ndarray, actions: np.ndarray, returns: np.ndarray,
               discounts: np.ndarray, next_obs: np.ndarray) -> None:
        n = len(obs)
        idx = (self.pos + np.arange(n)) % self.capacity
        self.store.put(idx, obs, next_obs)
        self.actions[idx] = actions
        self.returns[idx], self.discounts[idx] = returns, discounts
        self._on_store(idx)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))

    def _on_store(self, idx: np.ndarray) -> None:
        """Hook for subclasses (priorities of new transitions)."""

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0
               ) -> dict[str, torch.Tensor]:
        """A batch (``sample_arrays``'s) as tensors on ``device``."""
        return {key: torch.from_numpy(value).to(self.device)
                for key, value in self.sample_arrays(batch_size, rng, beta).items()}

    def sample_arrays(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0
                      ) -> dict[str, np.ndarray]:
        """A batch of transitions gathered on the CPU (``draw``'s), as numpy arrays: what a
        population stacks for its members before moving them to the device at once."""
        idx, weights = self.draw(batch_size, rng, beta)
        obs, next_obs = self.store.get(idx)
        return {"obs": obs, "actions": self.actions[idx],
                "returns": self.returns[idx], "discounts": self.discounts[idx],
                "next_obs": next_obs, "weights": weights, "indices": idx}

    def draw(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0
             ) -> tuple[np.ndarray, np.ndarray]:
        """A batch's indices and importance weights: uniform, with unit weights."""
        return rng.integers(0, self.size, batch_size), np.ones(batch_size, np.float32)

    def update_priorities(self, indices: torch.Tensor, td_errors: torch.Tensor) -> None:
        """No-op for uniform replay (prioritized replay overrides it)."""

    def state_dict(self) -> dict[str, Any]:
        """The transitions held, as views of the buffer's own arrays (a checkpoint streams
        them to its file, no copy built): valid until the buffer next changes, so copy it
        to keep it across training."""
        if any(self._pending):
            raise RuntimeError("flush() the pending n-step windows before saving the buffer")
        n = self.size
        return {**self.store.state_dict(n),
                "actions": self.actions[:n], "returns": self.returns[:n],
                "discounts": self.discounts[:n], "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n, pos = int(state["size"]), int(state["pos"])
        if not 0 <= n <= self.capacity or not 0 <= pos < max(self.capacity, 1):
            raise ValueError(f"checkpoint buffer holds {n} transitions at {pos}; capacity "
                             f"{self.capacity}")
        for key in ("actions", "returns", "discounts"):
            check_shape(state, key, (n, *getattr(self, key).shape[1:]))
        self.store.load_state_dict(state, n)
        for key in ("actions", "returns", "discounts"):
            getattr(self, key)[:n] = state[key]
        self.pos, self.size = pos, n
        self._pending = [[] for _ in range(self.num_envs)]


def check_shape(state: dict[str, Any], key: str, want: tuple[int, ...]) -> None:
    """A one-line error unless the checkpoint's ``state[key]`` has shape ``want`` (assigning
    it would broadcast it)."""
    if np.shape(state[key]) != want:
        raise ValueError(f"checkpoint buffer {key} has shape {list(np.shape(state[key]))}, "
                         f"not {list(want)}")


class ObsArrays:
    """A replay buffer's observations and next observations as two arrays."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], dtype: Any) -> None:
        self.obs = np.zeros((capacity, *obs_shape), dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype)

    def put(self, idx: np.ndarray, obs: np.ndarray, next_obs: np.ndarray) -> None:
        self.obs[idx], self.next_obs[idx] = obs, next_obs

    def get(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.obs[idx], self.next_obs[idx]

    def nbytes(self) -> int:
        return self.obs.nbytes + self.next_obs.nbytes

    def state_dict(self, n: int) -> dict[str, Any]:
        return {"obs": self.obs[:n], "next_obs": self.next_obs[:n]}

    def load_state_dict(self, state: dict[str, Any], n: int) -> None:
        for key in ("obs", "next_obs"):
            check_shape(state, key, (n, *getattr(self, key).shape[1:]))
        self.obs[:n], self.next_obs[:n] = state["obs"], state["next_obs"]


def lazy_zeros(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A zero array whose memory the OS provides as it is written: on Linux an anonymous
    mapping without swap reservation, so reserving a worst case larger than the machine's
    memory is not refused (numpy's zeros are lazy too, but counted against it)."""
    count = int(np.prod(shape))
    if sys.platform != "linux" or count == 0:
        return np.zeros(shape, dtype)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000  # MAP_NORESERVE
    buf = mmap.mmap(-1, count * np.dtype(dtype).itemsize, flags=flags)
    return np.frombuffer(buf, dtype, count=count).reshape(shape)


class SharedFrames:
    """Observations of ``frames`` stacked images, each distinct frame stored once.

    Consecutive observations of a frame stack share all but one frame, and a transition's
    next observation is the next transition's observation: storing both stacks whole costs
    ``2 * frames`` frames a transition (8 on Atari, 56 KB), where one is new. Here a
    transition holds ``2 * frames`` indices into a pool of frames, each frame interned by its
    content (a SHA-1 digest, confirmed byte for byte) and counted by the transitions that
    use it; a frame no transition uses frees its slot. So memory is the distinct frames of
    the transitions held (about one a transition on Atari) plus 64 bytes of indices, with no
    assumption about how the env stacks frames at resets. The pool reserves address space for
    the worst case (every frame distinct), which the OS maps only as it is written.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], dtype: Any,
                 frames: int) -> None:
        self.k = frames
        self.frame_shape = (obs_shape[0] // frames, *obs_shape[1:])
        self.obs_shape = obs_shape
        self.refs = np.full((capacity, 2, frames), -1, np.int64)  # obs, next_obs
        self.pool = lazy_zeros((2 * capacity * frames, *self.frame_shape), dtype)
        self.counts = np.zeros(len(self.pool), np.int32)
        self.digests: list[bytes | None] = [None] * len(self.pool)
        self.index: dict[bytes, int] = {}
        self.free: list[int] = []  # a heap: the lowest free slot first, so that a resumed
        self.high = 0  # buffer fills the same slots; ``high``: slots ever used

    def put(self, idx: np.ndarray, obs: np.ndarray, next_obs: np.ndarray) -> None:
        for which, batch in ((0, obs), (1, next_obs)):
            stacks = np.asarray(batch).reshape(len(idx), self.k, *self.frame_shape)
            for row, i in zip(stacks, idx, strict=True):
                new = [self._intern(frame) for frame in row]  # before releasing: shared
                self._release(self.refs[i, which])
                self.refs[i, which] = new

    def get(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(idx)
        return (self.pool[self.refs[idx, 0]].reshape(n, *self.obs_shape),
                self.pool[self.refs[idx, 1]].reshape(n, *self.obs_shape))

    def nbytes(self) -> int:
        """Bytes in use: the written frames and the indices."""
        return self.high * self.pool[0].nbytes + self.refs.nbytes

    def _intern(self, frame: np.ndarray) -> int:
        digest = hashlib.sha1(np.ascontiguousarray(frame)).digest()
        slot = self.index.get(digest)
        if slot is None or not np.array_equal(self.pool[slot], frame):
            slot = heapq.heappop(self.free) if self.free else self._grow()
            self.pool[slot] = frame
            self.digests[slot] = digest
            self.index.setdefault(digest, slot)
        self.counts[slot] += 1
        return slot

    def _grow(self) -> int:
        self.high += 1
        return self.high - 1

    def _release(self, slots: np.ndarray) -> None:
        for slot in slots.tolist():
            if slot < 0:
                continue
            self.counts[slot] -= 1
            if self.counts[slot] == 0:
                digest = self.digests[slot]
                if self.index.get(digest) == slot:
                    del self.index[digest]
                heapq.heappush(self.free, int(slot))

    def state_dict(self, n: int) -> dict[str, Any]:
        """Views of the written frames and of the first ``n`` transitions' indices (free
        slots' frames are stale, never referenced)."""
        return {"frames": self.pool[:self.high], "frame_refs": self.refs[:n]}

    def load_state_dict(self, state: dict[str, Any], n: int) -> None:
        frames = np.asarray(state["frames"])
        if frames.shape[1:] != self.frame_shape or not len(frames) <= len(self.pool):
            raise ValueError(f"checkpoint buffer frames have shape {list(frames.shape)}, not "
                             f"[<= {len(self.pool)}, {', '.join(map(str, self.frame_shape))}]")
        check_shape(state, "frame_refs", (n, 2, self.k))
        refs = np.asarray(state["frame_refs"], np.int64)
        if n and not (0 <= refs.min() and refs.max() < len(frames)):
            raise ValueError(f"checkpoint buffer frame_refs point outside its "
                             f"{len(frames)} frames")
        self.pool[:len(frames)] = frames
        self.refs[:] = -1
        self.refs[:n] = refs
        self.high = len(frames)
        self.counts[:] = np.bincount(refs.ravel(), minlength=len(self.pool)) if n else 0
        self.index, self.digests = {}, [None] * len(self.pool)
        for slot in range(self.high):
            if self.counts[slot]:
                digest = hashlib.sha1(self.pool[slot]).digest()
                self.digests[slot] = digest
                self.index.setdefault(digest, slot)
        self.free = [slot for slot in range(self.high) if not self.counts[slot]]  # a heap


class SumTree:
    """A binary tree whose leaves hold priorities and whose nodes hold the sums below them.

    Both updating a batch of leaves and sampling a batch are vectorized: one numpy operation
    per level of the tree.
    """

    def __init__(self, capacity: int) -> None:
        self.leaves = 1 << max(0, int(capacity - 1).bit_length())
        self.depth = self.leaves.bit_length() - 1
        self.tree = np.zeros(2 * self.leaves, np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, idx: np.ndarray) -> np.ndarray:
        return self.tree[self.leaves + np.asarray(idx)]

    def set(self, idx: np.ndarray, priorities: np.ndarray) -> None:
        """Set leaves ``idx`` (last write wins for repeated indices) and refresh their sums.

        A node reached twice is summed twice from the same children: the same value, so no
        deduplication is needed."""
        nodes = self.leaves + np.asarray(idx, np.int64)
        self.tree[nodes] = priorities
        for _ in range(self.depth):
            nodes = nodes >> 1
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Leaf index for each cumulative ``mass`` in ``[0, total)``."""
        nodes = np.ones(len(mass), np.int64)
        mass = np.array(mass, np.float64)
        for _ in range(self.depth):
            left = 2 * nodes
            right = mass >= self.tree[left]
            # never descend into an empty subtree (rounding at the right edge)
            right &= self.tree[left + 1] > 0
            mass = np.where(right, mass - self.tree[left], mass)
            nodes = left + right
        return nodes - self.leaves


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay: ``P(i) = p_i**alpha / sum_k p_k**alpha``."""

    def __init__(self, *args: Any, alpha: float = 0.6, eps: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alpha, self.eps = alpha, eps
        self.tree = SumTree(self.capacity)
        self.max_priority = 1.0

    def _on_store(self, idx: np.ndarray) -> None:
        self.tree.set(idx, np.full(len(idx), self.max_priority ** self.alpha))

    def draw(self, batch_size: int, rng: np.random.Generator, beta: float = 0.4
             ) -> tuple[np.ndarray, np.ndarray]:
        """Stratified sampling by priority, with weights ``(N P(i))**-beta / max``."""
        total = self.tree.total
        bounds = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
        idx = np.minimum(self.tree.find(bounds), self.size - 1)
        probs = self.tree.get(idx) / total
        min_prob = self.tree.get(np.arange(self.size)).min() / total
        weights = (probs / min_prob) ** -beta
        return idx, weights.astype(np.float32)

    def update_priorities(self, indices: torch.Tensor, td_errors: torch.Tensor) -> None:
        """New priorities ``(|td| + eps)`` for the sampled transitions."""
        priorities = np.abs(td_errors.detach().cpu().numpy().astype(np.float64)) + self.eps
        self.tree.set(indices.cpu().numpy(), priorities ** self.alpha)
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "priorities": self.tree.get(np.arange(self.size)),
                "max_priority": self.max_priority}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.tree = SumTree(self.capacity)
        self.tree.set(np.arange(self.size), np.asarray(state["priorities"], np.float64))
        self.max_priority = float(state["max_priority"])


class HerReplayBuffer(ReplayBuffer):
    """Hindsight experience replay (Andrychowicz et al. 2017) for goal-conditioned envs.

    Transitions are kept per env until their episode ends (or the epoch does); then each is
    stored with its real goal and again with ``k`` goals it achieved later (``future``), at
    the end (``final``) or anywhere in the episode (``episode``), rewarded by the env's own
    ``compute_reward``. Observations are stored flat, ``[observation, desired_goal]``. With
    ``terminate_on_success`` a relabelled success ends its episode (discount 0), as in the env.
    """

    STRATEGIES = ("future", "final", "episode")

    def __init__(self, capacity: int, obs_dim: int, goal_dim: int, act_shape: tuple[int, ...],
                 act_dtype: Any, num_envs: int, gamma: float, compute_reward: Any,
                 rng: np.random.Generator, strategy: str = "future", k: int = 4,
                 terminate_on_success: bool = False, device: torch.device | str = "cpu") -> None:
        if strategy not in self.STRATEGIES:
            raise ValueError(f"her_strategy={strategy!r} is not one of {list(self.STRATEGIES)}")
        super().__init__(capacity, (obs_dim + goal_dim,), act_shape, act_dtype, num_envs,
                         n_step=1, gamma=gamma, device=device)
        self.compute_reward, self.rng = compute_reward, rng
        self.strategy, self.k, self.terminate_on_success = strategy, k, terminate_on_success
        self._episodes: list[list[tuple[Any, ...]]] = [[] for _ in range(num_envs)]

    def add(self, obs: dict[str, np.ndarray], actions: np.ndarray, rewards: np.ndarray,
            next_obs: dict[str, np.ndarray], terminated: np.ndarray, done: np.ndarray) -> None:
        """Keep one vectorized step of every env's episode; an ended episode is stored with
        its real goals and relabelled (``_end``)."""
        for i in range(self.num_envs):
            self._episodes[i].append((
                {k: np.array(v[i]) for k, v in obs.items()}, np.array(actions[i]),
                float(rewards[i]), {k: np.array(v[i]) for k, v in next_obs.items()},
                bool(terminated[i])))
            if done[i]:
                self._end(i)

    def flush(self, next_obs: Any) -> None:
        for i in range(self.num_envs):
            if self._episodes[i]:
                self._end(i)

    def _end(self, i: int) -> None:
        episode, self._episodes[i] = self._episodes[i], []
        obs = {k: np.stack([t[0][k] for t in episode]) for k in episode[0][0]}
        nxt = {k: np.stack([t[3][k] for t in episode]) for k in episode[0][3]}
        actions = np.stack([t[1] for t in episode])
        rewards = np.array([t[2] for t in episode], np.float32)
        terminated = np.array([t[4] for t in episode])
        n = len(episode)
        # the episode as it happened, then k relabelled copies of every transition
        steps = np.repeat(np.arange(n), self.k)
        if self.strategy == "future":
            picks = self.rng.integers(steps, n)
        elif self.strategy == "final":
            picks = np.full(len(steps), n - 1)
        else:
            picks = self.rng.integers(0, n, len(steps))
        goals = nxt["achieved_goal"][picks]
        new_rewards = np.asarray(self.compute_reward(nxt["achieved_goal"][steps], goals, None),
                                 np.float32)
        new_term = (new_rewards == 0) if self.terminate_on_success else terminated[steps]
        relabelled = {k: v[steps] for k, v in obs.items()}
        relabelled_next = {k: v[steps] for k, v in nxt.items()}
        all_obs = np.concatenate([goal_obs(obs), goal_obs(relabelled, goals)])
        all_next = np.concatenate([goal_obs(nxt), goal_obs(relabelled_next, goals)])
        all_rewards = np.concatenate([rewards, new_rewards])
        all_term = np.concatenate([terminated, new_term])
        self._store(all_obs.astype(np.float32), np.concatenate([actions, actions[steps]]),
                    all_rewards, np.where(all_term, 0.0, self.gamma).astype(np.float32),
                    all_next.astype(np.float32))

    def state_dict(self) -> dict[str, Any]:
        if any(self._episodes):
            raise RuntimeError("flush() the pending episodes before saving the buffer")
        return super().state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._episodes = [[] for _ in range(self.num_envs)]
