"""REINFORCE, A2C and DQN really learn: thresholds on fixed seeds within the issue's budgets."""

from __future__ import annotations

import pytest
from helpers import train_until

import rltasks

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("replay", ["uniform", "prioritized"])
def test_dqn_solves_cartpole_within_50k_steps(replay):
    task = rltasks.make_task("dqn", env="CartPole-v1", seed=0).init(replay=replay)
    score, steps = train_until(task, 475.0, 50_000)
    assert score >= 475.0, f"mean eval return {score} after {steps} steps"


def test_dqn_reaches_minus_100_on_acrobot():
    task = rltasks.make_task("dqn", env="Acrobot-v1", seed=0).init()
    score, steps = train_until(task, -100.0, 100_000)
    assert score >= -100.0, f"mean eval return {score} after {steps} steps"


@pytest.mark.parametrize("name", ["a2c", "pg"])
def test_actor_critic_solves_cartpole_within_500k_steps(name):
    task = rltasks.make_task(name, env="CartPole-v1", seed=0).init()
    score, steps = train_until(task, 475.0, 500_000, eval_every=2)
    assert score >= 475.0, f"mean eval return {score} after {steps} steps"
