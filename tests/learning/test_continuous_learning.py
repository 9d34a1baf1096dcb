"""DDPG, TD3 and SAC really learn Pendulum-v1 within 20k env steps on a fixed seed.

64-unit layers (the defaults are 256) keep each gradient step cheap enough for CI; Pendulum
does not need more.
"""

from __future__ import annotations

import pytest
from helpers import train_until

import rltasks

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("name", "threshold"), [("sac", -250.0), ("td3", -250.0),
                                                  ("ddpg", -300.0)])
def test_solves_pendulum_within_20k_steps(name, threshold):
    task = rltasks.make_task(name, env="Pendulum-v1", seed=0, steps_per_epoch=2048)
    task.init(hidden=64)
    score, steps = train_until(task, threshold, 20_000)
    assert score >= threshold, f"mean eval return {score} after {steps} steps"
