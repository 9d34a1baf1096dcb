"""The env loader: same-step autoreset, seeding, episode statistics, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from rltasks.envs import RunningMeanStd, VecLoader, derive_seed, evaluate_policy


def test_derive_seed_is_deterministic_and_separates_streams():
    assert derive_seed(0, 1) == derive_seed(0, 1)
    assert len({derive_seed(0, k) for k in range(100)} | {derive_seed(1, 0)}) == 101
    assert 0 <= derive_seed(2**31, 5) < 2**32


def test_auto_picks_the_native_cartpole_and_sync_elsewhere():
    assert VecLoader("CartPole-v1", 4).vectorization == "native"
    assert VecLoader("Pendulum-v1", 2).vectorization == "sync"
    with pytest.raises(ValueError, match="no numpy-vectorized Pendulum-v1"):
        VecLoader("Pendulum-v1", 2, vectorization="native")
    with pytest.raises(ValueError, match="vectorization='gpu'"):
        VecLoader("CartPole-v1", 2, vectorization="gpu")
    with pytest.raises(ValueError, match="num_envs=0"):
        VecLoader("CartPole-v1", 0)


def rollout(loader: VecLoader, seed: int, steps: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = [loader.reset(seed)]
    for _ in range(steps):
        obs, rew, term, trunc, final = loader.step(rng.integers(0, 2, loader.num_envs))
        out += [obs, rew, term, trunc]
        if final is not None:
            out.append(final)
    return out


@pytest.mark.parametrize("mode", ["native", "sync"])
def test_same_seed_same_trajectory(mode):
    a = rollout(VecLoader("CartPole-v1", 3, mode), 7, 200)
    b = rollout(VecLoader("CartPole-v1", 3, mode), 7, 200)
    c = rollout(VecLoader("CartPole-v1", 3, mode), 8, 200)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("mode", ["native", "sync"])
def test_same_step_autoreset_returns_the_final_observation_apart(mode):
    loader = VecLoader("CartPole-v1", 4, mode)
    obs = loader.reset(0)
    lengths = np.zeros(4, int)
    seen_done = 0
    for _ in range(300):
        nxt, rew, term, trunc, final = loader.step(np.zeros(4, np.int64))  # always push left
        lengths += 1
        done = term | trunc
        assert (rew == 1.0).all()
        if done.any():
            seen_done += int(done.sum())
            assert final is not None
            # the final obs is past the failure threshold; the new obs is a fresh start
            failed = (np.abs(final[done][:, 2]) > 0.2) | (np.abs(final[done][:, 0]) > 2.4)
            assert failed.all()
            assert (np.abs(nxt[done]) <= 0.05).all()
            assert np.array_equal(final[~done], nxt[~done])
            lengths[done] = 0
        obs = nxt
    assert obs.shape == (4, 4)
    episodes = loader.pop_episodes()
    assert len(episodes) == seen_done > 10
    assert all(8 <= n <= 12 and r == n and ok is None for r, n, ok in episodes)
    assert loader.pop_episodes() == []


def test_running_mean_std_matches_numpy():
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 3))
    rms = RunningMeanStd((3,))
    for chunk in np.array_split(data, 7):
        rms.update(chunk)
    assert np.allclose(rms.mean, data.mean(0), atol=1e-3)
    assert np.allclose(rms.var, data.var(0), rtol=1e-3)
    copy = RunningMeanStd((3,))
    copy.load_state_dict(rms.state_dict())
    assert np.array_equal(copy.mean, rms.mean) and copy.count == rms.count


def test_normalisation_updates_only_in_training_and_bounds_values():
    loader = VecLoader("Pendulum-v1", 2, norm_obs=True, norm_reward=True)
    loader.reset(0)
    for _ in range(50):
        obs, rew, *_ = loader.step(np.ones((2, 1), np.float32))
    count = loader.obs_rms.count
    loader.step(np.ones((2, 1), np.float32), train=False)
    assert loader.obs_rms.count == count
    assert np.abs(obs).max() <= 10.0 and np.abs(rew).max() <= 10.0
    with pytest.raises(ValueError, match="normalisation"):
        VecLoader("Pendulum-v1", 2).load_state_dict(loader.state_dict())


def test_evaluate_policy_runs_one_episode_per_env():
    result = evaluate_policy(VecLoader("CartPole-v1", 5), lambda obs: np.zeros(len(obs), np.int64),
                             0, normalize=lambda obs: obs)
    assert result["episodes"] == 5 and 8 <= result["length_mean"] <= 12
    assert result["return_mean"] == result["length_mean"]


def test_an_env_with_unbounded_actions_is_refused_in_one_line():
    import gymnasium as gym

    import rltasks

    class Unbounded(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(2, np.float32), {}

        def step(self, action):
            return np.zeros(2, np.float32), 0.0, False, False, {}

    gym.register("rltasks-test/Unbounded-v0", entry_point=Unbounded, max_episode_steps=10)
    try:
        for name in ("ppo", "sac"):
            with pytest.raises(ValueError, match=f"{name} needs finite action bounds.*tasks "
                               "that fit it: none yet"):
                rltasks.make_task(name, env="rltasks-test/Unbounded-v0")
    finally:
        gym.registry.pop("rltasks-test/Unbounded-v0")


def test_step_as_one_gives_each_loader_the_bits_it_gets_alone():
    """Three CartPole loaders (2, 3 and 2 envs, other seeds) stepped as one vector env give
    every observation, reward, end and final observation, and end in the state, of the same
    loaders stepped alone, through terminations and 500-step truncations."""
    from helpers import state_diffs

    from rltasks.envs import StepAsOne

    def loaders():
        made = [VecLoader("CartPole-v1", n) for n in (2, 3, 2)]
        return made, [loader.reset(seed) for seed, loader in enumerate(made)]

    def policy(obs, rng, k):  # balances, with noise: episodes fail or reach the time limit
        good = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
        return np.where(rng.random(len(obs)) < (0.02, 0.4, 0.1)[k], 1 - good, good)

    alone, obs_a = loaders()
    together, obs_t = loaders()
    group = StepAsOne(together)
    assert group.fits
    rngs_a = [np.random.default_rng(k) for k in range(3)]
    rngs_t = [np.random.default_rng(k) for k in range(3)]
    ends = {"term": 0, "trunc": 0}
    for _ in range(1200):
        acts_t = {k: policy(obs_t[k], rngs_t[k], k) for k in range(3)}
        group.step(acts_t)
        assert all(loader._venv.pending is not None for loader in together)  # taken as one
        for k in range(3):
            a = alone[k].step(policy(obs_a[k], rngs_a[k], k))
            t = together[k].step(acts_t[k])
            for x, y in zip(a, t, strict=True):
                assert (x is None and y is None) or (
                    x.tobytes() == y.tobytes() and x.strides == y.strides)
            obs_a[k], obs_t[k] = a[0], t[0]
            ends["term"] += int(a[2].sum())
            ends["trunc"] += int(a[3].sum())
    assert ends["term"] > 10 and ends["trunc"] > 0, ends
    for x, y in zip(alone, together, strict=True):
        assert not state_diffs(x.state_dict(), y.state_dict())
        x.close()
        y.close()
    group.close()
