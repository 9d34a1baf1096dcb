"""Hindsight replay makes sparse-reward goals learnable: DDPG+HER solves 15-bit flipping where
DDPG alone does not, and SAC+HER solves the point-reach env (fixed seeds)."""

from __future__ import annotations

import pytest
from helpers import train_until

import rltasks

pytestmark = pytest.mark.slow

BITS = dict(hidden=64, gamma=0.95, noise_sigma=0.2, noise_sigma_min=0.2)


def success_within(name: str, env: str, budget: int, **hparams) -> tuple[float, int]:
    """The best success rate of 20 evaluation episodes after each epoch, until it reaches 0.9
    or the budget of env steps is spent."""
    task = rltasks.make_task(name, env=env, seed=0, steps_per_epoch=2048).init(**hparams)
    return train_until(task, 0.9, budget, metric="success_rate", episodes=20)


def test_ddpg_with_her_solves_15_bit_flipping_and_without_her_does_not():
    with_her, steps = success_within("ddpg", "rltasks/BitFlippingContinuous-v0", 40_960,
                                     her=True, **BITS)
    assert with_her >= 0.9, f"success {with_her} after {steps} steps"
    without, steps = success_within("ddpg", "rltasks/BitFlippingContinuous-v0", 40_960,
                                    her=False, **BITS)
    assert without < 0.5, f"DDPG without HER reached success {without} in {steps} steps"


def test_sac_with_her_solves_point_reach():
    success, steps = success_within("sac", "rltasks/PointReach-v0", 20_480, her=True,
                                    hidden=64, gamma=0.95)
    assert success >= 0.9, f"success {success} after {steps} steps"
