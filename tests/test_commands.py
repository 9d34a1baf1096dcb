"""The rltasks subcommands around a trained run (train, eval, plot, export, record), each
through a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RLTASKS = [sys.executable, "-m", "rltasks.cli"]
FAST = ["--steps-per-epoch", "256", "--num-envs", "2", "--eval-episodes", "3"]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*RLTASKS, *map(str, args)], capture_output=True, text=True,
                          timeout=180, cwd=cwd,
                          env={**os.environ, "RLTASKS_THREADS": "1", "SDL_VIDEODRIVER": "dummy"})


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> Path:
    """A PPO CartPole run of two small epochs, trained by `rltasks train`."""
    workdir = tmp_path_factory.mktemp("runs") / "ppo-cartpole"
    last_json(cli("train", "ppo", "--env", "CartPole-v1", "--epochs", "2", *FAST,
                  "--workdir", workdir))
    return workdir


def test_train_is_the_script_and_eval_reproduces_the_final_evaluation(ppo_run):
    results = json.loads((ppo_run / "results.json").read_text())
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
