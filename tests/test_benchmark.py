"""Orion benchmark suites of RL tasks (rltasks.orion.benchmark, scripts/benchmark.py).

Every benchmark lives in a temporary PickledDB (``tmp_path/bench.pkl``) given explicitly as
its storage; subprocesses also get the test's own Orion database (the ``orion`` fixture), so
nothing touches the user's Orion database. Trials are tiny (256 steps per epoch, 1-2 epochs,
2 trials).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from helpers import ROOT

from rltasks.hparams import flatten
from rltasks.orion.benchmark import (
    RLBenchmark,
    RLBenchmarkTask,
    get_or_create_benchmark,
    save_figures,
    task_class,
)

with warnings.catch_warnings():  # orion warns about optional extras (profet)
    warnings.simplefilter("ignore")
    from orion.benchmark import Benchmark
    from orion.benchmark import benchmark_client as orion_client
    from orion.benchmark.assessment import AverageRank, AverageResult
    from orion.storage.base import setup_storage

TINY = {"env": "CartPole-v1", "steps_per_epoch": 256, "eval_episodes": 2}
ALGORITHMS = [{"random": {"seed": 1}}, {"asha": {"seed": 1}}]


def storage_of(path: Path):
    return setup_storage({"type": "legacy", "database": {"type": "pickleddb", "host": str(path)}})


# Runs in a fresh process, where no per-task class exists yet (workaround (c)): prints what the
# reloaded benchmark finds, experiment by experiment.
RELOAD = """
import json, sys
from rltasks.orion.benchmark import get_or_create_benchmark
bench = get_or_create_benchmark(sys.argv[1], sys.argv[2])
studies = [[s.assess_name, s.task_name] for s in bench.studies]
exps = {}
for study in bench.studies:
    for rep, exp in study.get_experiments():
        exps[exp.name] = {"version": exp.version, "rep": rep,
                          "trials": [[t.status, t.params] for t in exp.fetch_trials()]}
figures = {a: {t: sorted(f) for t, f in by.items()} for a, by in bench.analysis().items()}
print(json.dumps({"studies": studies, "experiments": exps, "figures": figures,
                  "configuration": bench.configuration}))
