"""REINFORCE, A2C and DQN really learn CartPole and Acrobot, asserted on their final policies.

A learner that reaches a bar once and collapses must fail, so each test trains a fixed budget
and asserts on the mean of the last three evaluations (10 deterministic episodes after each
epoch; the last is the final policy). On CartPole-v1 a random policy scores 22, always pushing
one way 9. Measured here, evaluations after each epoch (seeds 0 and 1):

- A2C, the defaults (rl-zoo3's set), epochs of 10k steps: 419 275 190 210 483 354 359 500 500
  500 436 78 and 347 257 235 239 500 500 482 483 301 97 162 500: it solves CartPole and falls
  off again with a constant learning rate (a linear decay to 0 freezes it lower: 145 and 252
  at 100k). The mean of evaluations 6-8 is 404 and 488; the bar is 300.
- REINFORCE (`pg`), the defaults, epochs of 10k steps: 97 125 110 128 130 136 121 131 139 174
  and 67 77 82 84 87 88 91 109 112 118; it learns slowly and steadily (247 and 148 at 120k).
  The mean of evaluations 8-10 is 148 and 113; the bar is 90, four times random.
- DQN, the defaults (rl-zoo3's CartPole set), epochs of 5k steps: with uniform replay 74 100
  101 149 71 125 208 500 94 500 (seed 0) and 115 107 96 80 500 500 500 500 187 253 (seed 1);
  with prioritized replay 115 144 98 126 114 500 500 500 142 94 (seed 0). It solves CartPole
  and does not stay there, as SB3's DQN with these settings does not on every seed either
  (the fidelity comparison is issue 17's). Means of the last three: 365, 313 and 245; the bar
  is 200.
- DQN on Acrobot-v1 (random actions: -500, the time limit, in all of 30 episodes), the
  defaults, epochs of 10k steps, seed 0: -500 -114 -500 -133 -83 -80 -78 -79 -133 -70. The
  mean of evaluations 6-8 is -79; the bar is -100.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import final_scores

import rltasks

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [0, 1])
def test_a2c_solves_cartpole_in_80k_steps(seed):
    task = rltasks.make_task("a2c", env="CartPole-v1", seed=seed, steps_per_epoch=10_000).init()
    scores = final_scores(task, 8, last=3)
    assert np.mean(scores) >= 300.0, f"last evaluations {scores} after {task.env_steps} steps"


@pytest.mark.parametrize("seed", [0, 1])
def test_reinforce_learns_cartpole_in_100k_steps(seed):
    task = rltasks.make_task("pg", env="CartPole-v1", seed=seed, steps_per_epoch=10_000).init()
    scores = final_scores(task, 10, last=3)
    assert np.mean(scores) >= 90.0, f"last evaluations {scores} after {task.env_steps} steps"


@pytest.mark.parametrize(("replay", "seed"), [("uniform", 0), ("uniform", 1),
                                            ("prioritized", 0)])
def test_dqn_learns_cartpole_in_50k_steps(replay, seed):
    task = rltasks.make_task("dqn", env="CartPole-v1", seed=seed, steps_per_epoch=5000)
    scores = final_scores(task.init(replay=replay), 10, last=3)
    assert np.mean(scores) >= 200.0, f"last evaluations {scores} after {task.env_steps} steps"


def test_dqn_swings_the_acrobot_up_in_80k_steps():
    task = rltasks.make_task("dqn", env="Acrobot-v1", seed=0, steps_per_epoch=10_000).init()
    scores = final_scores(task, 8, last=3)
    assert np.mean(scores) >= -100.0, f"last evaluations {scores} after {task.env_steps} steps"
