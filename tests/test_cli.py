"""The rltasks command: best and inspect, through a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import cli

import rltasks
from rltasks import checkpoint
from rltasks.trial.payload import make_payload


def test_inspect_prints_the_checkpoint_header_without_a_model(tmp_path):
    task = rltasks.make_task("ppo", env="CartPole-v1", num_envs=2, steps_per_epoch=128)
    task.init(update_epochs=1, lr=1e-3)
    task.fit(1)
    checkpoint.save(tmp_path / "last.ckpt", make_payload(task))
    proc = cli("inspect", str(tmp_path / "last.ckpt"))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["format"] == "rltasks-checkpoint/1" and info["task"] == "ppo"
    assert info["epoch"] == 1 and info["hparams"]["lr"] == 1e-3
    assert info["fixed"]["env"] == "CartPole-v1"
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    proc = cli("inspect", str(tmp_path / "bad.ckpt"))
    assert proc.returncode == 2 and "bad.ckpt" in proc.stderr and "Traceback" not in proc.stderr


def test_best_reports_the_lowest_objective_and_a_rerun_command(tmp_path, orion):
    exp = orion.experiment("cli-best", space={"lr": "loguniform(1e-5, 1e-2)"},
                           working_dir=str(tmp_path / "work"))
    scores = {}
    for score in (-50.0, -200.0, -120.0):
        trial = exp.suggest()
        Path(trial.working_dir).mkdir(parents=True, exist_ok=True)
        results = {"return_mean": -score, "return_std": 1.0, "episodes": 10, "env_steps": 4096}
        (Path(trial.working_dir) / "results.json").write_text(json.dumps(results))
        exp.observe(trial, [{"name": "objective", "type": "objective", "value": score}])
        scores[trial.id] = (score, trial.params["lr"])
    env = orion.env
    proc = cli("best", "cli-best", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    best_id = min(scores, key=lambda k: scores[k][0])
    assert info["trial"] == best_id and info["objective"] == -200.0
    assert info["results"]["return_mean"] == 200.0
    assert info["params"]["lr"] == scores[best_id][1]
    assert f"--lr={scores[best_id][1]}" in info["command"]
    assert info["trials"] == {"completed": 3, "total": 3}
    text = cli("best", "cli-best", env=env).stdout
    assert "objective  -200" in text and "rerun with:" in text
    missing = cli("best", "nope", env=env)
    assert missing.returncode == 2 and "no Orion experiment named 'nope'" in missing.stderr
