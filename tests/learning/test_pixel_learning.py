"""PPO and DQN learn rltasks/Catch-v0 from its 80x80 pixels, asserted on the final policy.

Catch (``rltasks.envs.catch``) ends every 9 steps with +1 (caught) or -1. Measured here: a
random policy scores -0.60 (4,000 episodes), staying put -0.80; a policy that follows the
ball +1. With the per-env defaults (Nature CNN torso) and epochs of 4,096 steps, each seed's
50-episode evaluation after epochs 1, 2 and 3 (2026-12-04, seeds 0 and 1): PPO 1.0 1.0 1.0
and 1.0 1.0 1.0; DQN 1.0 1.0 1.0 and 1.0 1.0 1.0. With ``precision='bfloat16'`` (the torso
in mixed precision; 2026-12-06, seeds 0 and 1): PPO 0.56 1.0 1.0 and 1.0 1.0 1.0; DQN 1.0
1.0 1.0 and 1.0 1.0 1.0. The tests train two epochs and ask for 0.8 (90% caught), bfloat16
on seed 0.
"""

from __future__ import annotations

import pytest
from helpers import final_scores

import rltasks

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("name", "seed", "precision", "epochs"), [
    ("ppo", 0, "float32", 1), ("ppo", 1, "float32", 1), ("dqn", 0, "float32", 1),
    ("dqn", 1, "float32", 1), ("ppo", 0, "bfloat16", 2), ("dqn", 0, "bfloat16", 1)])
def test_learns_to_catch_from_pixels(name, seed, precision, epochs):
    task = rltasks.make_task(name, env="rltasks/Catch-v0", seed=seed, steps_per_epoch=4096)
    (final,) = final_scores(task.init(precision=precision), epochs, episodes=50)
    assert final >= 0.8, f"final policy scores {final} after {task.env_steps} steps"