"""


# ------------------------------------------------------------------------ the benchmark task

def test_task_is_a_named_subclass_whose_configuration_rebuilds_it():
    task = RLBenchmarkTask(task="ppo", epochs=4, max_trials=3, **TINY)
    assert type(task).__name__ == "ppo_CartPole_v1" and isinstance(task, RLBenchmarkTask)
    assert type(RLBenchmarkTask("dqn", "CartPole-v1", 4, 3)) is task_class("dqn_CartPole_v1")
    assert type(RLBenchmarkTask(task="ppo", epochs=1, max_trials=1, **TINY)) is type(task)
    [(key, params)] = task.configuration.items()
    again = task_class(key)(**params)
    assert again.configuration == task.configuration and type(again) is type(task)
    assert task.max_trials == 3 and params["epochs"] == 4 and params["seed"] == 0
    assert task.get_search_space() == {"lr": "loguniform(1e-5, 1e-2)",
                                       "gamma": "uniform(0.9, 0.9999)",
                                       "epochs": "fidelity(1, 4, 2)"}
    named = RLBenchmarkTask(task="ppo", epochs=1, max_trials=1, label="ppo_clip",
                            space={"clip_range": None, "lr": "loguniform(1e-4, 1e-2)"}, **TINY)
    assert type(named).__name__ == "ppo_clip"
    assert named.get_search_space() == {"clip_range": "uniform(0.05, 0.4)",
                                        "lr": "loguniform(1e-4, 1e-2)"}  # 1 epoch: no fidelity
    everything = RLBenchmarkTask(task="dqn", epochs=2, max_trials=1, space="all", **TINY)
    assert set(everything.get_search_space()) > {"exploration", "lr", "epochs"}


def test_a_trial_that_draws_a_schedule_runs_it_over_the_problems_epochs():
    task = RLBenchmarkTask(task="ppo", epochs=2, max_trials=1, label="ppo_schedules",
                           space={"lr_schedule": None, "lr": None}, **TINY)
    results = task.call(lr=1e-3, lr_schedule="linear", epochs=1)  # a first rung: half the way
    assert {r["name"]: r["value"] for r in results}["env_steps"] == 256
    made = task.make()
    try:
        assert made.horizon == 2
    finally:
        made.close()


def test_bad_names_and_spaces_are_refused():
    with pytest.raises(ValueError, match="letters, digits"):
        RLBenchmarkTask(task="ppo", epochs=1, max_trials=1, label="ppo-CartPole", **TINY)
    RLBenchmarkTask(task="ppo", epochs=1, max_trials=1, **TINY)  # class ppo_CartPole_v1 (alone
    # too: under pytest-xdist the test that made it first may run in another process)
    with pytest.raises(ValueError, match="case-insensitively"):
        RLBenchmarkTask(task="ppo", epochs=1, max_trials=1, label="PPO_cartpole_v1", **TINY)
    with pytest.raises(ValueError, match="taken by orion"):
        task_class("Branin")
    with pytest.raises(ValueError, match="unknown task"):
        RLBenchmarkTask(task="nope", epochs=1, max_trials=1, **TINY)
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['lrr'\]"):
        RLBenchmarkTask(task="ppo", epochs=1, max_trials=1, space=["lrr"], **TINY
                        ).get_search_space()
    fixed = RLBenchmarkTask(task="ppo", epochs=1, max_trials=1, space=["lr"],
                            fixed={"lr": 1e-3}, label="ppo_fixed_lr", **TINY)
    with pytest.raises(ValueError, match="fixed by `fixed`"):
        fixed.get_search_space()


def test_call_trains_through_the_public_api_and_reports_minus_return_mean():
    task = RLBenchmarkTask(task="ppo", epochs=3, max_trials=1, fixed={"update_epochs": 1},
                           label="ppo_call", **TINY)
    # as Orion may pass them: '/'-prefixed, ints as floats
    results = task(**{"/lr": 1e-3, "epochs": 1.0, "gamma": 0.95})
    by_name = {r["name"]: r for r in results}
    assert by_name["objective"]["type"] == "objective"
    assert by_name["objective"]["value"] == -by_name["return_mean"]["value"]
    assert by_name["env_steps"]["value"] == 256  # the fidelity, not the problem's 3 epochs
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        task(bogus=1)
    # Orion's runner unflattens dotted names (sgd.momentum) into dicts: flattened back
    assert flatten({"/lr": 1e-3, "sgd": {"momentum": 0.5}}) == {"lr": 1e-3, "sgd.momentum": 0.5}


# -------------------------------------------------------------- Orion's bugs and the workarounds

def test_orion_alone_keeps_only_the_last_target_and_one_task_per_class(tmp_path):
    """What the workarounds are for: if this starts failing, Orion was fixed."""
    ppo = RLBenchmarkTask(task="ppo", epochs=1, max_trials=1, **TINY)
    dqn = RLBenchmarkTask(task="dqn", epochs=1, max_trials=1, **TINY)
    targets = [{"assess": [AverageResult(1)], "task": [ppo, dqn]},
               {"assess": [AverageRank(1)], "task": [ppo]}]
    orion = Benchmark(storage_of(tmp_path / "bench.pkl"), "b", ["random"], targets).configuration
    assert len(orion["targets"]) == 1  # __init__.py:288
    ours = RLBenchmark(storage_of(tmp_path / "bench.pkl"), "b", ["random"], targets).configuration
    assert [sorted(t["task"]) for t in ours["targets"]] == [
        ["dqn_CartPole_v1", "ppo_CartPole_v1"], ["ppo_CartPole_v1"]]
    assert [list(t["assess"]) for t in ours["targets"]] == [["AverageResult"], ["AverageRank"]]


def test_what_orion_would_lose_is_refused(tmp_path):
    db = tmp_path / "bench.pkl"
    ppo = RLBenchmarkTask(task="ppo", epochs=1, max_trials=1, **TINY)
    ppo2 = RLBenchmarkTask(task="ppo", epochs=2, max_trials=1, **TINY)  # same default name
    with pytest.raises(ValueError, match="two task entries named"):
        get_or_create_benchmark(db, "b", ["random"], [{"assess": [AverageResult(1)],
                                                       "task": [ppo, ppo2]}])
    with pytest.raises(ValueError, match="two different tasks are named"):
        get_or_create_benchmark(db, "b", ["random"], [
            {"assess": [AverageResult(1)], "task": [ppo]},
            {"assess": [AverageRank(1)], "task": [ppo2]}])
    with pytest.raises(ValueError, match="two assess entries"):
        get_or_create_benchmark(db, "b", ["random"], [
            {"assess": [AverageResult(1), AverageResult(2)], "task": [ppo]}])
    with pytest.raises(ValueError, match="both pair AverageResult with ppo_CartPole_v1"):
        get_or_create_benchmark(db, "b", ["random"], [
            {"assess": [AverageResult(1)], "task": [ppo]},
            {"assess": [AverageResult(2)], "task": [ppo]}])
    with pytest.raises(ValueError, match="Hyperband crashes without a seed"):
        get_or_create_benchmark(db, "b", ["hyperband"], [{"assess": [AverageResult(1)],
                                                          "task": [ppo]}])
    with pytest.raises(ValueError, match="'asha' cannot search task 'ppo_CartPole_v1'.*fidelity"):
        get_or_create_benchmark(db, "b", ALGORITHMS, [{"assess": [AverageResult(1)],
                                                       "task": [ppo]}])  # 1 epoch: no fidelity
    bad = RLBenchmarkTask(task="dqn", epochs=2, max_trials=1, space=["clip_range"], **TINY)
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['clip_range'\]"):
        get_or_create_benchmark(db, "b", ["random"], [{"assess": [AverageResult(1)],
                                                       "task": [bad]}])
    with pytest.raises(ValueError, match="no benchmark named 'b'"):
        get_or_create_benchmark(db, "b")
    assert not storage_of(db).fetch_benchmark({})  # nothing was stored


def test_tiny_benchmark_of_two_tasks_stores_and_reloads_every_experiment(tmp_path, orion):
    db = tmp_path / "bench.pkl"
    ppo = RLBenchmarkTask(task="ppo", epochs=2, max_trials=2, **TINY)
    dqn = RLBenchmarkTask(task="dqn", epochs=2, max_trials=2, **TINY)
    ppo_lr = RLBenchmarkTask(task="ppo", epochs=2, max_trials=2, space=["lr"], label="ppo_lr",
                             **TINY)
    targets = [{"assess": [AverageResult(2), AverageRank(2)], "task": [ppo, dqn]},
               {"assess": [AverageResult(1)], "task": [ppo_lr]}]
    bench = get_or_create_benchmark(storage_of(db), "tiny", ALGORITHMS, targets)
    bench.process()
    created = bench.configuration

    # every experiment of both targets and both tasks is in the database, each trial done
    expected = {f"tiny_{task}_{rep}_{algo}" for task in ("ppo_CartPole_v1", "dqn_CartPole_v1")
                for rep in (0, 1) for algo in (0, 1)} | {"tiny_ppo_lr_0_0", "tiny_ppo_lr_0_1"}
    stored = storage_of(db).fetch_experiments({})
    assert {e["name"] for e in stored} == expected
    assert all(e["version"] == 1 for e in stored)  # no branching of colliding experiments

    # a fresh process (no per-task class defined yet) finds all of it again
    proc = subprocess.run([sys.executable, "-c", RELOAD, str(db), "tiny"], cwd=tmp_path,
                          env=orion.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["configuration"] == json.loads(json.dumps(created))
    assert sorted(map(tuple, found["studies"])) == [
        ("AverageRank", "dqn_CartPole_v1"), ("AverageRank", "ppo_CartPole_v1"),
        ("AverageResult", "dqn_CartPole_v1"), ("AverageResult", "ppo_CartPole_v1"),
        ("AverageResult", "ppo_lr")]
    exps = found["experiments"]
    assert set(exps) == expected
    for name, exp in exps.items():
        assert exp["version"] == 1 and len(exp["trials"]) == 2, (name, exp)
        assert {status for status, _ in exp["trials"]} == {"completed"}, (name, exp)
    assert all(set(p) == {"lr", "epochs"} for _, p in exps["tiny_ppo_lr_0_1"]["trials"])
    assert all(set(p) == {"lr", "gamma", "epochs"}
               for _, p in exps["tiny_dqn_CartPole_v1_1_1"]["trials"])
    # repetitions of a seeded algorithm sample differently (workaround (d))
    assert exps["tiny_ppo_CartPole_v1_0_0"]["trials"] != exps["tiny_ppo_CartPole_v1_1_0"]["trials"]
    assert found["figures"] == {
        "AverageResult": {"ppo_CartPole_v1": ["regrets"], "dqn_CartPole_v1": ["regrets"],
                          "ppo_lr": ["regrets"]},
        "AverageRank": {"ppo_CartPole_v1": ["rankings"], "dqn_CartPole_v1": ["rankings"]}}

    # and so do fresh objects in this process, whose figures have a curve per algorithm
    again = get_or_create_benchmark(storage_of(db), "tiny")
    assert again.configuration == created and again.id == bench.id is not None
    figures = again.analysis()
    regrets = figures["AverageResult"]["dqn_CartPole_v1"]["regrets"]
    assert {trace.name for trace in regrets.data} >= {"random", "asha"}
    written = save_figures(figures, tmp_path / "figs", ["html", "png"])
    assert len(written) == 10 and all(p.stat().st_size > 0 for p in written)


def test_orion_own_get_or_create_benchmark_takes_rl_tasks(tmp_path):
    """One target of two RL tasks through Orion's own client: both are stored (their classes
    differ) and reloaded in this process."""
    ppo = RLBenchmarkTask(task="ppo", epochs=1, max_trials=1, **TINY)
    dqn = RLBenchmarkTask(task="dqn", epochs=1, max_trials=1, **TINY)
    storage = storage_of(tmp_path / "bench.pkl")
    bench = orion_client.get_or_create_benchmark(
        storage, "plain", algorithms=[{"random": {"seed": 1}}],
        targets=[{"assess": [AverageResult(1)], "task": [ppo, dqn]}])
    bench.process()
    again = orion_client.get_or_create_benchmark(storage_of(tmp_path / "bench.pkl"), "plain")
    assert sorted(s.task_name for s in again.studies) == ["dqn_CartPole_v1", "ppo_CartPole_v1"]
    for study in again.studies:
        [(_, exp)] = study.get_experiments()
        assert [t.status for t in exp.fetch_trials()] == ["completed"]


# ------------------------------------------------------------------------------------ script

def test_script_compares_algorithms_writes_figures_and_resumes(tmp_path, orion):
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--tasks", "ppo", "dqn",
               "--algorithms", "random", "tpe", "asha", "--epochs", "2", "--steps-per-epoch",
               "256", "--max-trials", "2", "--repetitions", "1", "--eval-episodes", "2",
               "--out", str(out)]
    run = {"cwd": tmp_path, "env": orion.env, "capture_output": True, "text": True,
           "timeout": 180}
    proc = subprocess.run(command, **run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {f"{a}_{t}_{f}.{ext}" for a, f in (("AverageResult", "regrets"),
                                               ("AverageRank", "rankings"))
             for t in ("ppo_CartPole_v1", "dqn_CartPole_v1") for ext in ("html", "png")}
    assert names <= {p.name for p in out.iterdir()}
    table = [line.split() for line in proc.stdout.splitlines()]
    assert {(row[0], row[1]) for row in table if len(row) == 5 and row[2] == "1"} == {
        (task, algo) for task in ("ppo_CartPole_v1", "dqn_CartPole_v1")
        for algo in ("random", "tpe", "asha")}  # one experiment, 2 trials each
    assert (out / "plotly.min.js").is_file() and (out / "orion.pkl").is_file()
    assert not orion.db.exists()  # its own database, not the configured one
    exps = storage_of(out / "orion.pkl").fetch_experiments({})
    assert len(exps) == 6  # 2 tasks x 3 algorithms, shared by both assessments
    assert {next(iter(e["algorithm"])) for e in exps} == {"random", "tpe", "asha"}

    again = subprocess.run(command, **run)  # done already: figures again, no new trial
    assert again.returncode == 0, again.stderr[-3000:]
    trials = storage_of(out / "orion.pkl").fetch_trials(uid=exps[0]["_id"])
    assert len(trials) == 2
    other = subprocess.run([*command, "--max-trials", "3"], **run)
    assert other.returncode == 2 and "another configuration" in other.stderr
