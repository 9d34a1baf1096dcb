"""The Task contract of docs/design.md, exercised through the public API."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import assert_resumes_exactly, assert_same_state

import rltasks
from rltasks.device import flushing_subnormals
from rltasks.task import BadResume, NonFiniteError

SMALL = dict(num_envs=4, seed=3, steps_per_epoch=512)


def small_task(**kwargs):
    return rltasks.make_task("ppo", env=kwargs.pop("env", "CartPole-v1"), **{**SMALL, **kwargs})


def test_known_tasks_and_unknown_task():
    assert "ppo" in rltasks.known_tasks()
    with pytest.raises(ValueError, match="unknown task 'nope'.*ppo"):
        rltasks.make_task("nope", env="CartPole-v1")


def test_unknown_env_names_the_env_and_close_matches():
    with pytest.raises(ValueError, match="unknown env id 'CartPole-v9'.*CartPole-v1"):
        rltasks.make_task("ppo", env="CartPole-v9")


def test_space_lists_every_hyperparameter_and_fixed_ones_leave_it():
    task = small_task()
    space = task.get_space(scope="all")
    assert space["lr"] == "loguniform(1e-5, 1e-2)"
    assert "optimizer" in space and "adam" in space["optimizer"]
    assert all(len(name) >= 2 for name in space)
    # every one but precision, which applies to image bodies only (CartPole: vectors)
    assert set(space) == set(type(task).hparam_specs()) - {"precision"}
    fixed = small_task(lr=1e-3, optimizer="sgd")
    assert "lr" not in fixed.get_space(scope="all") and "optimizer" not in fixed.get_space(
        scope="all")
    assert "lr" in task.get_space() and "lr" not in fixed.get_space()
    assert fixed.get_space(epochs="fidelity(1, 64, 4)")["epochs"] == "fidelity(1, 64, 4)"
    fixed.init()
    assert fixed.hparams()["lr"] == 1e-3 and fixed.hparams()["optimizer"] == "sgd"
    with pytest.raises(ValueError, match="lr=0.01 contradicts"):
        fixed.init(lr=0.01)


@pytest.mark.parametrize(("hparams", "message"), [
    ({"learning_rate": 1e-3}, r"unknown hyperparameter\(s\) \['learning_rate'\]"),
    ({"lr": -0.1}, r"lr=-0.1 is out of range"),
    ({"gamma": 1.5}, r"gamma=1.5 is out of range"),
    ({"optimizer": "lbfgs"}, r"optimizer='lbfgs' is not one of"),
    ({"n_steps": "many"}, r"n_steps='many' is not a valid int"),
    ({"lr_schedule": "linear"}, r"need a horizon"),
])
def test_init_rejects_bad_hyperparameters_with_one_line(hparams, message):
    with pytest.raises(ValueError, match=message) as info:
        small_task().init(**hparams)
    assert "\n" not in str(info.value)


def test_orion_floats_are_rounded_for_int_hyperparameters():
    task = small_task().init(n_steps=31.7, update_epochs="3.666", norm_adv="False")
    assert task.hparams()["n_steps"] == 32 and task.hparams()["update_epochs"] == 4
    assert task.hparams()["norm_adv"] is False


def test_fit_is_absolute_and_idempotent():
    task = small_task().init(update_epochs=2)
    task.fit(2)
    assert task.epoch == 2 and len(task.history) == 2
    assert task.env_steps == 2 * 512
    before = copy.deepcopy(task.state_dict())  # the task's own tensors otherwise
    task.fit(2)
    task.fit(1)
    assert_same_state(before, task.state_dict())
    row = task.history[-1]
    assert row["epoch"] == 2 and row["env_steps"] == 1024
    assert {"loss", "entropy", "approx_kl", "lr"} <= set(row)


def test_same_seed_same_state_and_resume_in_process_is_exact(tmp_path):
    straight = assert_resumes_exactly(lambda: small_task().init(update_epochs=2), tmp_path,
                                      stop=1, end=3)
    other_seed = rltasks.make_task("ppo", env="CartPole-v1", **{**SMALL, "seed": 4})
    other_seed.init(update_epochs=2)
    other_seed.fit(3)
    assert not torch.equal(other_seed.state_dict()["modules"]["actor"]["0.weight"],
                           straight.state_dict()["modules"]["actor"]["0.weight"])


class FlushProbe:
    """An observer that records whether subnormals are flushed while the epoch's work runs."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_epoch_end(self, task, metrics) -> None:
        self.seen.append(flushing_subnormals())


