"""PPO really learns: return thresholds on fixed seeds within the issue's step budgets."""

from __future__ import annotations

import pytest
from helpers import train_until

import rltasks

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_solves_cartpole_within_100k_steps(seed):
    task = rltasks.make_task("ppo", env="CartPole-v1", num_envs=8, seed=seed).init()
    score, steps = train_until(task, 475.0, 100_000)
    assert score >= 475.0, f"mean eval return {score} after {steps} steps"
    assert steps <= 100_000


def test_ppo_solves_pendulum_within_300k_steps():
    task = rltasks.make_task("ppo", env="Pendulum-v1", num_envs=4, seed=0).init()
    score, steps = train_until(task, -300.0, 300_000, eval_every=2)
    assert score >= -300.0, f"mean eval return {score} after {steps} steps"
    assert steps <= 300_000
