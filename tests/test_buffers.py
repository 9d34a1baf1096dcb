"""Tests for rltasks.buffers: the sum tree, prioritized and uniform replay, n-step returns,
state round trips through the checkpoint codec, and GAE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_same_state
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rltasks.buffers import (
    PrioritizedReplayBuffer,
    ReplayBuffer,
    RolloutBuffer,
    SumTree,
    goal_obs,
)
from rltasks.checkpoint import decode, encode

# ---------------------------------------------------------------------------------------------
# SumTree


def _check_tree(tree: SumTree, leaves: np.ndarray) -> None:
    """Leaves hold what was written, every internal node is the sum of its children."""
    assert np.array_equal(tree.tree[tree.leaves:], leaves)
    assert math.isclose(tree.total, float(leaves.sum()), rel_tol=1e-9, abs_tol=1e-300)
    nodes = np.arange(1, tree.leaves)
    assert np.array_equal(tree.tree[nodes], tree.tree[2 * nodes] + tree.tree[2 * nodes + 1])
    assert np.array_equal(tree.get(np.arange(tree.leaves)), leaves)


@st.composite
def _tree_writes(draw, priority):
    capacity = draw(st.integers(1, 40))
    batches = draw(st.lists(
        st.lists(st.tuples(st.integers(0, capacity - 1), priority), min_size=1, max_size=12),
        min_size=1, max_size=8))
    return capacity, batches


def _apply(capacity: int, batches) -> tuple[SumTree, np.ndarray]:
    tree = SumTree(capacity)
    assert tree.leaves >= capacity and tree.leaves & (tree.leaves - 1) == 0
    leaves = np.zeros(tree.leaves)
    for batch in batches:
        idx = np.array([i for i, _ in batch], np.int64)
        prio = np.array([p for _, p in batch], np.float64)
        tree.set(idx, prio)
        for i, p in batch:  # last write wins
            leaves[i] = p
        _check_tree(tree, leaves)
    return tree, leaves


_FLOAT_PRIORITY = st.one_of(st.just(0.0), st.floats(1e-8, 1e3, allow_nan=False))
# integer priorities keep every sum (and every ``mass - left`` in ``find``) exact in float64,
# so the interval check can be strict
_INT_PRIORITY = st.integers(0, 1000).map(float)


@settings(max_examples=100, deadline=None)
@given(_tree_writes(_FLOAT_PRIORITY))
def test_sumtree_sums_after_arbitrary_writes(case):
    _apply(*case)


@settings(max_examples=100, deadline=None)
@given(_tree_writes(_INT_PRIORITY), st.lists(st.floats(0.0, 1.0, exclude_max=True), max_size=20),
       st.data())
def test_sumtree_find_exact_intervals(case, fractions, data):
    tree, leaves = _apply(*case)
    total = tree.total
    if total == 0:
        return
    cum = np.concatenate([[0.0], np.cumsum(leaves)])
    # fractional masses, every integer boundary (hits empty intervals) and the right edge
    masses = [f * total for f in fractions]
    masses += [float(m) for m in range(int(total))]
    masses += [np.nextafter(total, 0.0), data.draw(st.floats(0.0, total, exclude_max=True))]
    masses = np.array(masses)
    found = tree.find(masses)
    assert found.dtype.kind == "i" and found.shape == masses.shape
    for mass, j in zip(masses, found, strict=True):
        assert leaves[j] > 0, f"mass {mass} went to empty leaf {j}"
        assert cum[j] <= mass < cum[j + 1], (mass, j, cum)


@settings(max_examples=100, deadline=None)
@given(_tree_writes(_FLOAT_PRIORITY), st.lists(st.floats(0.0, 1.0, exclude_max=True),
                                               min_size=1, max_size=20))
def test_sumtree_find_float_priorities(case, fractions):
    tree, leaves = _apply(*case)
    total = tree.total
    if total == 0:
        return
    cum = np.concatenate([[0.0], np.cumsum(leaves)])
    masses = np.array([f * total for f in fractions] + [0.0, np.nextafter(total, 0.0)])
    found = tree.find(masses)
    tol = 1e-9 * total
    for mass, j in zip(masses, found, strict=True):
        assert 0 <= j < tree.leaves
        assert leaves[j] > 0, f"mass {mass} went to empty leaf {j}"
        assert cum[j] - tol <= mass < cum[j + 1] + tol, (mass, j, cum)


def test_sumtree_find_rounding_never_reaches_empty_leaf():
    # total = 0.3 + 0.7 = 1.0; for the largest mass below it, (mass - 0.3) rounds up to 0.7,
    # which would send the search into the empty right leaf under 0.7
    tree = SumTree(4)
    tree.set(np.arange(4), np.array([0.3, 0.0, 0.7, 0.0]))
    mass = np.nextafter(tree.total, 0.0)
    assert mass - 0.3 >= 0.7  # the rounding this test is about
    assert tree.find(np.array([mass, 0.0, 0.3, 0.29])).tolist() == [2, 0, 2, 0]


def test_sumtree_single_leaf_and_repeated_index():
    tree = SumTree(1)
    tree.set(np.array([0]), np.array([2.5]))
    assert tree.total == 2.5 and tree.find(np.array([0.0, 2.4])).tolist() == [0, 0]
    tree = SumTree(5)
    tree.set(np.array([3, 1, 3, 3]), np.array([1.0, 2.0, 7.0, 4.0]))
    assert tree.get(np.array([1, 3])).tolist() == [2.0, 4.0] and tree.total == 6.0


# ---------------------------------------------------------------------------------------------
# PrioritizedReplayBuffer


def _fill(buf: ReplayBuffer, n: int, start: int = 0) -> None:
    """Add ``n`` one-env transitions whose obs/action/reward encode their number."""
    for k in range(start, start + n):
        obs = np.full((1, *buf.obs.shape[1:]), k, buf.obs.dtype)
        buf.add(obs, np.array([k % 3]), np.array([float(k)]), obs + 1,
                np.array([k % 4 == 3]), np.array([k % 4 == 3]))


def _per(capacity: int = 12, alpha: float = 0.6, **kw) -> PrioritizedReplayBuffer:
    return PrioritizedReplayBuffer(capacity, (2,), (), np.int64, 1, alpha=alpha, **kw)


TD = np.array([0.1, 0.5, 1.0, 2.0, 3.0, 0.05, 1.5, 4.0, 0.3, 2.5])


def _sample_counts(buf, rng, batches=400, batch_size=64, beta=0.4):
    counts = np.zeros(buf.capacity, np.int64)
    for _ in range(batches):
        b = buf.sample(batch_size, rng, beta=beta)
        np.add.at(counts, b["indices"].numpy(), 1)
    return counts


def test_per_frequencies_follow_priorities():
    buf = _per()
    _fill(buf, len(TD))
    buf.update_priorities(torch.arange(len(TD)), torch.tensor(TD, dtype=torch.float32))
    p = (np.abs(TD.astype(np.float32).astype(np.float64)) + buf.eps) ** buf.alpha
    probs = p / p.sum()
    counts = _sample_counts(buf, np.random.default_rng(0))
    assert counts[len(TD):].sum() == 0  # never beyond the stored transitions
    n = counts.sum()
    assert stats.chisquare(counts[:len(TD)], probs * n).pvalue > 1e-3
    se = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(counts[:len(TD)] / n - probs) < 4 * se)


def test_per_alpha_zero_is_uniform():
    buf = _per(alpha=0.0)
    _fill(buf, len(TD))
    buf.update_priorities(torch.arange(len(TD)), torch.tensor(TD, dtype=torch.float32))
    counts = _sample_counts(buf, np.random.default_rng(1))[:len(TD)]
    n = counts.sum()
    assert stats.chisquare(counts).pvalue > 1e-3
    assert np.all(np.abs(counts / n - 1 / len(TD)) < 4 * np.sqrt(0.1 * 0.9 / n))
    assert np.all(buf.sample(32, np.random.default_rng(2))["weights"].numpy() == 1.0)


@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_per_importance_weights(beta):
    buf = _per()
    _fill(buf, len(TD))
    buf.update_priorities(torch.arange(len(TD)), torch.tensor(TD, dtype=torch.float32))
    p = (np.abs(TD.astype(np.float32).astype(np.float64)) + buf.eps) ** buf.alpha
    probs = p / p.sum()
    b = buf.sample(256, np.random.default_rng(3), beta=beta)
    idx, w = b["indices"].numpy(), b["weights"].numpy()
    assert b["weights"].dtype == torch.float32 and w.shape == (256,)
    np.testing.assert_allclose(w, (probs[idx] / probs.min()) ** -beta, rtol=1e-5)
    assert w.max() <= 1.0
    # the least likely transition, when drawn, has weight exactly 1
    assert np.all(w[idx == probs.argmin()] == 1.0)


def test_per_new_transitions_get_max_priority_seen():
    buf = _per(capacity=8)
    _fill(buf, 3)
    assert np.allclose(buf.tree.get(np.arange(3)), 1.0)  # nothing seen yet: priority 1
    buf.update_priorities(torch.tensor([0, 1]), torch.tensor([5.0, -7.0]))
    _fill(buf, 1, start=3)
    assert buf.tree.get(np.array([3]))[0] == pytest.approx((7.0 + buf.eps) ** buf.alpha)
    # smaller priorities afterwards do not lower the maximum seen so far
    buf.update_priorities(torch.arange(4), torch.full((4,), 0.01))
    _fill(buf, 6, start=4)  # wraps around, overwriting slots 0 and 1
    assert buf.size == 8 and buf.pos == 2
    expect = np.full(8, (7.0 + buf.eps) ** buf.alpha)
    expect[2:4] = (0.01 + buf.eps) ** buf.alpha
    np.testing.assert_allclose(buf.tree.get(np.arange(8)), expect, rtol=1e-6)
    assert buf.tree.total == pytest.approx(expect.sum())


# ---------------------------------------------------------------------------------------------
# ReplayBuffer


def test_replay_ring_wraps():
    buf = ReplayBuffer(5, (3,), (), np.int64, num_envs=2)
    for t in range(4):  # 8 transitions numbered 2t, 2t+1
        ids = np.array([2 * t, 2 * t + 1], np.float32)
        buf.add(np.repeat(ids[:, None], 3, 1), ids.astype(np.int64), ids, -np.ones((2, 3)),
                np.zeros(2, bool), np.zeros(2, bool))
        assert buf.pos == (2 * t + 2) % 5 and len(buf) == min(2 * t + 2, 5)
    assert buf.obs[:, 0].tolist() == [5, 6, 7, 3, 4]
    assert buf.actions.tolist() == [5, 6, 7, 3, 4]
    assert buf.returns.tolist() == [5, 6, 7, 3, 4]


def test_replay_one_step_discounts():
    buf = ReplayBuffer(8, (1,), (), np.int64, num_envs=3, gamma=0.9)
    buf.add(np.zeros((3, 1)), np.arange(3), np.array([1.0, 2.0, 3.0]), np.ones((3, 1)),
            np.array([False, True, False]), np.array([False, True, True]))
    np.testing.assert_array_equal(buf.discounts[:3], np.float32([0.9, 0.0, 0.9]))
    np.testing.assert_array_equal(buf.returns[:3], np.float32([1, 2, 3]))


def test_replay_uniform_sampling_and_batch_types():
    buf = ReplayBuffer(10, (4, 4), (), np.int64, num_envs=1, obs_dtype=np.uint8)
    _fill(buf, 13)
    b = buf.sample(4000, np.random.default_rng(0))
    counts = np.bincount(b["indices"].numpy(), minlength=10)
    assert counts.min() > 0 and stats.chisquare(counts).pvalue > 1e-3
    assert b["obs"].dtype == torch.uint8 and b["obs"].shape == (4000, 4, 4)
    assert b["next_obs"].dtype == torch.uint8 and b["next_obs"].shape == (4000, 4, 4)
    assert b["actions"].dtype == torch.int64 and b["actions"].shape == (4000,)
    for key in ("returns", "discounts", "weights"):
        assert b[key].dtype == torch.float32 and b[key].shape == (4000,), key
    assert b["indices"].dtype == torch.int64 and torch.all(b["weights"] == 1)
    # the batch is the stored transitions at the sampled indices
    idx = b["indices"].numpy()
    assert np.array_equal(b["obs"].numpy(), buf.obs[idx])
    assert np.array_equal(b["returns"].numpy(), buf.returns[idx])

    cont = ReplayBuffer(6, (3,), (2,), np.float32, num_envs=2)
    cont.add(np.ones((2, 3), np.float32), np.ones((2, 2), np.float32), np.ones(2),
             np.ones((2, 3), np.float32), np.zeros(2, bool), np.zeros(2, bool))
    b = cont.sample(5, np.random.default_rng(0))
    assert b["obs"].dtype == torch.float32 and b["obs"].shape == (5, 3)
    assert b["actions"].dtype == torch.float32 and b["actions"].shape == (5, 2)


def _stored(buf: ReplayBuffer) -> dict[float, tuple]:
    """Stored transitions keyed by their (unique) observation."""
    out = {}
    for i in range(len(buf)):
        key = float(buf.obs[i, 0])
        assert key not in out
        out[key] = (int(buf.actions[i]), float(buf.returns[i]), float(buf.discounts[i]),
                    float(buf.next_obs[i, 0]))
    return out


def test_nstep_returns_by_hand():
    """n=3, gamma=0.9; env 0 terminates after step 2, env 1 is truncated after step 3.

    obs of env i at step t is ``100 i + t``; the real final observations are 1000 / 2000.
    """
    g = 0.9
    buf = ReplayBuffer(32, (1,), (), np.int64, num_envs=2, n_step=3, gamma=g)
    rewards = [[1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60]]
    term = {(0, 2)}
    trunc = {(1, 3)}
    final = {0: 1000.0, 1: 2000.0}
    for t in range(6):
        obs = np.array([[t], [100 + t]], np.float32)
        nxt = obs + 1
        te = np.array([(i, t) in term for i in range(2)])
        tr = np.array([(i, t) in trunc for i in range(2)])
        for i in range(2):
            if te[i] or tr[i]:
                nxt[i] = final[i]
        buf.add(obs, np.array([10 * t, 10 * t + 1]), np.array(rewards)[:, t].astype(np.float32),
                nxt, te, te | tr)
        if t == 2:
            # env 0's episode (3 transitions) and env 1's first full window are out
            assert len(buf) == 4
    assert len(buf) == 8
    with pytest.raises(RuntimeError, match="flush"):
        buf.state_dict()
    buf.flush(np.array([[6], [106]], np.float32))
    assert len(buf) == 12
    # obs -> (action, return, discount, next_obs), computed by hand
    expect = {
        0: (0, 1 + 0.9 * 2 + 0.81 * 3, 0.0, 1000),  # terminal within the window
        1: (10, 2 + 0.9 * 3, 0.0, 1000),
        2: (20, 3, 0.0, 1000),
        3: (30, 4 + 0.9 * 5 + 0.81 * 6, 0.729, 6),  # a full window, next obs 3 steps ahead
        4: (40, 5 + 0.9 * 6, 0.81, 6),  # flushed: truncated at the epoch boundary
        5: (50, 6, 0.9, 6),
        100: (1, 10 + 0.9 * 20 + 0.81 * 30, 0.729, 103),
        101: (11, 20 + 0.9 * 30 + 0.81 * 40, 0.729, 2000),  # truncated: bootstrap from final
        102: (21, 30 + 0.9 * 40, 0.81, 2000),
        103: (31, 40, 0.9, 2000),
        104: (41, 50 + 0.9 * 60, 0.81, 106),
        105: (51, 60, 0.9, 106),
    }
    got = _stored(buf)
    assert sorted(got) == sorted(expect)
    for key, (a, ret, disc, nxt) in expect.items():
        ga, gret, gdisc, gnxt = got[key]
        assert (ga, gnxt) == (a, nxt), key
        assert gret == pytest.approx(ret, rel=1e-6), key
        assert gdisc == pytest.approx(disc, rel=1e-6, abs=0), key
    assert buf.state_dict()["size"] == 12
    buf.flush(np.array([[7], [107]], np.float32))  # nothing pending: a no-op
    assert len(buf) == 12


def test_nstep_pending_window_is_not_aliased():
    """A pending n-step window must not change if the caller reuses its arrays in place."""
    buf = ReplayBuffer(8, (1,), (), np.int64, num_envs=1, n_step=3, gamma=0.5)
    obs, act = np.zeros((1, 1), np.float32), np.zeros(1, np.int64)
    for t in range(3):
        obs[:] = t
        act[:] = t
        buf.add(obs, act, np.ones(1), obs + 1, np.zeros(1, bool), np.zeros(1, bool))
    buf.flush(obs + 1)
    assert sorted(buf.obs[:3, 0].tolist()) == [0, 1, 2]
    assert sorted(buf.actions[:3].tolist()) == [0, 1, 2]


def _goal_step(t: int) -> dict[str, np.ndarray]:
    """A goal env's observation of one env at step ``t``."""
    return {"observation": np.array([[t, t + 0.5]], np.float32),
            "achieved_goal": np.array([[-t]], np.float32),
            "desired_goal": np.array([[100 + t]], np.float32)}


