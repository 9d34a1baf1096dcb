"""The rltasks command: best and inspect, through a real subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import ORION, ROOT, cli, hunted, warm

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


def test_best_prints_a_seeds_trial_by_its_seeds(tmp_path, orion):
    """A trial of ``--seeds N`` writes the mean of its seeds' results (no episode count):
    ``rltasks best`` says which seeds its return is the mean of."""
    exp = orion.experiment("cli-best-seeds", space={"lr": "loguniform(1e-5, 1e-2)"},
                           working_dir=str(tmp_path / "work"))
    trial = exp.suggest()
    Path(trial.working_dir).mkdir(parents=True, exist_ok=True)
    results = {"return_mean": 90.0, "return_std": 5.0, "env_steps": 8192, "seeds": [0, 1],
               "objective": -60.0, "objective_std": 5.0, "objective_kind": "curve"}
    (Path(trial.working_dir) / "results.json").write_text(json.dumps(results))
    exp.observe(trial, [{"name": "objective", "type": "objective", "value": -60.0}])
    proc = cli("best", "cli-best-seeds", env=orion.env)
    assert proc.returncode == 0, proc.stderr
    assert ("return     90.0 +- 5.0 over seeds 0, 1 (each seed's final evaluation), 8192 env "
            "steps in all") in proc.stdout
    # an --objective curve trial's objective is not -return_mean, and says so
    assert "objective  -60  (--objective curve: -the mean training return)" in proc.stdout


def test_best_reeval_retrains_the_top_trials_on_fresh_seeds_and_ranks_them(tmp_path, orion):
    random = ("-c", str(ROOT / "spaces" / "algos" / "random.yaml"))
    _, found = hunted(orion, "reeval", "spaces/lr.yaml", "--epochs", "1", "--steps-per-epoch",
                      "256", "--num-envs", "2", "--eval-episodes", "2", max_trials=3,
                      orion_args=random)
    top2 = sorted(found, key=lambda t: t["objective"])[:2]
    out = tmp_path / "re"
    proc = cli("best", "reeval", "--reeval", "2", "--top", "2", "--reeval-dir", out, "--json",
               env=orion.env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    assert {row["trial"] for row in rows} == {t["id"] for t in top2}
    assert [row["return_mean"] for row in rows] == sorted(
        (row["return_mean"] for row in rows), reverse=True)  # the best mean first
    for row in rows:
        trial = next(t for t in top2 if t["id"] == row["trial"])
        assert row["seeds"] == [1000, 1001] and len(row["returns"]) == 2
        assert row["return_mean"] == pytest.approx(sum(row["returns"]) / 2)
        for seed, ret in zip(row["seeds"], row["returns"], strict=True):
            seed_run = json.loads((out / row["trial"] / f"seed-{seed}" / "results.json")
                                  .read_text())
            assert seed_run["seed"] == seed and seed_run["return_mean"] == ret
            assert seed_run["hparams"]["lr"] == trial["params"]["/lr"]  # its configuration
    text = cli("best", "reeval", "--reeval", "2", "--top", "2", "--reeval-dir", out,
               env=orion.env, cwd=ROOT).stdout  # resumes the finished runs: no retraining
    assert "ranked by the mean final return" in text and rows[0]["trial"] in text
    bad = cli("best", "reeval", "--reeval", "2", "--top", "0", env=orion.env, cwd=ROOT)
    assert bad.returncode == 2 and "--top 0: must" in bad.stderr and "Traceback" not in bad.stderr
    # Orion's own tools on the same hunt: status, info and a plot (HTML: kaleido's PNG export
    # needs a Chrome that plotly_get_chrome downloads, which this machine cannot)
    status = orion_tool(orion, "status", "-n", "reeval")
    assert status.returncode == 0 and "completed           3" in status.stdout, status.stdout
    info = orion_tool(orion, "info", "-n", "reeval")
    assert info.returncode == 0 and "/lr: loguniform(1e-05, 0.01" in info.stdout, info.stdout
    html = tmp_path / "regret.html"
    plot = orion_tool(orion, "plot", "regret", "-n", "reeval", "-t", "html", "-o", html)
    assert plot.returncode == 0 and html.stat().st_size > 10_000, plot.stderr[-2000:]
    assert "plotly" in html.read_text()[:200_000].lower()


def orion_tool(orion, *args) -> subprocess.CompletedProcess:
    """One ``orion`` subcommand on the test's database, to its end, on the warm server."""
    command, env = warm([str(ORION), *map(str, args)], orion.env)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
