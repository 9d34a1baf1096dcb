"""MADDPG and the PettingZoo loader through the public API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_resumes_exactly

import rltasks
from rltasks.envs.multi import ParallelLoader
from rltasks.tasks.offpolicy import NoisyActorTask

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


def test_maddpg_acts_and_keeps_its_noise_as_the_shared_core_does():
    """Random actions in [-1, 1] rescaled to the Box, the noise restarted at every episode's
    end, and the buffer and noise in the state, as for DDPG (checkpoint keys unchanged)."""
    task = rltasks.make_task("maddpg", env="mpe2/simple_spread_v3", seed=4, num_envs=2,
                             steps_per_epoch=250)
    task.init(**FAST, noise="ornstein_uhlenbeck")
    assert isinstance(task, NoisyActorTask)
    stored, env_actions = task.random_actions()
    assert stored.shape == (2, 3, 5) and np.abs(stored).max() <= 1.0
    space = task.action_space
    np.testing.assert_allclose(env_actions, (space.low + space.high) / 2
                               + (space.high - space.low) / 2 * stored, rtol=1e-6)
    assert env_actions.dtype == space.dtype and space.contains(env_actions[0])
    task.fit(1)  # five 25-step episodes per env: the epoch's last step ends them all
    assert task.history[-1]["gradient_steps"] > 0
    assert torch.equal(task.noise.x, torch.zeros(2, 15))
    task.noise.x = torch.ones(2, 15)
    task.episode_ended(np.array([False, True]))
    assert task.noise.x[0].eq(1).all() and task.noise.x[1].eq(0).all()
    assert list(task.state_dict()["extra"]) == ["buffer", "noise"]
