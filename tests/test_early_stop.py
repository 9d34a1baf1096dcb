"""Early stopping (--criterion/--trial-count): the stop is recorded and survives resume."""

from __future__ import annotations

import json

from helpers import assert_same_state

from rltasks import checkpoint
from rltasks.trial.options import resolve
from rltasks.trial.run import run

FAST = ["--steps-per-epoch", "256", "--num-envs", "2", "--eval-episodes", "2"]


def train(workdir, epochs: int, *extra: str) -> dict:
    options, hparams = resolve("ppo", ["--epochs", str(epochs), "--workdir", str(workdir),
                                       *FAST, *extra])
    return run("ppo", options, hparams, log=lambda msg: None)


def test_stop_is_recorded_and_a_rerun_does_not_train_past_it(tmp_path):
    # criterion 0: the stop comes as soon as 25 episodes (a few epochs) fill the window
    stop = ["--criterion", "0", "--trial-count", "25"]
    result = train(tmp_path / "a", 8, *stop)
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").open()]
    seen = [sum(r["episodes"] for r in rows[:i + 1]) for i in range(len(rows))]
    at = next(i + 1 for i, n in enumerate(seen) if n >= 25)
    assert 2 <= at < 8 and result["early_stopped_at"] == at and result["epoch"] == at
    assert [r["epoch"] for r in rows] == list(range(1, at + 1))
    assert rows[-1]["early_stopped_at"] == at
    assert "recent_return_mean" in rows[-1] and "recent_return_mean" not in rows[0]
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["early_stopped_at"] == at
    ckpt = checkpoint.load(tmp_path / "a" / "last.ckpt")
    assert ckpt["epoch"] == at and ckpt["run"]["early_stop"]["stopped_at"] == at
    again = train(tmp_path / "a", 10, *stop)  # same command, more epochs: no training
    assert again["epoch"] == at and again["env_steps"] == result["env_steps"]
    assert again["early_stopped_at"] == at and again["resumed_from"] == at
    assert again["return_mean"] == result["return_mean"]

    # interrupted before the window filled, then resumed: the same stop and the same state
    part = train(tmp_path / "b", at - 1, *stop)
    assert part["early_stopped_at"] is None and part["epoch"] == at - 1
    resumed = train(tmp_path / "b", 8, *stop)
    assert resumed["early_stopped_at"] == at and resumed["resumed_from"] == at - 1
    other = checkpoint.load(tmp_path / "b" / "last.ckpt")
    assert_same_state(ckpt["state"], other["state"])
    assert ckpt["run"] == other["run"]


def test_no_criterion_means_no_stop(tmp_path):
    result = train(tmp_path, 2)
    assert result["early_stopped_at"] is None and result["epoch"] == 2
    assert "run" not in checkpoint.load(tmp_path / "last.ckpt")
