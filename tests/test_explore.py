"""Tests for rltasks.explore: action frequencies of every exploration policy on fixed Q-values,
the epsilon schedule, Boltzmann-Gumbel's counts and state, and the registry."""

from __future__ import annotations

import math

import pytest
import torch

from rltasks.checkpoint import decode, encode
from rltasks.explore import POLICIES, POLICY_HPARAMS, Policy, make_policy

Q = torch.tensor([1.0, 2.0, 0.5, 1.5])
N_ACT = len(Q)
GREEDY = int(Q.argmax())
ROWS = 20_000
QB = Q.expand(ROWS, N_ACT)


def _policy(name: str, **hp) -> Policy:
    params = {k: v.default for k, v in POLICY_HPARAMS.items()}
    return make_policy({**params, **hp, "exploration": name}, N_ACT)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _freqs(policy: Policy, steps: int = 0, seed: int = 0, q: torch.Tensor = QB) -> torch.Tensor:
    actions = policy.select(q, steps, _gen(seed))
    assert actions.shape == q.shape[:-1] and actions.dtype == torch.int64
    return torch.bincount(actions, minlength=N_ACT).double() / len(actions)


def _assert_freqs(freqs: torch.Tensor, probs: torch.Tensor, n: int = ROWS) -> None:
    """Each frequency within 4 standard errors (plus a hair for p = 0 or 1)."""
    probs = probs.double()
    se = (probs * (1 - probs) / n).sqrt()
    assert torch.all((freqs - probs).abs() <= 4 * se + 1e-9), (freqs.tolist(), probs.tolist())


def _onehot(a: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(a), N_ACT).double()


def test_greedy_is_argmax():
    policy = _policy("greedy")
    assert torch.all(policy.select(QB, 0, _gen()) == GREEDY)
    q = torch.randn((500, 6), generator=_gen(1))
    greedy = make_policy({"exploration": "greedy"}, 6)
    assert torch.equal(greedy.select(q, 10**6, _gen()), q.argmax(-1))
    assert greedy.state_dict() == {} and greedy.scale(0) == 0.0


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_epsilon_greedy(eps):
    policy = _policy("epsilon_greedy", epsilon=eps)
    assert policy.scale(123) == eps
    freqs = _freqs(policy)
    non_greedy = 1 - freqs[GREEDY]
    p = eps * (N_ACT - 1) / N_ACT
    assert abs(non_greedy - p) <= 4 * math.sqrt(p * (1 - p) / ROWS)
    _assert_freqs(freqs, (1 - eps) * _onehot(GREEDY) + eps / N_ACT)


def test_epsilon_zero_and_one():
    assert torch.all(_policy("epsilon_greedy", epsilon=0.0).select(QB, 0, _gen()) == GREEDY)
    _assert_freqs(_freqs(_policy("epsilon_greedy", epsilon=1.0)), torch.full((N_ACT,), 0.25))


def test_adaptive_epsilon_schedule():
    hp = {"eps_initial": 0.9, "eps_min": 0.1, "eps_decay": 1000}
    policy = _policy("adaptive_epsilon", **hp)
    assert policy.scale(0) == pytest.approx(0.9)
    for steps in (1000, 1001, 5000, 10**7):
        assert policy.scale(steps) == pytest.approx(0.1)
    for steps in (1, 250, 500, 999):
        assert policy.scale(steps) == pytest.approx(0.9 - 0.8 * steps / 1000)
    # linear: equal increments give equal decrements
    s = [policy.scale(k) for k in range(0, 1001, 100)]
    diffs = [b - a for a, b in zip(s, s[1:], strict=False)]
    assert all(d == pytest.approx(-0.08) for d in diffs)


@pytest.mark.parametrize("steps", [0, 400, 2000])
def test_adaptive_epsilon_selection(steps):
    policy = _policy("adaptive_epsilon", eps_initial=1.0, eps_min=0.05, eps_decay=1000)
    eps = policy.scale(steps)
    _assert_freqs(_freqs(policy, steps), (1 - eps) * _onehot(GREEDY) + eps / N_ACT)


def test_softmax():
    _assert_freqs(_freqs(_policy("softmax")), torch.softmax(Q.double(), -1))


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_boltzmann(tau):
    policy = _policy("boltzmann", boltzmann_tau=tau, boltzmann_clip=500.0)
    assert policy.scale(0) == tau
    _assert_freqs(_freqs(policy), torch.softmax(Q.double() / tau, -1))


def test_boltzmann_clip_shows():
    # Q / 0.5 = [2, 4, 1, 3] clipped to [1.5, 1.5, 1, 1.5]: actions 0, 1, 3 tie
    policy = _policy("boltzmann", boltzmann_tau=0.5, boltzmann_clip=1.5)
    probs = torch.softmax((Q.double() / 0.5).clamp(-1.5, 1.5), -1)
    assert probs[0] == probs[1] == probs[3]
    freqs = _freqs(policy)
    _assert_freqs(freqs, probs)
    unclipped = torch.softmax(Q.double() / 0.5, -1)
    assert (freqs - unclipped).abs().max() > 0.2
    # the clip is symmetric: very negative values are raised to -clip
    low = _policy("boltzmann", boltzmann_tau=1.0, boltzmann_clip=1.0)
    q = torch.tensor([-50.0, -1.0, 0.0, 0.5]).expand(ROWS, N_ACT)
    _assert_freqs(_freqs(low, q=q), torch.softmax(torch.tensor([-1.0, -1.0, 0.0, 0.5]), -1))


