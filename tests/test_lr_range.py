"""``rltasks lr-range``: the learning-rate range test, its plot, its bounds, its space file."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from helpers import ROOT, cli

from rltasks.commands.lr_range import lr_range, smoothed_returns, suggest
from rltasks.safeio import load_yaml

#: a random CartPole policy's return is ~22 (a constant action's ~9): the test's PPO run
#: must reach well above it for its peak to mean anything
RANDOM_CARTPOLE = 22.0


def test_smoothing_is_a_bias_corrected_average_that_skips_chunks_without_episodes():
    out = smoothed_returns(np.array([np.nan, 10.0, np.nan, 20.0]), 0.5)
    assert math.isnan(out[0])
    assert out[1] == pytest.approx(10.0)  # (0.5 * 10) / (1 - 0.5)
    assert out[2] == pytest.approx(10.0)  # carried over the chunk without an episode
    assert out[3] == pytest.approx((0.25 * 10 + 0.5 * 20) / 0.75)


def test_bounds_run_from_where_the_return_starts_rising_to_its_peak():
    lr = np.logspace(-5, -1, 9)
    rising = np.array([10, 10, 12, 30, 60, 90, 100, 40, 5], dtype=float)
    bounds = suggest(lr, rising)  # gain 90: the rise starts where it passes 10 + 9
    assert bounds["low"] == pytest.approx(lr[3]) and bounds["high"] == pytest.approx(lr[6])
    assert bounds["start_return"] == 10 and bounds["peak_return"] == 100
    assert suggest(lr, np.array([50, 40, 30, 30, 20, 20, 10, 10, 5.0]))["low"] is None
    jump = suggest(lr, np.array([10, 10, 10, 10, 10, 10, 100, 90, 80.0]))
    assert jump["high"] == pytest.approx(lr[6]) and jump["low"] == pytest.approx(lr[6] / 10)


def test_lr_range_trains_with_the_growing_lr_plots_it_and_writes_the_bounds(tmp_path):
    space = tmp_path / "ppo.yaml"
    shutil.copy(ROOT / "spaces" / "ppo.yaml", space)
    before = load_yaml(space, "space")
    png = tmp_path / "lr.png"
    proc = cli("lr-range", "ppo", "--env", "CartPole-v1", "--updates", "60", "--out", png,
               "--write-space", space, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[0])
    lrs = np.array(result["lr"])  # the lr each update's optimizer step reported
    assert len(lrs) == 60 and result["steps_per_update"] == 8 * 32  # one rollout each
    np.testing.assert_allclose(lrs, 1e-5 * (1e-1 / 1e-5) ** (np.arange(60) / 59), rtol=1e-6)
    assert result["peak_return"] > 4 * RANDOM_CARTPOLE
    assert 1e-5 <= result["low"] < result["high"] <= 1e-1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    after = load_yaml(space, "space")
    assert after["lr"] == f"orion~loguniform({result['low']:.2e}, {result['high']:.2e})"
    assert {k: v for k, v in after.items() if k != "lr"} == {
        k: v for k, v in before.items() if k != "lr"}
    assert space.read_text().startswith("# Orion search space of the ppo task")


def test_an_off_policy_task_takes_the_lr_in_chunks_of_env_steps():
    result = lr_range("dqn", ["--env", "CartPole-v1", "--steps-per-epoch", "200",
                              "--learning-starts", "100"], 1e-4, 1e-2, 3)
    assert result["steps_per_update"] == 200
    np.testing.assert_allclose(result["lr"], [1e-4, 1e-3, 1e-2], rtol=1e-6)


def test_an_update_reports_the_steps_it_really_took():
    """--steps-per-epoch 100 of PPO is rounded up to one whole rollout (32 steps x 8 envs)."""
    result = lr_range("ppo", ["--env", "CartPole-v1", "--steps-per-epoch", "100"], 1e-4, 1e-2, 3)
    assert result["steps_per_update"] == 256


@pytest.mark.parametrize("args, message", [
    (["--lr", "1e-3"], "lr-range sets the learning rate itself: drop --lr"),
    (["--start-lr", "1e-2", "--end-lr", "1e-3"], "--end-lr 0.001 must be above --start-lr"),
    (["--start-lr", "-1"], "hyperparameter lr=-1.0"),
    (["--updates", "2"], "--updates 2 must be at least 3"),
    (["--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    (["--env", "Acrobot-v1", "--n-steps", "8", "--updates", "3"], "no episode ended in the 3 "
     "updates of 128 env steps"),
])
def test_bad_settings_are_one_line_errors(args, message, tmp_path):
    proc = cli("lr-range", "ppo", *args, "--out", tmp_path / "x.png")
    lines = proc.stderr.strip().splitlines()  # the updates' progress lines, then the error
    assert proc.returncode == 2 and message in lines[-1], proc.stderr
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr
    assert all(line.startswith("update ") for line in lines[:-1])
    assert not (tmp_path / "x.png").exists()
