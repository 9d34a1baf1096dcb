"""The rltasks subcommands around a trained run (train, eval, plot, export, record), each
through a real subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import cli, environ, last_json, results_in

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


def test_a_seeds_working_dir_plots_as_its_seeds_and_names_them_to_eval(ppo_run, tmp_path):
    """``--seeds N`` writes one run per seed under ``seed-N``: ``plot`` takes the working dir
    for its seeds' runs; ``eval`` (one checkpoint) names them."""
    import shutil

    from rltasks.commands.plot import runs_of

    seeds = tmp_path / "seeds"
    for seed in (10, 2):
        shutil.copytree(ppo_run, seeds / f"seed-{seed}")
    (seeds / "seed-x").mkdir()  # not a seed's dir
    assert runs_of(seeds) == [seeds / "seed-2", seeds / "seed-10"]
    assert runs_of(ppo_run) == [ppo_run]
    out = tmp_path / "curves.png"
    proc = cli("plot", seeds, "--out", out)
    assert proc.returncode == 0 and out.is_file(), proc.stderr
    proc = cli("eval", seeds)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (f"{seeds} is a --seeds run of 2 seeds, each a run directory: name one "
            f"({seeds}/seed-2, {seeds}/seed-10)") in proc.stderr


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
    ("ppo", "rltasks/Catch-v0", {}),  # a CNN torso on 80x80 frames
    ("dqn", "rltasks/Catch-v0", {"learning_starts": 0, "buffer_size": 128}),
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
    if env == "rltasks/Catch-v0":  # the exported module takes the env's uint8 frames
        frames = torch.from_numpy(obs.astype(np.uint8))
        np.testing.assert_array_equal(torch.jit.load(str(tmp_path / "policy.pt"))(frames)
                                      .numpy().reshape(expected.shape), expected)


def test_record_writes_a_gif_that_decodes(ppo_run, tmp_path):
    from PIL import Image

    out = tmp_path / "video.gif"
    info = last_json(cli("record", ppo_run, "--out", out))
    assert info["frames"] > 5 and info["size"] == [600, 400]  # CartPole's render size
    with Image.open(out) as img:
        # Pillow merges identical consecutive frames (their durations add up)
        assert img.format == "GIF" and img.size == (600, 400) and img.n_frames > 5
        img.seek(img.n_frames - 1)
        img.load()
    proc = cli("record", ppo_run, "--out", tmp_path / "video.avi")
    assert proc.returncode == 2 and "write a .gif" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_record_writes_an_mp4_with_imageio_ffmpeg(ppo_run, tmp_path):
    """The plot extra brings imageio-ffmpeg: an mp4 is written and decodes to every frame."""
    import imageio.v3 as iio

    out = tmp_path / "video.mp4"
    info = last_json(cli("record", ppo_run, "--out", out, "--episodes", "2"))
    assert info["file"] == str(out) and info["episodes"] == 2 and len(info["returns"]) == 2
    assert out.read_bytes()[4:8] == b"ftyp"  # an ISO media file
    frames = iio.imread(out, plugin="FFMPEG")
    assert frames.shape == (info["frames"], 400, 600, 3)


def test_record_mp4_without_imageio_ffmpeg_is_refused_in_one_line(ppo_run, tmp_path):
    """imageio-ffmpeg hidden from the process: exit 2, one line naming it and .gif."""
    import subprocess
    import sys

    out = tmp_path / "video.mp4"
    hide = ("import sys; sys.modules['imageio_ffmpeg'] = None; "
            "from rltasks.commands.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", hide, "record", str(ppo_run), "--out",
                           str(out)], capture_output=True, text=True, timeout=180,
                          env=environ(SDL_VIDEODRIVER="dummy"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: --out {out}: mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg); "
        f"write a .gif instead"]
    assert not out.exists()


def trained(name, env, **hp):
    import rltasks

    task = rltasks.make_task(name, env=env, num_envs=1, steps_per_epoch=32)
    task.init(**hp)
    task.fit(1)
    return task


def test_record_plays_normalised_observations():
    """In process: a norm_obs Pendulum run; every episode is its steps' frames plus the
    first."""
    import rltasks
    from rltasks.commands.record import play

    task = rltasks.make_task("ppo", env="Pendulum-v1", num_envs=1, steps_per_epoch=32,
                             norm_obs=True).init()
    task.fit(1)
    try:
        frames, returns = play(task, episodes=1)
    finally:
        task.close()
    assert len(frames) == 200 + 1 and len(returns) == 1  # Pendulum: 200 steps
    assert frames[0].shape == (500, 500, 3) and frames[0].dtype.name == "uint8"


def test_record_of_a_goal_env_without_rendering_is_one_line():
    """rltasks' own goal envs render nothing: record says so."""
    from rltasks.commands.record import play

    task = trained("sac", "rltasks/PointReach-v0", learning_starts=0)
    try:
        with pytest.raises(ValueError) as info:
            play(task, episodes=1)
    finally:
        task.close()
    assert str(info.value) == ("rltasks/PointReach-v0 does not render rgb_array frames (its "
                               "render modes: none): nothing to record")