@pytest.mark.parametrize(("eps", "tau"), [(0.3, 1.0), (0.5, 0.5)])
def test_max_boltzmann(eps, tau):
    policy = _policy("max_boltzmann", epsilon=eps, boltzmann_tau=tau)
    probs = (1 - eps) * _onehot(GREEDY) + eps * torch.softmax(Q.double() / tau, -1)
    _assert_freqs(_freqs(policy), probs)


def test_boltzmann_gumbel_counts():
    policy = _policy("boltzmann_gumbel", bg_c=1.0)
    assert policy.counts.tolist() == [0] * N_ACT
    gen = _gen()
    total = torch.zeros(N_ACT, dtype=torch.int64)
    for _ in range(3):
        actions = policy.select(Q.expand(50, N_ACT), 0, gen)
        total += torch.bincount(actions, minlength=N_ACT)
        assert torch.equal(policy.counts, total)
    assert int(policy.counts.sum()) == 150
    assert policy.scale(0) == pytest.approx(1.0 / math.sqrt(150))


def test_boltzmann_gumbel_extremes():
    wide = _policy("boltzmann_gumbel", bg_c=1e6)
    _assert_freqs(_freqs(wide), torch.full((N_ACT,), 1 / N_ACT))
    narrow = _policy("boltzmann_gumbel", bg_c=1e-6)
    assert torch.all(narrow.select(QB, 0, _gen()) == GREEDY)


def test_boltzmann_gumbel_state_round_trip():
    policy = _policy("boltzmann_gumbel", bg_c=2.0)
    gen = _gen(3)
    for _ in range(4):
        policy.select(Q.expand(37, N_ACT), 0, gen)
    state = decode(encode(policy.state_dict()))
    other = _policy("boltzmann_gumbel", bg_c=2.0)
    other.load_state_dict(state)
    assert torch.equal(other.counts, policy.counts) and other.counts.dtype == torch.int64
    gen_b = torch.Generator()
    gen_b.set_state(gen.get_state())
    for _ in range(3):
        q = torch.randn((64, N_ACT), generator=_gen(9))
        assert torch.equal(policy.select(q, 0, gen), other.select(q, 0, gen_b))
        assert torch.equal(policy.counts, other.counts)
    # state_dict is a snapshot, not a view of the live counts
    raw = policy.state_dict()
    policy.select(QB[:10], 0, gen)
    assert int(raw["counts"].sum()) == 4 * 37 + 3 * 64


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_gumbel_softmax(temperature):
    policy = _policy("gumbel_softmax", gumbel_temperature=temperature)
    assert policy.scale(0) == temperature
    _assert_freqs(_freqs(policy), torch.softmax(Q.double() / temperature, -1))


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_with_defaults(name):
    policy = _policy(name)
    assert isinstance(policy, POLICIES[name]) and policy.name == name
    q = torch.randn((256, N_ACT), generator=_gen(2))
    actions = policy.select(q, 100, _gen())
    assert actions.shape == (256,) and actions.dtype == torch.int64
    assert actions.min() >= 0 and actions.max() < N_ACT
    assert isinstance(policy.scale(100), float)
    # same generator state, same actions (no hidden global randomness)
    again = _policy(name)
    assert torch.equal(again.select(q, 100, _gen()), actions)
    # defaults are valid values
    for key, hp in POLICIES[name].HPARAMS.items():
        assert hp.coerce(key, hp.default) == hp.default


def test_make_policy_unknown_name():
    with pytest.raises(ValueError, match="nope") as err:
        make_policy({"exploration": "nope"}, N_ACT)
    for name in POLICIES:
        assert name in str(err.value)


def test_registry_and_hparams():
    assert {cls.name for cls in POLICIES.values()} == set(POLICIES)
    for cls in POLICIES.values():
        for key, hp in cls.HPARAMS.items():
            assert POLICY_HPARAMS[key] == hp, (cls.name, key)
    assert set(POLICY_HPARAMS) == {k for cls in POLICIES.values() for k in cls.HPARAMS}
    for key in POLICY_HPARAMS:
        assert sum(c.isalpha() for c in key) >= 2 and len(key) >= 2, key


@pytest.mark.parametrize(("name", "hp"), [("epsilon_greedy", {"epsilon": 1.0}),
                                          ("adaptive_epsilon", {"eps_initial": 1.0,
                                                                "eps_min": 1.0})])
def test_epsilon_greedy_acts_without_q_values_while_every_env_explores(name, hp):
    """``act`` computes the Q-values only when some env acts greedily, and draws what the
    epsilon-greedy ``select`` always drew (explore flags, then random actions): the same
    actions, so a run's actions do not change with the saving."""
    calls = []

    def q_of(rows):
        def q():
            calls.append(rows)
            return QB[:rows]
        return q

    policy = _policy(name, **hp)
    actions = policy.act(q_of(8), (8, N_ACT), 0, _gen(3))
    assert calls == [] and torch.equal(actions, policy.select(QB[:8], 0, _gen(3)))
    mixed = _policy("epsilon_greedy", epsilon=0.5)
    actions = mixed.act(q_of(64), (64, N_ACT), 0, _gen(3))
    gen = _gen(3)
    explore = torch.rand(64, generator=gen) < 0.5
    expected = torch.where(explore, torch.randint(N_ACT, (64,), generator=gen), GREEDY)
    assert calls == [64] and torch.equal(actions, expected)
    assert torch.equal(mixed.select(QB[:64], 0, _gen(3)), expected)