@pytest.mark.parametrize("before", [False, True])
def test_fit_and_evaluate_flush_subnormals_and_restore_the_threads_setting(before):
    """Adam's second moments decay into subnormals, where the CPU is ~10x slower: a task
    computes with them flushed to zero (rltasks.device.cpu_numerics), and leaves the thread
    as it found it (hypothesis, for one, refuses to run in a process that flushes)."""
    probe = FlushProbe()
    task = small_task(observers=[probe]).init()
    act, seen = task.act, []
    task.act = lambda obs: seen.append(flushing_subnormals()) or act(obs)
    try:
        torch.set_flush_denormal(before)
        assert flushing_subnormals() is before
        task.fit(1)
        assert probe.seen == [True] and flushing_subnormals() is before
        task.evaluate(episodes=1)
        assert seen and all(seen) and flushing_subnormals() is before
    finally:
        torch.set_flush_denormal(False)
        task.close()


def test_evaluate_does_not_change_the_state_and_is_repeatable():
    task = small_task().init(update_epochs=2)
    task.fit(1)
    before = copy.deepcopy(task.state_dict())  # the task's own tensors otherwise
    first, second = task.evaluate(episodes=3), task.evaluate(episodes=3)
    assert first == second
    assert set(first) >= {"return_mean", "return_std", "length_mean"}
    assert first["episodes"] == 3
    assert_same_state(before, task.state_dict())


def test_failed_fit_poisons_the_task(monkeypatch):
    task = small_task().init(update_epochs=1)
    task.fit(1)

    def boom():
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(task, "train_epoch", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        task.fit(2)
    for use in (lambda: task.fit(3), task.state_dict, lambda: task.evaluate(1)):
        with pytest.raises(BadResume, match="simulated failure.*build a new task"):
            use()


def test_nan_loss_stops_with_a_clear_error(monkeypatch):
    task = small_task().init(update_epochs=1)
    real_update = task.update
    monkeypatch.setattr(task, "update", lambda b: {**real_update(b), "loss": float("nan")})
    with pytest.raises(NonFiniteError, match="loss became nan in epoch 1.*lower lr"):
        task.fit(1)
    assert task.epoch == 0


def test_nan_gradients_stop_the_epoch_before_the_step_with_a_clear_error(monkeypatch):
    """A NaN loss in the first of an epoch's rollouts is caught at the gradient clip, before
    the step: the networks stay finite (the next rollout would fail sampling from NaN)."""
    task = rltasks.make_task("ppo", env="CartPole-v1", num_envs=2, seed=0,
                             steps_per_epoch=512).init(n_steps=32)
    real = task.loss
    monkeypatch.setattr(task, "loss", lambda *a: tuple(x * float("nan") for x in real(*a)))
    before = {k: v.clone() for k, v in task.modules["actor"].state_dict().items()}
    with pytest.raises(NonFiniteError, match=r"^gradient norm became nan in epoch 1: .*lower lr"):
        task.fit(1)
    after = task.modules["actor"].state_dict()
    assert task.epoch == 0 and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", ["ppo", "a2c", "pg"])
def test_continuous_actions_are_rescaled_into_the_box(name):
    task = rltasks.make_task(name, env="Pendulum-v1", **SMALL).init()
    task.fit(1)
    obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32) * 5
    actions = task.act(obs)
    assert actions.shape == (16, 1)
    assert (actions >= -2.0).all() and (actions <= 2.0).all()
    assert "log_std" in task.state_dict()["modules"]


