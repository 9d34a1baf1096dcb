"""MADDPG and the PettingZoo loader through the public API."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_resumes_exactly

import rltasks
from rltasks.envs_multi import ParallelLoader

FAST = dict(buffer_size=5000, learning_starts=100, batch_size=64, train_freq=25, hidden=32)


def test_parallel_loader_stacks_agents_and_restarts_finished_episodes():
    loader = ParallelLoader("mpe2/simple_spread_v3", num_envs=2)
    assert loader.single_observation_space.shape == (3, 18)
    assert loader.single_action_space.shape == (3, 5)
    obs = loader.reset(0)
    assert obs.shape == (2, 3, 18)
    again = ParallelLoader("mpe2/simple_spread_v3", num_envs=2).reset(0)
    assert np.array_equal(obs, again)
    for _ in range(25):
        obs, rew, term, trunc, final = loader.step(np.full((2, 3, 5), 0.5, np.float32))
        assert rew.shape == (2, 3)
    assert trunc.all() and final is not None and not np.array_equal(final, obs)
    episodes = loader.pop_episodes()
    assert [n for _, n, _ in episodes] == [25, 25]
    assert ParallelLoader("mpe2/simple_spread_v3-discrete").single_action_space.nvec.tolist() == [
        5, 5, 5]
    with pytest.raises(ValueError, match="unknown multi-agent env id 'CartPole-v1'"):
        ParallelLoader("CartPole-v1")
    with pytest.raises(ValueError, match="cannot load multi-agent env 'mpe2/nope_v1'"):
        ParallelLoader("mpe2/nope_v1")


@pytest.mark.parametrize("env", ["mpe2/simple_spread_v3", "mpe2/simple_spread_v3-discrete"])
def test_maddpg_trains_and_resumes_exactly(env, tmp_path):
    def make():
        return rltasks.make_task("maddpg", env=env, seed=4, steps_per_epoch=250).init(**FAST)

    straight = assert_resumes_exactly(make, tmp_path)
    row = straight.history[-1]
    assert row["episodes"] == 10 and row["gradient_steps"] == 10 * 4
    assert set(straight.state_dict()["optimizers"]) == {
        f"{kind}_{i}" for kind in ("actor", "critic") for i in range(3)}
    result = straight.evaluate(3)
    assert result["length_mean"] == 25.0
