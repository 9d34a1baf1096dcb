"""``best.ckpt`` survives a resume: the best evaluation so far is part of the run state every
checkpoint carries, so a resumed run replaces ``best.ckpt`` only on a real improvement. The
evaluation scores are set per epoch (``Task.evaluate`` patched) to make the test exact."""

from __future__ import annotations

from typing import Any

import pytest

from rltasks import checkpoint
from rltasks.task import Task
from rltasks.trial.run import main

#: the evaluation score after each epoch: the best is epoch 2's until epoch 5's
SCORES = {0: 0.0, 1: 10.0, 2: 50.0, 3: 20.0, 4: 30.0, 5: 60.0}
ARGS = ["--steps-per-epoch", "64", "--num-envs", "2", "--n-steps", "16", "--hidden", "8",
        "--batch-size", "32", "--update-epochs", "1", "--eval-episodes", "1",
        "--vectorization", "sync", "--eval-every", "1", "--save-best", "true"]


@pytest.fixture(autouse=True)
def scores(monkeypatch):
    def evaluate(self: Task, episodes: int = 10) -> dict[str, Any]:
        return {"return_mean": SCORES[self.epoch], "return_std": 0.0, "length_mean": 1.0,
                "episodes": episodes}

    monkeypatch.setattr(Task, "evaluate", evaluate)


def _best_epoch(workdir) -> int:
    return checkpoint.load(workdir / "best.ckpt")["epoch"]


def test_a_resumed_run_keeps_best_ckpt_until_a_real_improvement(tmp_path):
    args = [*ARGS, "--workdir", str(tmp_path)]
    assert main("ppo", ["--epochs", "2", *args]) == 0
    assert _best_epoch(tmp_path) == 2
    run = checkpoint.load(tmp_path / "last.ckpt")["run"]
    assert run["best"] == {"return_mean": 50.0, "epoch": 2}
    assert main("ppo", ["--epochs", "3", *args]) == 0  # resumed: 20 < 50
    assert _best_epoch(tmp_path) == 2
    assert main("ppo", ["--epochs", "4", *args]) == 0  # resumed again: 30 < 50
    assert _best_epoch(tmp_path) == 2
    assert checkpoint.load(tmp_path / "last.ckpt")["run"]["best"]["epoch"] == 2
    assert main("ppo", ["--epochs", "5", *args]) == 0  # 60 > 50: a real improvement
    assert _best_epoch(tmp_path) == 5


def test_an_uninterrupted_run_picks_the_same_best(tmp_path):
    assert main("ppo", ["--epochs", "4", *ARGS, "--workdir", str(tmp_path)]) == 0
    assert _best_epoch(tmp_path) == 2
