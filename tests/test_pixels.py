"""Pixels: rltasks' own image env (Catch), the CNN bodies, uint8 rollouts and replay, and
the tasks that refuse images, through the public API. Learning on Catch and Atari's loader
are tests/learning/test_pixel_learning.py and tests/test_atari.py."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import assert_resumes_exactly

import rltasks


def random_return(episodes: int = 2000) -> float:
    env = gym.make("rltasks/Catch-v0")
    rng, total = np.random.default_rng(0), 0.0
    for episode in range(episodes):
        env.reset(seed=episode)
        done = False
        while not done:
            _, reward, term, trunc, _ = env.step(int(rng.integers(3)))
            total, done = total + reward, term or trunc
    return total / episodes


def test_catch_is_a_uint8_image_env_that_a_random_policy_mostly_loses():
    env = gym.make("rltasks/Catch-v0")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1, 80, 80) and obs.dtype == np.uint8
    assert set(np.unique(obs)) == {0, 255}  # a ball and a paddle, nothing else
    assert random_return() == pytest.approx(-0.6, abs=0.05)  # measured: -0.595 over 4000


def test_catch_rewards_the_paddle_under_the_ball():
    env = gym.make("rltasks/Catch-v0").unwrapped
    env.reset(seed=3)
    rewards = []
    while True:  # follow the ball: always caught
        action = 1 + int(np.sign(env.ball[1] - env.paddle))
        _, reward, term, _, _ = env.step(action)
        rewards.append(reward)
        if term:
            break
    assert rewards == [0.0] * 8 + [1.0]
    with pytest.raises(ValueError, match="rows >= 2 and cols >= 2 that divide size"):
        gym.make("rltasks/Catch-v0", size=81)


@pytest.mark.parametrize("name", ["ppo", "a2c", "pg", "dqn"])
def test_image_tasks_keep_frames_uint8_and_hunt_the_body_not_the_mlp(name):
    task = rltasks.make_task(name, env="rltasks/Catch-v0", seed=0, num_envs=2,
                             steps_per_epoch=64)
    space = task.get_space()
    assert space["body"] == "choices(['nature', 'impala'])"
    assert not {"hidden", "layers", "activation"} & set(space)
    assert "body" not in rltasks.make_task(name, env="CartPole-v1").get_space()
    task.init(**({"learning_starts": 16, "buffer_size": 128, "train_freq": 16}
                 if name == "dqn" else {"n_steps": 16}))
    task.fit(1)
    assert np.asarray(task.obs).dtype == np.uint8
    if name == "dqn":
        obs, next_obs = task.buffer.store.get(np.arange(len(task.buffer)))
        assert obs.dtype == next_obs.dtype == np.uint8 and obs.shape[1:] == (1, 80, 80)
        assert task.history[-1]["gradient_steps"] > 0
    assert np.isfinite(task.history[-1]["loss"])
    assert task.evaluate(episodes=2)["length_mean"] == 9.0


@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_the_body_switch_builds_a_nature_or_an_impala_torso(name):
    def convs(body):
        task = rltasks.make_task(name, env="rltasks/Catch-v0", seed=0).init(body=body)
        net = task.modules["torso" if name == "ppo" else "q"]
        return [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]

    nature, impala = convs("nature"), convs("impala")
    assert [(c.out_channels, c.kernel_size, c.stride) for c in nature] == [
        (32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)), (64, (3, 3), (1, 1))]
    assert len(impala) == 15 and {c.kernel_size for c in impala} == {(3, 3)}


SMALL = {"ppo": {"n_steps": 16, "batch_size": 16}, "dqn": {"learning_starts": 16,
         "buffer_size": 128, "train_freq": 16, "gradient_steps": 2, "batch_size": 16}}


def small_image_task(name, precision, epoch=64):
    return rltasks.make_task(name, env="rltasks/Catch-v0", seed=0, num_envs=2,
                             steps_per_epoch=epoch).init(precision=precision, **SMALL[name])


def torso_of(task):
    return task.modules["torso"] if "torso" in task.modules else task.modules["q"][0]


@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_bfloat16_runs_the_cnn_in_bfloat16_and_the_rest_in_float32(name, tmp_path):
    """``precision='bfloat16'``: the torso's convolutions and linear layer compute in
    bfloat16, its output, the heads, the parameters and their gradients stay float32; the
    float32 run computes in float32 and ends elsewhere; the state dicts have the same keys;
    a bfloat16 run resumes exactly."""
    dtypes = {}
    for precision in ("float32", "bfloat16"):
        task = small_image_task(name, precision)
        torso = torso_of(task)
        conv = next(m for m in torso.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda m, i, o, p=precision: dtypes.update({p: o.dtype}))
        torso.register_forward_hook(lambda m, i, o: assert_float32(o))
        task.fit(1)
        params = [p for module in task.modules.values() for p in module.parameters()]
        assert {p.dtype for p in params} == {torch.float32}
        assert {p.grad.dtype for p in params if p.grad is not None} == {torch.float32}
        assert np.isfinite(task.history[-1]["loss"]) and task.history[-1]["loss"] != 0
        dtypes[precision + " state"] = {k: v.detach().clone()
                                        for k, v in torso.state_dict().items()}
    assert dtypes["float32"] == torch.float32 and dtypes["bfloat16"] == torch.bfloat16
    single, mixed = dtypes["float32 state"], dtypes["bfloat16 state"]
    assert single.keys() == mixed.keys()
    assert any(not torch.equal(single[k], mixed[k]) for k in single)
    assert_resumes_exactly(lambda: small_image_task(name, "bfloat16", 32), tmp_path)


def assert_float32(out) -> None:
    assert out.dtype == torch.float32


def test_bfloat16_on_vector_observations_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^precision='bfloat16' applies to the CNN body of "
                                         r"image observations; CartPole-v1's are \(4,\) "
                                         r"vectors: leave precision at 'float32'$"):
        rltasks.make_task("dqn", env="CartPole-v1").init(precision="bfloat16")
    assert "precision" not in rltasks.make_task("ppo", env="CartPole-v1").get_space(scope="all")
    assert "precision" not in rltasks.make_task("ppo", env="rltasks/Catch-v0").get_space()


def test_ppo_on_images_shares_one_torso_between_actor_and_critic():
    task = rltasks.make_task("ppo", env="rltasks/Catch-v0", seed=0).init()
    torso = {id(p) for p in task.modules["torso"].parameters()}
    opt_params = [id(p) for group in task.optimizers["opt"].param_groups for p in group["params"]]
    assert torso <= set(opt_params) and len(opt_params) == len(set(opt_params))
    assert not torso & {id(p) for p in task.modules["actor"].parameters()}


def test_channels_last_images_are_permuted_for_the_cnn(tmp_path):
    from rltasks.envs.images import image_layout

    assert image_layout((96, 96, 3)) == (3, 96, 96, True)
    assert image_layout((4, 84, 84)) == (4, 84, 84, False)
    task = rltasks.make_task("ppo", env="CarRacing-v3", seed=0, num_envs=1,
                             steps_per_epoch=8).init(n_steps=8, batch_size=8)
    assert task.observation_space.shape == (96, 96, 3)
    task.fit(1)
    assert np.isfinite(task.history[-1]["loss"])


@pytest.mark.parametrize("name", ["sac", "td3", "ddpg"])
def test_tasks_without_an_image_body_refuse_images_naming_those_with_one(name):
    with pytest.raises(ValueError) as info:
        rltasks.make_task(name, env="CarRacing-v3")
    message = str(info.value)
    assert f"{name} learns from vectors, not images, but CarRacing-v3 has Box(0, 255, " in message
    assert "tasks that fit it: a2c, pg, ppo" in message and "\n" not in message


def test_norm_obs_on_images_is_refused_in_one_line():
    with pytest.raises(ValueError, match="norm_obs is for vector observations; "
                                         "rltasks/Catch-v0's are uint8 images"):
        rltasks.make_task("ppo", env="rltasks/Catch-v0", norm_obs=True)


def test_too_small_images_are_refused_naming_the_body():
    with pytest.raises(ValueError, match=r"body='nature' needs images of at least 36x36 "
                                         r"pixels, not 20x20"):
        rltasks.make_task("ppo", env="rltasks/Catch-v0", env_kwargs={"size": 20}).init()


def test_record_films_an_image_policy(tmp_path):
    from helpers import cli, last_json
    from PIL import Image

    from rltasks import checkpoint
    from rltasks.trial.payload import make_payload

    task = rltasks.make_task("ppo", env="rltasks/Catch-v0", seed=0, num_envs=2,
                             steps_per_epoch=64).init(n_steps=16)
    task.fit(1)
    checkpoint.save(tmp_path / "last.ckpt", make_payload(task))
    task.close()
    info = last_json(cli("record", tmp_path, "--out", tmp_path / "catch.gif"))
    assert info["size"] == [80, 80] and info["returns"][0] in (-1.0, 1.0)
    with Image.open(tmp_path / "catch.gif") as img:
        assert img.size == (80, 80)


def test_a_replay_buffer_too_large_to_checkpoint_is_refused_before_training(tmp_path, capsys,
                                                                            monkeypatch):
    """1M Catch transitions are about 6.5 GB of frames: more than the 4 GiB a checkpoint file
    holds, so the run would fail at its first save; it is refused at once in one line (with
    the memory check off: this test is about the file, not this machine)."""
    from rltasks.trial.run import main

    monkeypatch.setattr("rltasks.task.available_memory", lambda: None)
    argv = ["--env", "rltasks/Catch-v0", "--epochs", "1", "--steps-per-epoch", "64",
            "--workdir", str(tmp_path / "run")]
    assert main("dqn", [*argv, "--buffer-size", "1000000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: buffer_size=1000000 makes checkpoints of about 6.08 GiB once the "
                   "buffer is full, more than the 4 GiB a checkpoint file holds: lower "
                   "buffer_size to 647000 or less")
    assert not (tmp_path / "run" / "last.ckpt").exists()
