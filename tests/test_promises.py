"""What README.md and docs/ promise about a run, each held to one outcome: refusing another
task's or seed's checkpoint, ``--keep``, the default working dir, ``Preempted`` from Python,
``hparams_changed`` after a PBT-style resume, a real divergence, and the Dask helper's
``--print-config``. The trials run in process (``rltasks.trial.run.main``/``run``) at tiny
sizes."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from helpers import results_in

from rltasks import checkpoint
from rltasks.trial.run import main

FAST = ["--env", "CartPole-v1", "--steps-per-epoch", "256", "--num-envs", "2",
        "--eval-episodes", "2"]


def error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(("args", "what"), [
    (["a2c"], "task='ppo' there, 'a2c' here"),
    (["ppo", "--seed", "1"], "seed=0 there, 1 here"),
])
def test_a_checkpoint_of_another_task_or_seed_is_refused_in_one_line(tmp_path, capsys, args,
                                                                     what):
    workdir = tmp_path / "run"
    assert main("ppo", [*FAST, "--epochs", "1", "--workdir", str(workdir)]) == 0
    before = {p.name: p.read_bytes() for p in workdir.iterdir()}
    capsys.readouterr()
    assert main(args[0], [*FAST, *args[1:], "--epochs", "2", "--workdir", str(workdir)]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {workdir} holds a checkpoint of another run (")
    assert what in lines[0]  # among the differences, sorted by name
    assert lines[0].endswith("use another --workdir or delete it to start over, or pass "
                             "--allow-hparam-change to continue it with these hyperparameters "
                             "(as PBT does)")
    assert {p.name: p.read_bytes() for p in workdir.iterdir()} == before  # untouched


@pytest.mark.parametrize("keep", [1, 2])
def test_keep_n_keeps_exactly_n_checkpoint_files(tmp_path, keep):
    workdir = tmp_path / "run"
    assert main("ppo", [*FAST, "--epochs", "4", "--keep", str(keep),
                        "--workdir", str(workdir)]) == 0
    files = sorted(p.name for p in workdir.glob("last.ckpt*"))
    assert files == ["last.ckpt", "last.ckpt.1"][:keep]
    assert [checkpoint.load(workdir / name)["epoch"] for name in files] == [4, 3][:keep]


def test_without_workdir_a_run_writes_in_runs_task_env_seed(tmp_path, monkeypatch):
    """docs/running.md: the working dir is --workdir, else $ORION_WORKING_DIR, else
    runs/<task>-<env>-<seed> (under the current directory)."""
    for key in [k for k in os.environ if k.startswith("ORION_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    assert main("ppo", [*FAST, "--epochs", "1", "--seed", "4"]) == 0
    assert [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "runs").iterdir()] == [
        "runs/ppo-CartPole-v1-4"]
    workdir = tmp_path / "runs" / "ppo-CartPole-v1-4"
    assert {"last.ckpt", "metrics.jsonl", "results.json"} <= {p.name for p in workdir.iterdir()}
    assert results_in(workdir)["workdir"] == str(Path("runs") / "ppo-CartPole-v1-4")


def test_sigterm_in_python_raises_preempted_after_the_epoch_is_saved(tmp_path, monkeypatch):
    """docs/scale-out.md: from Python, rltasks.trial.run.run raises Preempted."""
    from rltasks.tasks.ppo import PPO
    from rltasks.trial.options import resolve
    from rltasks.trial.preempt import Preempted
    from rltasks.trial.run import run

    workdir = tmp_path / "run"
    real, calls = PPO.update, []

    def update_then_signal(self, batch):
        calls.append(1)
        if len(calls) == 1:  # in epoch 1: the run finishes it, saves it, then stops
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, batch)

    monkeypatch.setattr(PPO, "update", update_then_signal)
    options, hparams = resolve("ppo", [*FAST, "--epochs", "3", "--workdir", str(workdir)])
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(Preempted) as info:
        run("ppo", options, hparams, log=lambda message: None)
    assert info.value.signame == "SIGTERM"
    assert str(info.value) == (f"SIGTERM received: stopped after epoch 1 of 3, saved in "
                               f"{workdir / 'last.ckpt'}; rerun the same command to resume")
    assert checkpoint.load(workdir / "last.ckpt")["epoch"] == 1
    assert not (workdir / "rltasks.lock").exists() and not (workdir / "results.json").exists()
    assert before == {sig: signal.getsignal(sig) for sig in before}  # handlers restored


def test_a_pbt_resume_with_another_lr_logs_hparams_changed(tmp_path):
    workdir = tmp_path / "run"
    args = [*FAST, "--workdir", str(workdir)]
    assert main("ppo", [*args, "--epochs", "1", "--lr", "0.0003"]) == 0
    assert main("ppo", [*args, "--epochs", "3", "--lr", "0.001",
                        "--allow-hparam-change"]) == 0
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert [row.get("hparams_changed") for row in rows] == [None, {"lr": [0.0003, 0.001]}, None]
    assert [row["lr"] for row in rows] == [0.0003, 0.001, 0.001]
    results = results_in(workdir)
    assert results["hparam_changes"] == [{"epoch": 2, "changed": {"lr": [0.0003, 0.001]}}]
    assert results["hparams"]["lr"] == 0.001 and results["resumed_from"] == 1


# DQN with plain SGD at lr 10, a squared loss and no effective gradient clip: the first
# epoch only collects (learning_starts 300 > 256 steps), the second one's updates blow the
# Q-values up to NaN gradients, caught before the step that would put them in the network.
# No mock: the numbers really diverge.
DIVERGES = ["--env", "CartPole-v1", "--steps-per-epoch", "256", "--eval-episodes", "2",
            "--learning-starts", "300", "--optimizer", "sgd", "--lr", "10", "--momentum", "0",
            "--max-grad-norm", "1e38", "--loss", "mse", "--hidden", "16", "--train-freq", "4",
            "--gradient-steps", "4", "--batch-size", "32"]


def test_a_real_divergence_exits_3_in_one_line_and_keeps_the_last_good_checkpoint(
        tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main("dqn", [*DIVERGES, "--epochs", "4", "--workdir", str(workdir)]) == 3
    assert error_lines(capsys) == [
        "error: gradient norm became nan in epoch 2: training diverged; lower lr or "
        "max_grad_norm, or "
        "enable norm_obs/norm_reward (the last good checkpoint is kept)"]
    good = checkpoint.load(workdir / "last.ckpt")
    assert good["epoch"] == 1 and good["state"]["history"][0]["loss"] == 0.0
    assert [json.loads(line)["epoch"] for line in
            (workdir / "metrics.jsonl").read_text().splitlines()] == [1]
    assert not (workdir / "results.json").exists() and not (workdir / "rltasks.lock").exists()


def test_dask_helper_print_config_prints_the_configuration_and_runs_nothing(tmp_path, capsys):
    import yaml

    from rltasks.orion import dask

    base = tmp_path / "orion.yaml"
    base.write_text("storage: {type: legacy}\nworker: {heartbeat: 30}\n")
    argv = ["--scheduler", "tcp://127.0.0.1:9", "--n-workers", "3", "--orion-config", str(base),
            "--print-config", "-n", "x", "--working-dir", str(tmp_path / "work"),
            "python", "scripts/ppo.py", "--epochs", "2"]
    assert dask.main(argv) == 0  # no scheduler listens there: nothing is contacted
    out = capsys.readouterr().out.strip().splitlines()
    command = out[-1].split()
    config = yaml.safe_load("\n".join(out[:-1]))
    assert config == {"storage": {"type": "legacy"}, "worker": {
        "heartbeat": 30, "executor": "dask",
        "executor_configuration": {"address": "tcp://127.0.0.1:9"}, "n_workers": 3}}
    assert command[:5] == [sys.executable, "-m", "rltasks.orion.dask_orion", "hunt", "-c"]
    assert command[6:] == ["-n", "x", "--working-dir", str(tmp_path / "work"),
                           *dask.prepare_args(["python", "scripts/ppo.py", "--epochs", "2"])]
    assert not Path(command[5]).exists()  # the temporary configuration is removed
    assert not (tmp_path / "work").exists()