def test_record_plays_a_goal_envs_dict_observations():
    """A goal env that renders (PointReach with a drawing, registered here): its dict
    observations reach the policy batched key by key, every step is a frame."""
    import gymnasium as gym
    import numpy as np

    from rltasks.commands.record import play
    from rltasks.envs.goal import PointReachEnv

    class Drawn(PointReachEnv):
        metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

        def __init__(self, render_mode=None):
            super().__init__()
            self.render_mode = render_mode

        def render(self):
            frame = np.zeros((32, 32, 3), np.uint8)
            for (x, y), colour in ((self.state, 0), (self.goal, 1)):
                frame[int((y + 1) * 15.5), int((x + 1) * 15.5), colour] = 255
            return frame

    if "rltasks-test/DrawnPointReach-v0" not in gym.registry:
        gym.register("rltasks-test/DrawnPointReach-v0", entry_point=Drawn,
                     max_episode_steps=50)
    task = trained("sac", "rltasks-test/DrawnPointReach-v0", learning_starts=0)
    seen = []
    act = task.act
    task.act = lambda obs: seen.append(obs) or act(obs)
    try:
        frames, returns = play(task, episodes=1)
    finally:
        task.close()
    assert len(frames) == len(seen) + 1 and len(returns) == 1 and frames[0].shape == (32, 32, 3)
    assert set(seen[0]) == {"observation", "achieved_goal", "desired_goal"}
    assert all(v.shape == (1, 2) for v in seen[0].values())


@pytest.fixture(scope="module")
def run_with_best(tmp_path_factory) -> Path:
    """A PPO Pendulum run trained to epoch 3 whose best.ckpt is its own epoch-1 checkpoint
    (kept aside when the run was at epoch 1), so --best and the default read different
    policies."""
    import shutil

    workdir = tmp_path_factory.mktemp("best") / "ppo-pendulum"
    args = ["train", "ppo", "--env", "Pendulum-v1", "--steps-per-epoch", "256", "--num-envs",
            "1", "--eval-episodes", "1", "--workdir", workdir]
    last_json(cli(*args, "--epochs", "1"))
    shutil.copy(workdir / "last.ckpt", workdir.parent / "epoch1.ckpt")
    last_json(cli(*args, "--epochs", "3"))
    shutil.copy(workdir.parent / "epoch1.ckpt", workdir / "best.ckpt")
    return workdir


def test_eval_best_reads_best_ckpt_and_episodes_sets_how_many(run_with_best):
    from rltasks.trial.payload import load_task

    run = run_with_best
    best = last_json(cli("eval", run, "--best", "--episodes", "2"))
    last = last_json(cli("eval", run, "--episodes", "3"))
    assert best["checkpoint"] == str(run / "best.ckpt") and best["epoch"] == 1
    assert last["checkpoint"] == str(run / "last.ckpt") and last["epoch"] == 3
    assert best["episodes"] == 2 and last["episodes"] == 3
    for info, file, episodes in ((best, "best.ckpt", 2), (last, "last.ckpt", 3)):
        task = load_task(run / file)
        try:
            expected = task.evaluate(episodes)
        finally:
            task.close()
        assert {k: info[k] for k in expected} == expected


def test_a_bfloat16_run_exports_to_both_formats_onnx_in_float32(tmp_path):
    """onnxruntime has no bfloat16 convolutions: the ONNX file of a run trained in bfloat16
    holds no bfloat16 tensor and acts as the task computed in float32; the TorchScript file
    acts as the task does."""
    import onnx

    import rltasks
    from rltasks import checkpoint
    from rltasks.commands.export import export_run
    from rltasks.trial.payload import make_payload

    task = rltasks.make_task("ppo", env="rltasks/Catch-v0", num_envs=1, steps_per_epoch=64)
    task.init(precision="bfloat16", n_steps=16, batch_size=16).fit(1)
    checkpoint.save(tmp_path / "last.ckpt", make_payload(task))
    task.close()
    for fmt in ("torchscript", "onnx"):
        assert export_run(tmp_path, fmt)["parity"]
    graph = onnx.load(str(tmp_path / "policy.onnx")).graph
    casts = [a.i for n in graph.node if n.op_type == "Cast" for a in n.attribute]
    assert casts and onnx.TensorProto.BFLOAT16 not in casts


def test_export_best_writes_the_best_checkpoints_policy(run_with_best, tmp_path):
    import numpy as np
    import torch

    from rltasks.commands.export import sample_observations
    from rltasks.trial.payload import load_task

    out = tmp_path / "policy.pt"
    assert last_json(cli("export", run_with_best, "--best", "--out", out))["parity"]
    actions = {}
    for file in ("best.ckpt", "last.ckpt"):
        task = load_task(run_with_best / file)
        obs = sample_observations(task)
        actions[file] = np.asarray(task.act(task.loader.normalize_obs(obs)))
        task.close()
    got = torch.jit.load(str(out))(torch.from_numpy(obs)).detach().numpy()
    np.testing.assert_allclose(got.reshape(actions["best.ckpt"].shape), actions["best.ckpt"],
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(actions["best.ckpt"], actions["last.ckpt"], atol=1e-3)


def test_record_best_plays_the_best_checkpoint_for_the_episodes_asked(run_with_best, tmp_path):
    from rltasks.commands.record import play
    from rltasks.trial.payload import load_task

    info = last_json(cli("record", run_with_best, "--best", "--episodes", "2", "--out",
                         tmp_path / "video.mp4"))  # mp4: encodes faster than a GIF
    assert info["episodes"] == 2 and info["frames"] == 2 * (200 + 1)  # Pendulum: 200 steps
    returns = {}
    for file, episodes in (("best.ckpt", 2), ("last.ckpt", 1)):
        task = load_task(run_with_best / file, vectorization="sync")
        try:
            returns[file] = play(task, episodes=episodes)[1]
        finally:
            task.close()
    assert info["returns"] == returns["best.ckpt"]
    assert returns["best.ckpt"][0] != returns["last.ckpt"][0]  # the other policy scores else
