"""Goal envs and hindsight relabelling."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from helpers import assert_resumes_exactly

import rltasks
from rltasks import checkpoint
from rltasks.buffers import HerReplayBuffer, ReplayBuffer, goal_obs
from rltasks.envs.goal import BitFlippingEnv


def test_bit_flipping_env_follows_the_goal_env_convention():
    env = gym.make("rltasks/BitFlipping-v0")
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"observation", "achieved_goal", "desired_goal"}
    assert obs["observation"].shape == (15,) and env.action_space.n == 15
    goal = obs["desired_goal"]
    for bit in np.flatnonzero(obs["observation"] != goal):
        obs, reward, term, trunc, info = env.step(bit)
    assert term and reward == 0.0 and info["is_success"]
    unwrapped = env.unwrapped
    rewards = unwrapped.compute_reward(np.zeros((3, 15)), np.array([[0] * 15, [1] * 15,
                                                                    [0] * 15]), None)
    assert rewards.tolist() == [0.0, -1.0, 0.0]
    cont = BitFlippingEnv(4, continuous=True)
    cont.reset(seed=1)
    before = cont.state.copy()
    cont.step(np.array([1.0, -1.0, 1.0, -1.0]))
    assert (cont.state != before).tolist() == [True, False, True, False]
    reach = gym.make("rltasks/PointReach-v0")
    assert reach.spec.max_episode_steps == 50


def fake_episode(buffer: HerReplayBuffer, n: int) -> None:
    """An episode in 1-D goal space: achieved goal after step t is t+1; desired goal 99."""
    for t in range(n):
        obs = {"observation": np.array([[t]], np.float32),
               "achieved_goal": np.array([[t]], np.float32),
               "desired_goal": np.array([[99.0]], np.float32)}
        step = obs["observation"] + 1
        nxt = {**obs, "observation": step, "achieved_goal": step}
        done = np.array([t == n - 1])
        buffer.add(obs, np.array([[0.5]], np.float32), np.array([-1.0]), nxt,
                   np.array([False]), done)


def reward_fn(achieved, desired, info):
    return -(np.abs(achieved - desired).sum(-1) > 0).astype(np.float32)


@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
def test_relabelled_goals_come_from_the_episode_and_rewards_are_recomputed(strategy):
    buf = HerReplayBuffer(1000, 1, 1, (1,), np.float32, 1, 0.9, reward_fn,
                          np.random.default_rng(0), strategy, k=4, terminate_on_success=True)
    fake_episode(buf, 5)
    assert len(buf) == 5 * (1 + 4)
    n = len(buf)
    obs, nxt, returns, discounts = (buf.obs[:n], buf.next_obs[:n], buf.returns[:n],
                                    buf.discounts[:n])
    assert (obs[:5, 1] == 99).all() and (returns[:5] == -1).all()
    t = obs[5:, 0]  # the step of each relabelled transition
    goals = obs[5:, 1]
    achieved_next = nxt[5:, 0]
    if strategy == "future":
        assert (goals >= t + 1).all()
    elif strategy == "final":
        assert (goals == 5).all()
    assert ((goals >= 1) & (goals <= 5)).all()
    success = goals == achieved_next
    assert (returns[5:] == np.where(success, 0.0, -1.0)).all()
    assert np.allclose(discounts[5:], np.where(success, 0.0, 0.9))  # success terminates
    assert success.any()


def test_state_requires_flushed_episodes_and_round_trips():
    buf = HerReplayBuffer(100, 1, 1, (1,), np.float32, 1, 0.9, reward_fn,
                          np.random.default_rng(0))
    obs = {"observation": np.zeros((1, 1), np.float32), "achieved_goal": np.zeros((1, 1)),
           "desired_goal": np.ones((1, 1))}
    buf.add(obs, np.zeros((1, 1)), np.array([-1.0]), obs, np.array([False]), np.array([False]))
    with pytest.raises(RuntimeError, match="flush"):
        buf.state_dict()
    buf.flush(None)
    state = checkpoint.decode(checkpoint.encode(buf.state_dict()))
    other = HerReplayBuffer(100, 1, 1, (1,), np.float32, 1, 0.9, reward_fn,
                            np.random.default_rng(0))
    other.load_state_dict(state)
    assert len(other) == 5 and np.array_equal(other.obs[:5], buf.obs[:5])


def test_her_on_a_non_goal_env_is_refused():
    with pytest.raises(ValueError, match="her=True needs a goal-conditioned env.*Pendulum-v1"):
        rltasks.make_task("sac", env="Pendulum-v1").init(her=True)


@pytest.mark.parametrize("name", ["ddpg", "td3", "sac"])
def test_her_tasks_train_and_resume_exactly(name, tmp_path):
    hp = dict(her=True, buffer_size=5000, learning_starts=100, batch_size=32, hidden=32)

    def make():
        return rltasks.make_task(name, env="rltasks/PointReach-v0", seed=1,
                                 steps_per_epoch=256).init(**hp)

    straight = assert_resumes_exactly(make, tmp_path)
    assert straight.history[-1]["buffer"] == 512 * 5
    assert "success_rate" in straight.evaluate(4)


def test_training_waits_for_the_first_stored_episode_when_it_starts_earlier():
    """HER stores an episode when it ends (PointReach: 50 steps): with ``learning_starts``
    below that, the first gradient step waits for it instead of sampling an empty buffer."""
    task = rltasks.make_task("sac", env="rltasks/PointReach-v0", seed=1, steps_per_epoch=64)
    task.init(her=True, buffer_size=5000, learning_starts=10, batch_size=32, hidden=32)
    task.fit(1)
    # from the 50th step (its episode stored, 5 transitions each) to the 64th: 15 steps;
    # the epoch's end stores the rest of the next episode
    assert task.history[-1]["gradient_steps"] == 64 - 50 + 1
    assert len(task.buffer) == 64 * 5
    task.close()


@pytest.mark.parametrize("her", [False, True])
def test_the_buffer_not_the_loop_chooses_hindsight_replay(her, monkeypatch):
    """One loop for every buffer: it hands the goal env's dict observations to the buffer,
    which stores them flat (plain replay) or keeps the goals apart to relabel them (HER)."""
    task = rltasks.make_task("ddpg", env="rltasks/PointReach-v0", seed=1, steps_per_epoch=256)
    task.init(her=her, buffer_size=5000, learning_starts=100, batch_size=32, hidden=32)
    assert type(task.buffer) is (HerReplayBuffer if her else ReplayBuffer)
    assert not hasattr(task, "her")
    added, add = [], task.buffer.add

    def recording_add(obs, *rest):
        added.append(obs)
        add(obs, *rest)

    monkeypatch.setattr(task.buffer, "add", recording_add)
    task.fit(1)
    assert len(added) == 256 and all(isinstance(obs, dict) for obs in added)
    assert len(task.buffer) == 256 * (5 if her else 1)
    np.testing.assert_array_equal(task.buffer.obs[0], goal_obs(added[0])[0])
    assert task.buffer.obs.shape[1:] == (task.obs_dim(),)


def test_fetch_reach_from_gymnasium_robotics_trains_with_her():
    pytest.importorskip("gymnasium_robotics")
    task = rltasks.make_task("sac", env="FetchReach-v4", seed=0, steps_per_epoch=200)
    task.init(her=True, hidden=32, learning_starts=100, batch_size=32)
    task.fit(1)
    assert task.history[-1]["buffer"] == 200 * 5 and "success_rate" in task.history[-1]
    assert 0.0 <= task.evaluate(2)["success_rate"] <= 1.0
