"""rltasks report: the table and the plots of an experiment still being hunted, through a real
subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import cli
from PIL import Image


def test_report_lists_every_trial_names_the_best_and_writes_the_plots(tmp_path, orion):
    exp = orion.experiment(
        "cli-report", working_dir=str(tmp_path / "work"),
        space={"lr": "loguniform(1e-5, 1e-2)", "gamma": "uniform(0.9, 0.999)",
               "optimizer": "choices(['adam', 'sgd'])"})
    scores = {}
    for score in (-50.0, -200.0, -120.0):
        trial = exp.suggest()
        work = Path(trial.working_dir)
        work.mkdir(parents=True, exist_ok=True)
        results = {"return_mean": -score, "return_std": 1.0, "episodes": 10, "env_steps": 4096}
        (work / "results.json").write_text(json.dumps(results))
        rows = [{"epoch": e, "env_steps": 1024 * e, "return_mean": -score * e / 4}
                for e in range(1, 5)]
        (work / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        exp.observe(trial, [{"name": "objective", "type": "objective", "value": score}])
        scores[trial.id] = score
    running = exp.suggest()  # reserved, no results yet: listed, not plotted
    env = orion.env
    out = tmp_path / "report"
    try:
        proc = cli("report", "cli-report", "--out", str(out), env=env)
    finally:  # stops the trial's heartbeat thread, which would keep pytest from exiting
        exp.release(running, status="interrupted")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    lines = text.splitlines()
    for trial_id in [*scores, running.id]:
        row = next(line for line in lines if line.startswith(trial_id[:8]))
        assert ("reserved" if trial_id == running.id else "completed") in row
    best_id = min(scores, key=scores.get)
    assert f"trial      {best_id}" in text and "objective  -200" in text
    assert "rerun with:" in text and "--lr=" in text
    assert "4 trials (3 completed, 1 reserved)" in text
    names = {"objective_vs_lr.png", "objective_vs_gamma.png", "objective_by_optimizer.png",
             "curves_best.png"}
    assert {p.name for p in out.iterdir()} == names
    for name in names:
        with Image.open(out / name) as image:
            image.load()
            assert image.format == "PNG" and image.size[0] > 100
    missing = cli("report", "nope", "--out", str(out), env=env)
    assert missing.returncode == 2 and "no Orion experiment named 'nope'" in missing.stderr


def test_active_params_leave_out_what_the_trial_ignored():
    from rltasks.orion.experiments import active_params

    params = {"/agent": "ppo", "/ppo/lr": 1e-3, "/dqn/exploration": "boltzmann",
              "/optimizer": "rmsprop", "/momentum": 0.5, "/beta1": 0.8, "/lr": 1e-3,
              "/sgd/momentum": 0.9, "/rmsprop/momentum": 0.7}
    assert active_params(params) == {"agent": "ppo", "ppo.lr": 1e-3, "optimizer": "rmsprop",
                                     "momentum": 0.5, "lr": 1e-3, "rmsprop.momentum": 0.7}


def test_a_trials_files_are_found_where_the_hunts_workdir_template_put_them():
    from types import SimpleNamespace

    from rltasks.orion.experiments import trial_workdir

    def exp(*args: str) -> SimpleNamespace:
        return SimpleNamespace(working_dir="runs/hb", name="hb",
                               metadata={"user_args": ["python", "x.py", *args]})

    trial = SimpleNamespace(id="t1", hash_params="h1", working_dir="runs/hb/t1")
    template = "{exp.working_dir}/{trial.hash_params}"
    assert trial_workdir(exp("--workdir", template), trial) == Path("runs/hb/h1")
    assert trial_workdir(exp(f"--workdir={template}-{{exp.name}}"), trial) == Path(
        "runs/hb/h1-hb")
    # a field it does not expand (nothing of a template is evaluated): Orion's own dir
    assert trial_workdir(exp("--workdir", "{trial.__class__}/x"), trial) == Path("runs/hb/t1")
    assert trial_workdir(exp(), trial) == Path("runs/hb/t1")


def test_a_template_field_the_trial_lacks_falls_back_to_orions_dir():
    from types import SimpleNamespace

    from rltasks.orion.experiments import trial_workdir

    exp = SimpleNamespace(working_dir=None, name="hb", metadata={
        "user_args": ["python", "x.py", "--workdir", "{exp.working_dir}/{trial.hash_params}"]})
    trial = SimpleNamespace(id="t1", hash_params="h1", working_dir="runs/hb/t1")
    assert trial_workdir(exp, trial) == Path("runs/hb/t1")
