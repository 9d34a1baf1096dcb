"""DDPG, TD3 and SAC really learn Pendulum-v1, and SAC with gSDE MountainCarContinuous-v0,
asserted on the final policy.

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

SAC on MountainCarContinuous-v0 with its per-env defaults (rl-zoo3's set: gSDE at a fixed
temperature of 0.1, 64-unit layers, 32 gradient steps of batch 512 every 32 env steps, and
PyTorch's default init, SB3's, on which the set was tuned): the car must find a reward of
100 that it never sees by chance; a random policy scores -33 (30 episodes; at most -31),
zero force 0. Measured 2026-12-04 (AMD EPYC), evaluations after each 5,000 steps, seed 0:
-2.6 -3.4 -4.0 -27.7 40.9 90.2 91.3 91.2 90.7 93.7; at 40k steps seeds 1-4 score 93.2, 93.4,
94.1 and 94.3. Under the orthogonal init (``ortho_init=True``) seeds 1 and 2 never found the
hilltop in 50k steps (-1.4, -0.5), and without gSDE (``use_sde=False``, orthogonal) seed 0
learned to stand still (-0.01). The test asserts the final policy of seed 0 after 40k steps:
>= 80, the hilltop reached.
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


def test_sac_with_gsde_climbs_the_mountain():
    task = rltasks.make_task("sac", env="MountainCarContinuous-v0", seed=0,
                             steps_per_epoch=10_000)
    (final,) = final_scores(task.init(), 4)
    assert final >= 80.0, f"final policy scores {final} after {task.env_steps} steps"