def test_normalisation_statistics_are_part_of_the_state(tmp_path):
    straight = assert_resumes_exactly(
        lambda: small_task(norm_obs=True, norm_reward=True).init(update_epochs=1), tmp_path)
    state = straight.state_dict()["loader"]
    assert state["obs_rms"]["count"] > 1000 and state["ret_rms"] is not None


def test_sync_and_async_loaders_give_the_same_run():
    a = small_task(vectorization="sync", num_envs=2).init(update_epochs=1)
    b = small_task(vectorization="async", num_envs=2).init(update_epochs=1)
    try:
        a.fit(1)
        b.fit(1)
        assert_same_state(a.state_dict()["modules"], b.state_dict()["modules"])
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "adamax", "sgd", "rmsprop"])
def test_every_optimizer_trains_and_resumes(optimizer, tmp_path):
    assert_resumes_exactly(lambda: small_task().init(optimizer=optimizer, update_epochs=1),
                           tmp_path)


def test_namespaced_optimizer_hyperparameters_apply_only_to_their_optimizer():
    task = small_task()
    task.init(**{"optimizer": "sgd", "momentum": 0.1, "sgd.momentum": 0.7,
                 "rmsprop.momentum": 0.2, "adam.beta1": 0.5})
    (opt,) = task.optimizers.values()
    assert type(opt).__name__ == "SGD" and opt.param_groups[0]["momentum"] == 0.7
    recorded = task.hparams()
    assert recorded["momentum"] == 0.7 and "beta1" not in recorded and "beta2" not in recorded
    task.init(**{"optimizer": "adam", "adam.beta1": 0.5, "sgd.momentum": 0.7})
    (opt,) = task.optimizers.values()
    assert opt.param_groups[0]["betas"] == (0.5, 0.999) and "momentum" not in task.hparams()
    with pytest.raises(ValueError, match="unknown hyperparameter 'sgd.beta1'"):
        task.init(**{"sgd.beta1": 0.9})


def test_adopt_continues_a_state_under_new_hyperparameters():
    parent = small_task()
    parent.init(lr=1e-3, update_epochs=2)
    parent.fit(1)
    state, old = parent.state_dict(), parent.hparams()
    child = small_task()
    child.init(lr=5e-4, update_epochs=2, ent_coef=0.01)
    changes = child.adopt_state_dict(state, old)
    assert changes == {"lr": [1e-3, 5e-4], "ent_coef": [0.0, 0.01]}
    assert child.epoch == 1 and child.env_steps == parent.env_steps
    for key, module in parent.modules.items():  # the parent's networks
        assert_same_state(module.state_dict(), child.modules[key].state_dict())
    (opt,) = child.optimizers.values()
    assert opt.param_groups[0]["lr"] == 5e-4  # its own settings, the parent's moments
    assert torch.equal(opt.state[0]["exp_avg"], state["optimizers"]["opt"]["state"][0]["exp_avg"])
    child.fit(2)
    assert child.history[1]["hparams_changed"] == changes
    assert "hparams_changed" not in child.history[0]
    # another optimizer family keeps the networks and starts its moments afresh
    sgd = small_task()
    sgd.init(optimizer="sgd", lr=1e-3, update_epochs=2)
    assert sgd.adopt_state_dict(state, old)["optimizer"] == ["adam", "sgd"]
    assert sgd.optimizers["opt"].state == {}
    # what reshapes the networks cannot change
    wide = small_task()
    wide.init(hidden=128, lr=1e-3, update_epochs=2)
    with pytest.raises(ValueError, match=r"cannot continue this checkpoint with \['hidden'\]"):
        wide.adopt_state_dict(state, old)
