"""MADDPG improves the team return on simple_spread over a random policy.

Measured here (seed 0, 50 evaluation episodes): a uniformly random policy scores -24.2 per
episode (the agents' mean reward summed over 25 steps); MADDPG with its defaults -20.0 after
30k env steps and -18.1 after 55k. The test asks for a margin of 4 within 60k steps.
"""

from __future__ import annotations

import numpy as np
import pytest

import rltasks
from rltasks.envs.multi import ParallelLoader

pytestmark = pytest.mark.slow
ENV = "mpe2/simple_spread_v3"


def random_policy_return(episodes: int = 100) -> float:
    loader = ParallelLoader(ENV, num_envs=episodes)
    rng = np.random.default_rng(0)
    loader.reset(0)
    total = np.zeros(episodes)
    for _ in range(25):
        _, rewards, *_ = loader.step(rng.uniform(0, 1, (episodes, 3, 5)).astype(np.float32))
        total += rewards.mean(1)
    return float(total.mean())


def test_maddpg_beats_a_random_policy_on_simple_spread():
    baseline = random_policy_return()
    assert -27 < baseline < -22  # the measured -24.2, as a sanity check of the env
    task = rltasks.make_task("maddpg", env=ENV, seed=0, steps_per_epoch=5000).init()
    best = -np.inf
    while task.env_steps < 60_000:
        task.fit(task.epoch + 1)
        best = max(best, task.evaluate(episodes=50)["return_mean"])
    assert best >= baseline + 4.0, f"MADDPG {best:.2f} vs random {baseline:.2f}"
