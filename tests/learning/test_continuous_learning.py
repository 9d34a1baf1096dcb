"""DDPG, TD3 and SAC really learn Pendulum-v1, asserted on the final policy.

64-unit layers (the defaults are 256) keep each gradient step cheap enough for CI; Pendulum
does not need more. Measured here: over 30 episodes a random policy scores -1188 and zero
torque -1195 (never swinging up). With 10 evaluation episodes after each epoch of 2,048 steps
(seed 0), over 10 epochs:

- SAC: -855 -199 -196 -203 -204 -200 -198 -200 -199 -201
- TD3: -1561 -927 -339 -208 -198 -196 -204 -203 -201 -199
- DDPG: -1588 -221 -197 -194 -201 -202 -201 -200 -199 -200

SAC's evaluations depend on the CPU's float kernels: on an AMD EPYC (2026-12-02) seed 0 went
-882 -201 -759 -205 -203 and seed 1 -1096 -147 -143 -144 -143, so its test trains 5 epochs,
two past the dip. TD3 and DDPG train one epoch past the first that scores above -250
(measured on that machine too: -203 after 5 epochs, -196 after 3). Each test asserts on its
final policy.
"""

from __future__ import annotations

import pytest
from helpers import final_scores

import rltasks

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("name", "epochs"), [("sac", 5), ("td3", 5), ("ddpg", 3)])
def test_swings_the_pendulum_up(name, epochs):
    task = rltasks.make_task(name, env="Pendulum-v1", seed=0, steps_per_epoch=2048)
    (final,) = final_scores(task.init(hidden=64), epochs)
    assert final >= -250.0, f"final policy scores {final} after {task.env_steps} steps"
