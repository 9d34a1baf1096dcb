"""The rltasks subcommands around a trained run (train, eval, plot, export, record), each
through a real subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import cli, last_json, results_in, run_script

FAST = ["--steps-per-epoch", "256", "--num-envs", "2", "--eval-episodes", "3"]


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> Path:
    """A PPO CartPole run of two small epochs, trained by `rltasks train`."""
    workdir = tmp_path_factory.mktemp("runs") / "ppo-cartpole"
    last_json(cli("train", "ppo", "--env", "CartPole-v1", "--epochs", "2", *FAST,
                  "--workdir", workdir))
    return workdir


def test_train_is_the_script_and_eval_reproduces_the_final_evaluation(ppo_run):
    results = results_in(ppo_run)
    assert results["task"] == "ppo" and results["epoch"] == 2
    info = last_json(cli("eval", ppo_run, "--episodes", "3"))
    assert info["task"] == "ppo" and info["env"] == "CartPole-v1" and info["epoch"] == 2
    # the eval envs' seeds belong to the task: the rebuilt agent scores the same
    assert info["return_mean"] == results["return_mean"] and info["episodes"] == 3
    assert last_json(cli("eval", ppo_run / "last.ckpt", "--episodes", "3")) == {
        **info, "checkpoint": str(ppo_run / "last.ckpt")}


def test_train_and_eval_refuse_bad_input_in_one_line(tmp_path):
    for args, needle in ((["train", "nope"], "unknown task 'nope'"),
                         (["train", "ppo", "--lr", "-1", "--workdir", tmp_path], "lr=-1"),
                         (["eval", tmp_path / "missing"], "neither a run directory"),
                         (["eval", tmp_path], "holds no last.ckpt")):
        proc = cli(*args)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_plot_groups_seeds_on_one_png(ppo_run, tmp_path):
    from PIL import Image

    other_seed = tmp_path / "seed1"
    last_json(cli("train", "ppo", "--env", "CartPole-v1", "--epochs", "2", "--seed", "1",
                  *FAST, "--workdir", other_seed))
    out = tmp_path / "curves.png"
    proc = cli("plot", ppo_run, other_seed, "--out", out)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as img:
        img.load()
        assert img.format == "PNG" and img.width >= 300 and img.height >= 200
    proc = cli("plot", tmp_path / "nothing")
    assert proc.returncode == 2 and "no metrics.jsonl" in proc.stderr


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_writes_a_policy_whose_actions_match(ppo_run, tmp_path, fmt):
    out = tmp_path / f"policy.{fmt}"
    info = last_json(cli("export", ppo_run, "--format", fmt, "--out", out))
    assert info["parity"] and info["max_abs_diff"] == 0.0 and out.is_file()


@pytest.mark.parametrize(("name", "env", "extra"), [
    ("ppo", "Pendulum-v1", {"norm_obs": True}),
    ("dqn", "CartPole-v1", {"learning_starts": 0}),
    ("sac", "Pendulum-v1", {"learning_starts": 0}),
    ("td3", "Pendulum-v1", {"learning_starts": 0}),
])
def test_exported_policies_match_every_family(name, env, extra, tmp_path):
    import numpy as np
    import onnxruntime
    import torch

    import rltasks
    from rltasks import checkpoint
    from rltasks.commands.export import export_run, sample_observations
    from rltasks.trial.payload import make_payload

    fixed = {k: v for k, v in extra.items() if k == "norm_obs"}
    task = rltasks.make_task(name, env=env, num_envs=1, steps_per_epoch=64, **fixed)
    task.init(**{k: v for k, v in extra.items() if k != "norm_obs"})
    task.fit(1)
    checkpoint.save(tmp_path / "last.ckpt", make_payload(task))
    obs = sample_observations(task)
    expected = task.act(task.loader.normalize_obs(obs))
    task.close()
    for fmt in ("torchscript", "onnx"):
        info = export_run(tmp_path, fmt)
        assert info["parity"], info
    scripted = torch.jit.load(str(tmp_path / "policy.pt"))(torch.from_numpy(obs)).detach().numpy()
    onnx_out = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx")).run(
        None, {"obs": obs})[0]
    for got in (scripted, onnx_out):
        np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


def test_record_writes_a_gif_that_decodes(tmp_path):
    from PIL import Image

    workdir = tmp_path / "run"
    proc = run_script("ppo", "--epochs", "1", "--steps-per-epoch", "256", "--num-envs", "2",
                      "--eval-episodes", "2", workdir=workdir, timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = workdir / "video.gif"
    info = last_json(cli("record", workdir, "--out", out))
    assert info["frames"] > 5 and info["size"] == [600, 400]  # CartPole's render size
    with Image.open(out) as img:
        assert img.format == "GIF" and img.size == (600, 400) and img.n_frames > 5
        img.seek(img.n_frames - 1)
        img.load()
    for name, needle in (("video.avi", "write a .gif"), ("video.mp4", None)):
        proc = cli("record", workdir, "--out", workdir / name)
        if needle is None:  # mp4: written with imageio-ffmpeg, else refused in one line
            assert proc.returncode == 0 or (proc.returncode == 2 and "imageio-ffmpeg"
                                            in proc.stderr and ".gif" in proc.stderr)
        else:
            assert proc.returncode == 2 and needle in proc.stderr
        assert "Traceback" not in proc.stderr


def test_record_plays_normalised_and_goal_observations(tmp_path):
    """In process: a norm_obs Pendulum run and a goal env's dict observations."""
    import rltasks
    from rltasks.commands.record import play

    for name, env, fixed, hp in (("ppo", "Pendulum-v1", {"norm_obs": True}, {}),
                                 ("sac", "rltasks/PointReach-v0", {}, {"learning_starts": 0})):
        task = rltasks.make_task(name, env=env, num_envs=1, steps_per_epoch=32, **fixed)
        task.init(**hp)
        task.fit(1)
        try:
            frames, returns = play(task, episodes=1)
        except ValueError as err:  # an env without rgb_array rendering
            assert "render" in str(err)
        else:
            assert len(frames) > 5 and len(returns) == 1
        finally:
            task.close()
