"""--tensorboard: event files in WORKDIR/tb/, or one line saying how to install it."""

from __future__ import annotations

import builtins

import pytest

import rltasks.trial.run as run

ARGS = ["--env", "CartPole-v1", "--epochs", "1", "--steps-per-epoch", "64", "--num-envs", "2",
        "--eval-episodes", "1", "--tensorboard"]


def test_without_tensorboard_the_run_exits_2_in_one_line(monkeypatch, tmp_path, capsys):
    real_import = builtins.__import__

    def hide(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith(("tensorboard.", "torch.utils.tensorboard")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", hide)
    assert run.main("ppo", [*ARGS, "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "pip install tensorboard" in err[-1]


def test_tensorboard_writes_event_files(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    assert run.main("ppo", [*ARGS, "--workdir", str(tmp_path)]) == 0
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
