"""A checkpoint whose file is sound (its checksum holds) but whose state is not the task's: a
key missing, a value of the wrong kind, a tensor of the wrong shape, another program's
structure. A resuming run falls back to the older valid checkpoint beside it, restored into
a task built afresh, and ends identical to a run that never stopped; with none valid it is
one line and exit 2, as ``rltasks eval`` is."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import assert_same_state, cli, run_script

from rltasks import checkpoint
from rltasks.trial.payload import BadState, load_task
from rltasks.trial.run import main

TINY = ["--steps-per-epoch", "64", "--num-envs", "2", "--n-steps", "16", "--hidden", "8",
        "--batch-size", "32", "--update-epochs", "1", "--eval-episodes", "2",
        "--vectorization", "sync"]


def _first(mapping: dict[str, Any]) -> str:
    return next(iter(mapping))


def _drop_nested_key(state: dict[str, Any]) -> None:
    del state["loader"][_first(state["loader"])]


def _wrong_type(state: dict[str, Any]) -> None:
    state["rng"]["numpy"] = 5


def _wrong_shape(state: dict[str, Any]) -> None:
    actor = state["modules"]["actor"]
    actor[_first(actor)] = torch.zeros(3, 3)


def _broadcastable_moment(state: dict[str, Any]) -> None:  # copy_ would broadcast it
    moments = state["optimizers"]["opt"]["state"]
    moments[_first(moments)]["exp_avg"] = torch.zeros(())


def _foreign(state: dict[str, Any]) -> None:
    state.clear()
    state.update({"weights": [1, 2, 3], "format": "someone else's"})


def _bad_json_rng(state: dict[str, Any]) -> None:  # fits the structure, fails half-applied
    state["rng"]["numpy"] = "{not json"


def _history_not_a_list(state: dict[str, Any]) -> None:
    state["history"] = "abc"


MALFORMED: dict[str, Callable[[dict[str, Any]], None]] = {
    f.__name__.lstrip("_"): f for f in (_drop_nested_key, _wrong_type, _wrong_shape,
                                        _broadcastable_moment, _foreign, _bad_json_rng,
                                        _history_not_a_list)}


def _train(workdir: Path, epochs: int) -> None:
    assert main("ppo", ["--epochs", str(epochs), "--workdir", str(workdir), *TINY]) == 0


def _damage(path: Path, how: Callable[[dict[str, Any]], None]) -> None:
    payload = checkpoint.load(path)
    how(payload["state"])
    checkpoint.save(path, payload)  # a valid checksum over a malformed state


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, Any]:
    """The state of a run trained to epoch 3 without a stop."""
    workdir = tmp_path_factory.mktemp("straight")
    _train(workdir, 3)
    return checkpoint.load(workdir / "last.ckpt")["state"]


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_state_falls_back_to_the_older_checkpoint(kind, tmp_path, capsys,
                                                              straight):
    _train(tmp_path, 2)
    _damage(tmp_path / "last.ckpt", MALFORMED[kind])
    capsys.readouterr()
    assert main("ppo", ["--epochs", "3", "--workdir", str(tmp_path), *TINY]) == 0
    out = capsys.readouterr()
    assert "its state does not fit ppo" in out.err and "falling back to" in out.err
    assert json.loads(out.out.strip().splitlines()[-1])["resumed_from"] == 1
    assert_same_state(checkpoint.load(tmp_path / "last.ckpt")["state"], straight)


@pytest.mark.parametrize("kind", ["drop_nested_key", "wrong_shape", "foreign"])
def test_no_valid_state_is_one_line_and_exit_2(kind, tmp_path, capsys):
    _train(tmp_path, 2)
    for name in ("last.ckpt", "last.ckpt.1"):
        _damage(tmp_path / name, MALFORMED[kind])
    capsys.readouterr()
    assert main("ppo", ["--epochs", "3", "--workdir", str(tmp_path), *TINY]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"error: no usable checkpoint in {tmp_path} (last.ckpt: its "
                                f"state does not fit ppo")
    assert "Traceback" not in "\n".join(lines)


def test_the_script_falls_back_or_exits_2_in_one_line(tmp_path):
    _train(tmp_path, 2)
    _damage(tmp_path / "last.ckpt", MALFORMED["drop_nested_key"])
    proc = run_script("ppo", "--epochs", "3", *TINY, workdir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "falling back to" in proc.stderr
    _damage(tmp_path / "last.ckpt", MALFORMED["wrong_shape"])
    _damage(tmp_path / "last.ckpt.1", MALFORMED["foreign"])
    _damage(tmp_path / "last.ckpt.2", MALFORMED["wrong_type"])
    proc = run_script("ppo", "--epochs", "4", *TINY, workdir=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "its state does not fit ppo" in errors[0]


def test_eval_falls_back_in_process_and_the_command_exits_2(tmp_path):
    _train(tmp_path, 2)
    _damage(tmp_path / "last.ckpt", MALFORMED["bad_json_rng"])
    task = load_task(tmp_path)
    try:
        assert task.epoch == 1
    finally:
        task.close()
    _damage(tmp_path / "last.ckpt.1", MALFORMED["wrong_shape"])
    with pytest.raises(BadState, match="its state does not fit ppo"):
        load_task(tmp_path)
    proc = cli("eval", tmp_path, "--episodes", "1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no usable checkpoint")
