"""MADDPG improves the team return on simple_spread well beyond what doing nothing scores,
asserted on the final policy.

Measured here (the agents' mean reward summed over 25 steps; 100 episodes): a uniformly
random policy scores -24.2, zero actions (every agent stays) -23.1 (std 7.4 per episode).
MADDPG with its defaults, seed 0, 50 evaluation episodes after each epoch of 10k steps:
-28.9 -24.1 -20.7 -19.2 -18.9 -18.2, then -17.8 -18.0 -17.3 -17.3 -16.9 -16.3 to 120k. On
another CPU (an AMD EPYC, 2026-12-02) the float kernels give other runs: epochs 5-8 scored
-19.47 -19.23 -18.44 -17.51 (seed 0) and -18.46 -18.27 -17.81 -17.49 (seed 1), so the test
trains 7 epochs, not 6, to keep a margin. The bar, -19.5 after 70k steps, is 3.6 above doing
nothing (about 3.5 standard errors of a 50-episode mean) and 4.7 above random.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import final_scores

import rltasks
from rltasks.envs.multi import ParallelLoader

pytestmark = pytest.mark.slow
ENV = "mpe2/simple_spread_v3"


def zero_action_return(episodes: int = 100) -> float:
    loader = ParallelLoader(ENV, num_envs=episodes)
    loader.reset(0)
    total = np.zeros(episodes)
    for _ in range(25):
        _, rewards, *_ = loader.step(np.zeros((episodes, 3, 5), np.float32))
        total += rewards.mean(1)
    return float(total.mean())


def test_maddpg_beats_doing_nothing_on_simple_spread():
    baseline = zero_action_return()
    assert baseline == pytest.approx(-23.14, abs=0.01)  # the measured baseline: same env
    task = rltasks.make_task("maddpg", env=ENV, seed=0, steps_per_epoch=10_000).init()
    (final,) = final_scores(task, 7, episodes=50)
    assert final >= -19.5, f"MADDPG's final policy {final:.2f}, doing nothing {baseline:.2f}"