@pytest.mark.parametrize("make", [
    lambda: ReplayBuffer(8, (3,), (1,), np.float32, num_envs=1),
    lambda: ReplayBuffer(8, (3,), (1,), np.float32, num_envs=1, n_step=2, gamma=0.5),
    lambda: PrioritizedReplayBuffer(8, (3,), (1,), np.float32, num_envs=1),
])
def test_replay_stores_a_goal_envs_dict_observations_flat(make):
    """The replay loop hands every buffer the env's observations: a plain buffer stores a
    goal env's dicts as the networks see them, ``[observation, desired_goal]``."""
    buf = make()
    for t in range(3):
        buf.add(_goal_step(t), np.zeros((1, 1), np.float32), np.ones(1), _goal_step(t + 1),
                np.zeros(1, bool), np.zeros(1, bool))
    buf.flush(_goal_step(3))
    assert len(buf) == 3
    order = np.argsort(buf.obs[:3, 0])
    want = np.concatenate([goal_obs(_goal_step(t)) for t in range(3)])
    np.testing.assert_array_equal(buf.obs[:3][order], want)
    ahead = [2, 3, 3] if buf.n_step == 2 else [1, 2, 3]  # n-step: next obs n steps on
    np.testing.assert_array_equal(buf.next_obs[:3][order],
                                  np.concatenate([goal_obs(_goal_step(t)) for t in ahead]))
    assert goal_obs(_goal_step(0)).tolist() == [[0.0, 0.5, 100.0]]


