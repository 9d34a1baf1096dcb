"""DQN's switches, exploration choices, target updates and resume, through the public API."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_resumes_exactly, assert_same_state

import rltasks
from rltasks.explore import POLICIES, POLICY_HPARAMS

FAST = dict(buffer_size=2000, learning_starts=64, train_freq=32, gradient_steps=4,
            batch_size=32, hidden=32)


def dqn(**kwargs):
    return rltasks.make_task("dqn", env="CartPole-v1", seed=5, steps_per_epoch=256, **kwargs)


def test_a_continuous_env_is_refused_naming_the_tasks_that_fit():
    with pytest.raises(ValueError) as info:
        rltasks.make_task("dqn", env="Pendulum-v1")
    message = str(info.value)
    assert "dqn needs Discrete actions but Pendulum-v1 has Box" in message
    assert "tasks that fit it: a2c, ddpg, pg, ppo, sac, td3" in message and "\n" not in message


def test_space_offers_every_exploration_policy_and_its_parameters():
    space = dqn().get_space(scope="all")
    assert space["exploration"] == f"choices({list(POLICIES)!r})"
    assert set(POLICY_HPARAMS) <= set(space)
    assert {"double", "dueling", "n_step", "loss", "replay", "target_update", "tau",
            "train_freq", "gradient_steps", "learning_starts"} <= set(space)
    assert dqn().num_envs == 1


@pytest.mark.parametrize("exploration", sorted(POLICIES))
def test_every_exploration_policy_trains_and_resumes_exactly(exploration, tmp_path):
    hp = dict(FAST, exploration=exploration, replay="prioritized", n_step=3)
    straight = assert_resumes_exactly(lambda: dqn().init(**hp), tmp_path)
    row = straight.history[-1]
    assert row["gradient_steps"] == 8 * 4 and row["buffer"] == 512


@pytest.mark.parametrize("switches", [
    dict(double=True), dict(dueling=True), dict(n_step=5), dict(loss="mse"),
    dict(tau=0.05, target_update=1), dict(replay="prioritized", per_alpha=0.0),
])
def test_switches_train(switches):
    task = dqn().init(**FAST, **switches)
    task.fit(1)
    assert task.history[-1]["gradient_steps"] > 0
    assert torch.isfinite(torch.tensor(task.history[-1]["loss"]))
    if switches.get("dueling"):
        assert {"value.weight", "advantage.weight"} <= set(task.state_dict()["modules"]["q"])


def test_hard_target_update_copies_the_online_network():
    task = dqn().init(**FAST, target_update=256)  # once per 256-step epoch, after training
    task.fit(1)
    state = task.state_dict()["modules"]
    assert_same_state(state["q"], state["target"])
    soft = dqn().init(**FAST, target_update=1, tau=0.01)
    soft.fit(1)
    s = soft.state_dict()["modules"]
    assert not torch.equal(s["q"]["net.0.weight"], s["target"]["net.0.weight"])


def test_no_gradient_step_before_learning_starts():
    task = dqn().init(**{**FAST, "learning_starts": 1000})
    task.fit(2)
    assert [row["gradient_steps"] for row in task.history] == [0, 0]
    assert task.history[-1]["buffer"] == 512


def test_acting_skips_the_q_network_while_every_env_explores():
    """With epsilon at 1 the network computes only the updates; at 0 it also acts once per
    step after ``learning_starts`` (random actions before it, as always)."""
    def forwards(eps):
        task = dqn().init(**{**FAST, "eps_initial": eps, "eps_min": eps})
        calls = []
        task.q.register_forward_hook(lambda *_: calls.append(1))
        task.fit(1)
        assert task.history[-1]["gradient_steps"] > 0
        return len(calls)

    assert forwards(0.0) - forwards(1.0) == 256 - FAST["learning_starts"]


@pytest.mark.parametrize(("num_envs", "train_freq", "subsample", "learning_starts", "updates"), [
    (1, 4, 2, 64, (256 - 60) // 2),  # one per 2 env steps from the period ending at 64
    (1, 256, 2, 0, 128),  # DQN's defaults: 128 per 256, rl-zoo3's CartPole set
    (4, 2, 1, 0, 256),  # two periods per vector step: all 4 transitions count
    (1, 8, 16, 0, 256 // 8),  # fewer steps than subsample_steps: still one per phase
])
def test_gradient_steps_minus_one_takes_one_update_per_subsample_steps(
        num_envs, train_freq, subsample, learning_starts, updates):
    task = rltasks.make_task("dqn", env="CartPole-v1", seed=5, steps_per_epoch=256,
                             num_envs=num_envs).init(
        **{**FAST, "learning_starts": learning_starts, "train_freq": train_freq,
           "gradient_steps": -1, "subsample_steps": subsample, "n_step": 1})
    task.fit(1)
    assert task.history[-1]["gradient_steps"] == updates


def test_subsample_steps_is_hunted_only_with_gradient_steps_minus_one():
    assert dqn().get_space()["subsample_steps"] == "choices([1, 2, 4, 8])"
    assert "train_freq" in dqn().get_space()
    fixed = rltasks.make_task("dqn", env="CartPole-v1", gradient_steps=4)
    assert "subsample_steps" not in fixed.get_space()
    with pytest.raises(ValueError, match=r"gradient_steps=0 is out of range: int in \[-1, "
                                         r"10000\] except 0$"):
        dqn().init(gradient_steps=0)


def test_an_update_clips_the_global_gradient_norm_to_max_grad_norm():
    """Through ``Task.optimizer_step``: with plain SGD (lr 1) the step is the clipped gradient,
    whose norm is ``max_grad_norm`` exactly when the raw gradient is larger."""
    task = dqn().init(**FAST, optimizer="sgd", lr=1.0, momentum=0.0, max_grad_norm=1e-3)
    task.fit(1)
    before = [p.detach().clone() for p in task.q.parameters()]
    task.train_step()
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(task.q.parameters(), before,
                                                                 strict=True)])
    assert step.norm().item() == pytest.approx(1e-3, rel=1e-3)
    grads = torch.cat([p.grad.flatten() for p in task.q.parameters()])
    assert grads.norm().item() == pytest.approx(1e-3, rel=1e-3)  # clipped before the step


def test_cartpole_defaults_anneal_lr_to_zero_over_the_horizon_and_stay_constant_without_one():
    """DQN's CartPole set (docs/algorithms.md) anneals the learning rate linearly over the
    horizon; a task without one (the Python API without ``horizon``) keeps it constant."""
    task = rltasks.make_task("dqn", env="CartPole-v1", seed=0, steps_per_epoch=1024,
                             horizon=2).init(learning_starts=0, train_freq=256,
                                             gradient_steps=1)
    try:
        assert (task.hp["lr_schedule"], task.hp["double"], task.hp["n_step"]) == ("linear",
                                                                                  True, 3)
        task.fit(1)
        assert task.history[-1]["lr"] == pytest.approx(2.3e-3 / 2)
        task.fit(2)
        assert task.history[-1]["lr"] == 0.0
    finally:
        task.close()
    plain = rltasks.make_task("dqn", env="CartPole-v1", seed=0, steps_per_epoch=256)
    try:
        assert plain.init().hp["lr_schedule"] == "constant" and plain.horizon is None
    finally:
        plain.close()
