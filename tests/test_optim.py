"""Optimizer and schedule blocks."""

from __future__ import annotations

import math

import pytest
import torch

from rltasks.optim import OPTIM_HPARAMS, OPTIMIZERS, SCHEDULES, make_optimizer, scheduled, set_lr

EXPECTED = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax,
            "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_optimizer_builds_and_steps(name):
    assert set(OPTIMIZERS) == set(EXPECTED)
    param = torch.nn.Parameter(torch.ones(3))
    hp = {k: spec.default for k, spec in OPTIM_HPARAMS.items()} | {"optimizer": name, "lr": 0.1}
    opt = make_optimizer([param], hp)
    assert type(opt) is EXPECTED[name]
    assert opt.param_groups[0]["lr"] == 0.1
    (param**2).sum().backward()
    opt.step()
    assert (param < 1).all()
    set_lr(opt, 0.01)
    assert opt.param_groups[0]["lr"] == 0.01
    if name in ("sgd", "rmsprop"):
        assert opt.param_groups[0]["momentum"] == hp["momentum"]


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        make_optimizer([torch.nn.Parameter(torch.ones(1))], {"optimizer": "lbfgs"})


def test_schedules():
    assert set(SCHEDULES) == {"constant", "linear", "cosine", "exponential"}
    assert scheduled(1e-3, "constant", 0.7) == 1e-3
    assert scheduled(1e-3, "linear", 0.0) == 1e-3
    assert scheduled(1e-3, "linear", 0.25) == pytest.approx(7.5e-4)
    assert scheduled(1e-3, "linear", 1.5) == 0.0
    assert scheduled(2.0, "cosine", 0.5) == pytest.approx(1.0)
    assert scheduled(2.0, "cosine", 1.0) == pytest.approx(0.0)
    assert scheduled(1.0, "exponential", 1.0) == pytest.approx(0.01)
    assert scheduled(1.0, "exponential", 0.5) == pytest.approx(0.1)
    values = [scheduled(1.0, name, p / 10) for name in SCHEDULES for p in range(11)]
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in values)


def test_linear_lr_schedule_follows_env_steps_in_a_task():
    import rltasks

    task = rltasks.make_task("ppo", env="CartPole-v1", num_envs=2, steps_per_epoch=256,
                             horizon=4).init(lr=1e-3, lr_schedule="linear", update_epochs=1)
    task.fit(2)
    # 4 rollouts of 64 steps per epoch; each update uses the lr at its step count, and the
    # epoch row reports their mean: linear decay to 0 over 4 epochs of 256 steps.
    expected = [sum(1e-3 * (1 - 64 * k / 1024) for k in range(e * 4 + 1, e * 4 + 5)) / 4
                for e in range(2)]
    assert [row["lr"] for row in task.history] == pytest.approx(expected)