# ---------------------------------------------------------------------------------------------
# state_dict round trips


def _round_trip(state):
    return decode(encode(state))


def _assert_same_batch(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_replay_state_round_trip():
    buf = ReplayBuffer(10, (2,), (), np.int64, num_envs=1, n_step=2, gamma=0.9)
    _fill(buf, 14)
    buf.flush(np.full((1, 2), 99, np.float32))
    new = ReplayBuffer(10, (2,), (), np.int64, num_envs=1, n_step=2, gamma=0.9)
    new.load_state_dict(_round_trip(buf.state_dict()))
    assert (new.pos, new.size) == (buf.pos, buf.size)
    _assert_same_batch(buf.sample(64, np.random.default_rng(5)),
                       new.sample(64, np.random.default_rng(5)))
    # both continue identically (pos restored)
    _fill(buf, 3, start=20)
    _fill(new, 3, start=20)
    buf.flush(np.zeros((1, 2), np.float32))
    new.flush(np.zeros((1, 2), np.float32))
    for key in ("obs", "next_obs", "actions", "returns", "discounts"):
        assert np.array_equal(getattr(buf, key), getattr(new, key)), key
    small = ReplayBuffer(4, (2,), (), np.int64, num_envs=1)
    with pytest.raises(ValueError, match="capacity"):
        small.load_state_dict(_round_trip(buf.state_dict()))


@pytest.mark.parametrize("n", [7, 25])  # partly full, and wrapped around
def test_per_state_round_trip(n):
    buf = _per(capacity=12)
    _fill(buf, n)
    rng = np.random.default_rng(11)
    for _ in range(3):
        b = buf.sample(8, rng)
        buf.update_priorities(b["indices"], torch.from_numpy(rng.normal(size=8) * 3))
    new = _per(capacity=12)
    new.load_state_dict(_round_trip(buf.state_dict()))
    assert np.array_equal(new.tree.tree, buf.tree.tree)
    assert new.max_priority == buf.max_priority and (new.pos, new.size) == (buf.pos, buf.size)
    gen_a, gen_b = np.random.default_rng(4), np.random.default_rng(4)
    for _ in range(3):
        a, b = buf.sample(16, gen_a, beta=0.5), new.sample(16, gen_b, beta=0.5)
        _assert_same_batch(a, b)
        td = torch.from_numpy(gen_a.normal(size=16))
        assert torch.equal(td, torch.from_numpy(gen_b.normal(size=16)))
        buf.update_priorities(a["indices"], td)
        new.update_priorities(b["indices"], td)
    _fill(buf, 4, start=100)
    _fill(new, 4, start=100)
    assert np.array_equal(new.tree.tree, buf.tree.tree)


# ---------------------------------------------------------------------------------------------
# RolloutBuffer.compute_gae


def _reference_gae(rewards, values, dones, next_value, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, stopping after the first done at or after t."""
    n, m = rewards.shape
    vals = np.concatenate([values, next_value[None]], 0)
    delta = rewards + gamma * vals[1:] * (1 - dones) - values
    adv = np.zeros((n, m))
    for j in range(m):
        for t in range(n):
            total, coef = 0.0, 1.0
            for u in range(t, n):
                total += coef * delta[u, j]
                if dones[u, j]:
                    break
                coef *= gamma * lam
            adv[t, j] = total
    return adv


def _rollout(n=16, m=3, seed=0, done_p=0.15):
    gen = torch.Generator().manual_seed(seed)
    buf = RolloutBuffer(n, m, (2,), (), discrete=True)
    rewards = torch.randn((n, m), generator=gen)
    values = torch.randn((n, m), generator=gen)
    dones = (torch.rand((n, m), generator=gen) < done_p).float()
    for t in range(n):
        buf.add(t, torch.randn((m, 2), generator=gen), torch.randint(3, (m,), generator=gen),
                torch.randn(m, generator=gen), rewards[t], values[t], dones[t])
    return buf, rewards, values, dones, torch.randn(m, generator=gen)


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_reference(lam, seed):
    buf, rewards, values, dones, next_value = _rollout(seed=seed)
    assert dones.sum() > 0
    buf.compute_gae(next_value, 0.97, lam)
    ref = _reference_gae(rewards.double().numpy(), values.double().numpy(),
                         dones.double().numpy(), next_value.double().numpy(), 0.97, lam)
    np.testing.assert_allclose(buf.adv.numpy(), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(buf.returns.numpy(), ref + values.double().numpy(),
                               rtol=1e-5, atol=1e-5)
    flat = buf.flat()
    assert flat["adv"].shape == (16 * 3,) and flat["obs"].shape == (16 * 3, 2)
    assert flat["actions"].dtype == torch.long
    assert torch.equal(flat["adv"], buf.adv.flatten())


def test_gae_lambda_one_no_dones_is_returns_to_go():
    gamma = 0.9
    buf, rewards, values, _, next_value = _rollout(n=10, m=2, seed=3, done_p=0.0)
    buf.compute_gae(next_value, gamma, 1.0)
    r = rewards.double().numpy()
    for j in range(2):
        for t in range(10):
            g = sum(gamma ** (u - t) * r[u, j] for u in range(t, 10))
            g += gamma ** (10 - t) * float(next_value[j])
            assert buf.returns[t, j].item() == pytest.approx(g, rel=1e-5, abs=1e-5)


# ---------------------------------------------------------------- image frames, stored once
def frame_stream(steps: int, num_envs: int, k: int, shape: tuple[int, int], episode: int,
                 seed: int = 0):
    """Atari-like stacked observations: each env's stack shifts by one new frame a step and
    a new episode starts from a stack of ``k`` new frames; yields ``(obs, next_obs, done,
    obs_ids, next_ids)`` with every frame's id (frame ``i`` is ``frame(i)``)."""
    counter = iter(range(10**9))
    stacks = [[next(counter) for _ in range(k)] for _ in range(num_envs)]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        obs_ids = [list(s) for s in stacks]
        next_ids, done = [], np.zeros(num_envs, bool)
        for i in range(num_envs):
            stacks[i] = stacks[i][1:] + [next(counter)]
            next_ids.append(list(stacks[i]))
            if rng.random() < 1 / episode:  # the episode ended: the next starts afresh
                done[i] = True
                stacks[i] = [next(counter) for _ in range(k)]
        yield obs_ids, next_ids, done


def frame(i: int, shape: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, shape, np.uint8)


def frames_of(ids: list[list[int]], shape: tuple[int, int]) -> np.ndarray:
    return np.stack([np.stack([frame(i, shape) for i in stack]) for stack in ids])


@pytest.mark.parametrize("n_step", [1, 3])
def test_shared_frames_replay_returns_what_a_naive_buffer_does(n_step, tmp_path):
    """Three envs of 4 stacked 12x12 frames, episodes ending at random, 600 steps into 500
    transitions (the ring wraps): uniform and prioritized buffers that store each frame once
    sample exactly the observations of buffers that store every stack, and resume exactly."""
    from rltasks import checkpoint

    shape, k, m = (12, 12), 4, 3
    for cls in (ReplayBuffer, PrioritizedReplayBuffer):
        naive = cls(500, (k, *shape), (), np.int64, m, n_step=n_step, obs_dtype=np.uint8)
        shared = cls(500, (k, *shape), (), np.int64, m, n_step=n_step, obs_dtype=np.uint8,
                     frames=k)
        for t, (ids, next_ids, done) in enumerate(frame_stream(600, m, k, shape, 20)):
            obs, nxt = frames_of(ids, shape), frames_of(next_ids, shape)
            args = (obs, np.full(m, t), np.ones(m, np.float32), nxt, done, done)
            naive.add(*args)
            shared.add(*args)
            if t == 300:
                naive.flush(nxt)
                shared.flush(nxt)
                path = tmp_path / f"{cls.__name__}{n_step}.ckpt"
                checkpoint.save(path, shared.state_dict())
                resumed = cls(500, (k, *shape), (), np.int64, m, n_step=n_step,
                              obs_dtype=np.uint8, frames=k)
                resumed.load_state_dict(checkpoint.load(path))
            elif t > 300:
                resumed.add(*args)
        for buf in (naive, shared, resumed):
            buf.flush(nxt)
        assert len(naive) == len(shared) == 500
        for buf in (shared, resumed):
            a, b = (x.sample(256, np.random.default_rng(1)) for x in (naive, buf))
            for key in ("obs", "next_obs", "actions", "returns", "discounts", "indices"):
                assert torch.equal(a[key], b[key]), key
        assert_same_state(shared.state_dict(), resumed.state_dict())


def test_shared_frames_keep_an_atari_buffer_near_its_distinct_frames():
    """100k transitions of 4 stacked 84x84 frames (110k written: the ring wrapped), episodes
    of about 1,000 steps: the bytes held are at most 1.1x those of the distinct frames the
    held transitions use (a naive buffer holds 8 frames a transition)."""
    shape, k, capacity = (84, 84), 4, 100_000
    buf = ReplayBuffer(capacity, (k, *shape), (), np.int64, 1, obs_dtype=np.uint8, frames=k)
    held: list[set[int]] = []
    cache: dict[int, np.ndarray] = {}
    for ids, next_ids, done in frame_stream(110_000, 1, k, shape, 1000):
        for i in ids[0] + next_ids[0]:
            if i not in cache:
                cache[i] = frame(i, shape)
        obs = np.stack([cache[i] for i in ids[0]])[None]
        nxt = np.stack([cache[i] for i in next_ids[0]])[None]
        buf.add(obs, np.zeros(1, np.int64), np.zeros(1, np.float32), nxt, done, done)
        held.append(set(ids[0]) | set(next_ids[0]))
        if len(cache) > 64:  # only the last few frames come again
            for i in sorted(cache)[:-16]:
                del cache[i]
    distinct = len(set().union(*held[-capacity:])) * 84 * 84
    assert len(buf) == capacity
    assert buf.store.nbytes() <= 1.1 * distinct, (buf.store.nbytes(), distinct)
    assert 2 * k * 84 * 84 * capacity > 7 * buf.store.nbytes()
    state = buf.state_dict()  # what a checkpoint streams to its file: views, not copies
    assert np.shares_memory(state["frames"], buf.store.pool)
    assert np.shares_memory(state["frame_refs"], buf.store.refs)
    assert np.shares_memory(state["actions"], buf.actions)


def test_a_replay_buffer_moves_into_given_arrays_and_keeps_its_transitions():
    """``use_arrays`` (a population's stacked storage): what the buffer holds is copied in,
    later transitions land there, and its state and samples are those of a buffer that never
    moved; arrays of another shape, and buffers that keep more per transition, are refused."""
    def filled(steps: int) -> ReplayBuffer:
        buf = ReplayBuffer(8, (3,), (), np.int64, num_envs=2, n_step=2, gamma=0.9)
        for t in range(steps):
            buf.add(np.full((2, 3), t, np.float32), np.array([t, -t]), np.array([1.0, 2.0]),
                    np.full((2, 3), t + 1, np.float32), np.array([False, t == 2]),
                    np.array([False, t == 2]))
        return buf

    moved, stayed = filled(3), filled(3)
    stack = {key: np.zeros((2, *a.shape), a.dtype) for key, a in moved.arrays().items()}
    moved.use_arrays({key: a[1] for key, a in stack.items()})
    assert np.array_equal(stack["obs"][1], stayed.obs) and not stack["obs"][0].any()
    for buf in (moved, stayed):
        buf.add(np.full((2, 3), 9, np.float32), np.array([9, 9]), np.array([0.5, 0.5]),
                np.full((2, 3), 10, np.float32), np.array([True, True]), np.array([True, True]))
    assert moved.obs.base is stack["obs"] and np.array_equal(stack["actions"][1], stayed.actions)
    assert_same_state(moved.state_dict(), stayed.state_dict())
    a, b = (buf.sample_arrays(4, np.random.default_rng(0)) for buf in (moved, stayed))
    assert_same_state(a, b)
    with pytest.raises(ValueError, match="shaped as this buffer's own"):
        moved.use_arrays({key: a[1, :4] for key, a in stack.items()})
    per = PrioritizedReplayBuffer(8, (3,), (), np.int64, num_envs=2)
    assert per.arrays() is None
