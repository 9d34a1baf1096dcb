"""The population worker (``python -m rltasks.orion.population``) on real hunts in the test's
own Orion database (the ``orion`` fixture): every trial completed once, each as its solo run
would end, a plain ``orion hunt`` worker sharing the experiment, a NaN member breaking only
its trial, and its one-line errors."""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ROOT,
    assert_same_state,
    finish_process,
    results_in,
    run_script,
    start,
    wait_for,
)

from rltasks import checkpoint
from rltasks.orion import population

FAST = ["--epochs", "2", "--steps-per-epoch", "512", "--num-envs", "2", "--n-steps", "32",
        "--eval-episodes", "2"]
SPACE = "lr: 'orion~loguniform(1e-4, 1e-2)'\ngamma: 'orion~choices([0.95, 0.99])'\n"
#: seeded random search: the same trials every run
RANDOM = "experiment:\n  algorithms:\n    random:\n      seed: 3\n"


def worker_command(orion: Any, name: str, size: int, max_trials: int,
                   orion_args: tuple[str, ...] = ()) -> list[str]:
    config = orion.root / "orion.yaml"
    config.write_text(RANDOM)
    hunt = orion.hunt_command(name, SPACE, *FAST, max_trials=max_trials,
                              orion_args=("--config", str(config), *orion_args))
    return ["--population", str(size), *hunt[2:]]  # without `orion hunt`


def trial_state(trial: dict[str, Any]) -> tuple[dict, dict]:
    results = results_in(trial["working_dir"])
    results.pop("workdir")
    return results, checkpoint.load(Path(trial["working_dir"]) / "last.ckpt")["state"]


def assert_solo_rerun_equal(task: str, args: Sequence[str], trial: dict[str, Any],
                            tmp_path: Path) -> None:
    """A solo run of ``trial``'s lr and gamma ends with its results and state, to the bit."""
    solo = run_script(task, *args, "--lr", trial["params"]["/lr"], "--gamma",
                      trial["params"]["/gamma"], workdir=tmp_path / trial["id"])
    assert solo.returncode == 0, solo.stderr[-2000:]
    results, state = trial_state(trial)
    alone = trial_state({"working_dir": tmp_path / trial["id"]})
    assert results == alone[0] and results["task"] == task
    assert_same_state(alone[1], state)


def test_a_population_worker_trains_trials_as_their_solo_runs_and_shares_a_hunt(orion,
                                                                                tmp_path):
    argv = worker_command(orion, "pop", 4, 4, ("--worker-max-trials", "3"))
    done = subprocess.run([sys.executable, "-m", "rltasks.orion.population", *argv],
                          cwd=ROOT, env=orion.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "population of 3: trials" in done.stderr and "Warning" not in done.stderr
    ours = orion.trials("pop")
    assert [t["status"] for t in ours] == ["completed"] * 3
    # a plain orion hunt worker on the same experiment does the rest
    proc = orion.hunt("pop", SPACE, *FAST, max_trials=4,
                      orion_args=("--config", str(orion.root / "orion.yaml")))
    found = orion.trials("pop")
    assert sorted(t["status"] for t in found) == ["completed"] * 4, proc.stdout[-3000:]
    assert len({t["id"] for t in found}) == 4
    for trial in ours:
        results = results_in(trial["working_dir"])
        assert trial["objective"] == results["objective"] == -results["return_mean"]
        assert trial["results"]["env_steps"] == results["env_steps"] == 1024
        assert (results["hparams"]["lr"], results["hparams"]["gamma"]) == (
            trial["params"]["/lr"], trial["params"]["/gamma"])
        assert_solo_rerun_equal("ppo", FAST, trial, tmp_path)


def test_a_member_whose_loss_turns_nan_breaks_only_its_trial(orion, monkeypatch, capsys):
    """In this process, so that the loss of the trials with gamma 0.95 can be made NaN."""
    from rltasks.tasks.ppo import PPO

    real = PPO.loss

    def loss(self: Any, *args: Any) -> Any:
        value, stats = real(self, *args)
        sick = float("nan") if self.hp["gamma"] == 0.95 else 1.0
        return value * sick, stats * sick

    monkeypatch.setattr(PPO, "loss", loss)
    monkeypatch.chdir(ROOT)
    assert population.main(worker_command(orion, "nan", 5, 5)) == 0
    err = capsys.readouterr().err
    assert "population of 5: trials" in err  # one population: gamma is not a shape
    found = orion.trials("nan")
    statuses = {t["params"]["/gamma"]: set() for t in found}
    for t in found:
        statuses[t["params"]["/gamma"]].add(t["status"])
    assert statuses == {0.95: {"broken"}, 0.99: {"completed"}}
    broken = sum(t["status"] == "broken" for t in found)
    assert err.count("broken: NonFiniteError: gradient norm became nan") == broken


def test_bad_input_is_one_line(orion, capsys):
    with pytest.raises(ValueError, match=r"^--population K: K trials trained at a time"):
        population.population_option(["-n", "x", "python", "scripts/ppo.py"])
    with pytest.raises(ValueError, match=r"^train\.py is not an rltasks script"):
        population.script_of(["python", "train.py", "--lr", "1"])
    assert population.main(["--population", "0", "-n", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: --population K")
    # what Orion's parser refuses: its error line alone, not its 26-line usage before it
    assert population.main(["--population", "2", "-n", "x", "-c", str(orion.root / "no.yaml"),
                            "python", "scripts/ppo.py"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument -c/--config: can't open") and err.count("\n") == 1


SMALL = ("--steps-per-epoch", "256", "--num-envs", "2", "--eval-episodes", "2")


def test_promotions_of_an_asha_hunt_resume_their_rung_in_a_population(orion, monkeypatch,
                                                                       capsys):
    """ASHA with epochs as the fidelity and the fidelity-free working dir template: a trial
    promoted to 2 epochs resumes its 1-epoch rung's checkpoint (trains 1 more epoch)."""
    monkeypatch.chdir(ROOT)
    hunt = orion.hunt_command(
        "asha", "spaces/lr.yaml", "--epochs~fidelity(1, 2, 2)", "--workdir",
        "{exp.working_dir}/{trial.hash_params}", "--horizon", "2", *SMALL, max_trials=5,
        orion_args=("-c", str(ROOT / "spaces" / "algos" / "asha.yaml")))
    assert population.main(["--population", "4", *hunt[2:]]) == 0
    assert re.search(r"population of [234]: trials", capsys.readouterr().err)
    found = orion.trials("asha")
    assert found and all(t["status"] == "completed" for t in found)
    rungs: dict[str, list[int]] = {}
    for trial in found:
        rungs.setdefault(trial["hash_params"], []).append(round(trial["params"]["/epochs"]))
    promoted = 0
    for trial in found:
        epochs, stats = round(trial["params"]["/epochs"]), trial["results"]
        lower = [e for e in rungs[trial["hash_params"]] if e < epochs]
        assert stats["env_steps"] == epochs * 256
        assert stats["env_steps_run"] == (epochs - max(lower, default=0)) * 256
        promoted += bool(lower)
    assert promoted >= 1


def test_pbt_children_continue_their_parents_in_a_population(orion, monkeypatch, tmp_path):
    import yaml

    monkeypatch.chdir(ROOT)
    config = yaml.safe_load((ROOT / "spaces" / "algos" / "pbt.yaml").read_text())
    algo = config["experiment"]["algorithm"]["pbt"]
    algo.update(population_size=3, generations=2)  # children fork in the second
    for exploit in algo["exploit"]["exploit_configs"]:
        exploit.update(min_forking_population=3, candidate_pool_ratio=0.34)
    path = tmp_path / "pbt.yaml"
    path.write_text(yaml.safe_dump(config))
    hunt = orion.hunt_command("pbt", "spaces/pbt.yaml", "--epochs~fidelity(1, 2, 1)",
                              "--allow-hparam-change", "--horizon", "2", *SMALL,
                              max_trials=None, orion_args=("-c", str(path)))
    assert population.main(["--population", "3", *hunt[2:]]) == 0
    found = orion.trials("pbt")
    assert found and all(t["status"] == "completed" for t in found)
    forked = [results_in(t["working_dir"]) for t in found if t["parent"] is not None]
    assert forked and all(r["resumed_from"] >= 1 for r in forked)


def test_two_population_workers_run_the_hunts_max_trials_not_more(orion):
    """Orion counts only completed trials against --exp-max-trials: a second worker of 3
    joining a 4-trial hunt whose first worker holds 3 takes the one left, and the first,
    done with its 3, waits for it instead of reserving 3 more (6 or 7 trials, without
    ``room``)."""
    argv = worker_command(orion, "two", 3, 4)
    command = [sys.executable, "-m", "rltasks.orion.population", *argv]
    first = start(command, env=orion.vars)
    work = orion.root / "work"  # a trial's dir is made once it is reserved
    wait_for(lambda: len(list(work.glob("*"))) == 3, first, "the first worker's 3 trials",
             poll=0.05)
    first.send_signal(signal.SIGSTOP)  # it holds its 3 until the second has started, however
    try:  # slowly the second starts on a loaded machine
        second = start(command, env=orion.vars)
        wait_for(lambda: len(list(work.glob("*"))) == 4, second, "the second worker's trial",
                 poll=0.05)
    finally:
        first.send_signal(signal.SIGCONT)
    code, err = finish_process(first)
    code2, err2 = finish_process(second)
    assert code == 0 and code2 == 0, (err + err2)[-3000:]
    assert "population of 1: trials" in err2, err2[-3000:]
    assert sorted(t["status"] for t in orion.trials("two") if t["status"] != "new") == [
        "completed"] * 4


def test_a_killed_workers_trials_are_resumed_by_the_next_one_on_a_full_budget(orion):
    """A worker SIGKILLed while it holds every trial of the budget leaves them reserved;
    once their heartbeats are old Orion takes them for lost, and ``room`` does not count
    them: the next worker reserves them (Orion re-queues them) and resumes their
    checkpoints, instead of waiting for a worker that is gone."""
    argv = worker_command(orion, "lost", 2, 2, ("--heartbeat", "1"))
    argv[argv.index("--epochs") + 1] = "6"
    env = {**orion.vars, "ORION_HEARTBEAT": "1"}  # lost after 5 heartbeats
    command = [sys.executable, "-m", "rltasks.orion.population", *argv]
    first = start(command, env=env)
    work = orion.root / "work"
    wait_for(lambda: len(list(work.glob("*/last.ckpt"))) == 2, first, "both checkpoints",
             poll=0.05)
    first.kill()
    first.wait()
    again = subprocess.run(command, cwd=ROOT, env={**orion.env, "ORION_HEARTBEAT": "1"},
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    found = orion.trials("lost")
    assert [t["status"] for t in found] == ["completed"] * 2
    assert all(results_in(t["working_dir"])["resumed_from"] >= 1 for t in found)


def test_sigterm_releases_the_trials_as_interrupted_and_a_worker_resumes_them(orion):
    """While a population trains, the pacemakers keep every reserved trial's heartbeat alive
    at the worker's --heartbeat (Orion 0.2.7's client beats every 60 s whatever it is told,
    so a worker with a short ORION_HEARTBEAT would take them for lost); SIGTERM then
    releases them as interrupted and another worker resumes them."""
    argv = worker_command(orion, "stop", 2, 2, ("--heartbeat", "1"))
    argv[argv.index("--epochs") + 1] = "20"
    with warnings.catch_warnings():  # Orion imported before the worker starts: on a loaded
        warnings.simplefilter("ignore")  # machine its first import here outlasted the training
        importlib.import_module("orion.client")
    proc = start([sys.executable, "-m", "rltasks.orion.population", *argv], env=orion.vars)
    work = orion.root / "work"
    wait_for(lambda: len(list(work.glob("*/last.ckpt"))) == 2, proc, "both trials' checkpoints",
             poll=0.05)
    first = {t["id"]: t["heartbeat"] for t in orion.trials("stop")}
    wait_for(lambda: all(t["status"] == "reserved" and t["heartbeat"] > first[t["id"]]
                         for t in orion.trials("stop")), proc, "both heartbeats to beat",
             poll=0.2)
    proc.send_signal(signal.SIGTERM)
    code, err = finish_process(proc)
    assert code == 130, err[-3000:]
    assert re.search(r"interrupted: SIGTERM received: trials \['\w{8}', '\w{8}'\] stopped "
                     r"at an epoch end", err), err[-3000:]
    assert [t["status"] for t in orion.trials("stop")] == ["interrupted"] * 2
    assert "already released" not in err, err[-3000:]  # no trial released twice
    again = subprocess.run([sys.executable, "-m", "rltasks.orion.population", *argv], cwd=ROOT,
                           env=orion.env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    found = orion.trials("stop")
    assert [t["status"] for t in found] == ["completed"] * 2
    for trial in found:
        results = results_in(trial["working_dir"])
        assert results["resumed_from"] >= 1 and results["env_steps"] == 20 * 512


def test_trials_with_bad_hyperparameters_break_and_the_worker_exits_1(orion, monkeypatch,
                                                                       capsys):
    """Every trial broke: exit 1 (not orion hunt's 0), each trial's error in one line, and
    the experiment's --exp-max-broken ends the worker without a traceback."""
    monkeypatch.chdir(ROOT)
    hunt = orion.hunt_command("bad", "lr: 'orion~uniform(-1.0, -0.5)'\n", *FAST, max_trials=4,
                              orion_args=("--exp-max-broken", "2"))
    assert population.main(["--population", "1", *hunt[2:]]) == 1
    err = capsys.readouterr().err
    found = orion.trials("bad")
    assert [t["status"] for t in found] == ["broken"] * 2
    assert err.count("broken: ValueError: hyperparameter lr=-0.") == 2
    assert "the experiment is broken" in err and "Traceback" not in err


def test_dqn_trials_train_as_a_population_and_each_ends_as_its_solo_run(orion, monkeypatch,
                                                                        capsys, tmp_path):
    monkeypatch.chdir(ROOT)
    args = ("--epochs", "1", "--steps-per-epoch", "256", "--learning-starts", "64",
            "--train-freq", "4", "--eval-episodes", "2")
    hunt = orion.hunt_command("dqn", SPACE, *args, max_trials=2, script="scripts/dqn.py")
    assert population.main(["--population", "2", *hunt[2:]]) == 0
    assert "population of 2: trials" in capsys.readouterr().err
    found = orion.trials("dqn")
    assert [t["status"] for t in found] == ["completed"] * 2
    for trial in found:
        assert trial["objective"] == results_in(trial["working_dir"])["objective"]
        assert_solo_rerun_equal("dqn", args, trial, tmp_path)


def test_trials_of_a_task_that_cannot_join_train_alone(orion, monkeypatch, capsys):
    """SAC has no population: its trials train one after the other, as solo trials."""
    monkeypatch.chdir(ROOT)
    hunt = orion.hunt_command("sac", SPACE, "--epochs", "1", "--steps-per-epoch", "200",
                              "--learning-starts", "100", "--eval-episodes", "1",
                              max_trials=2, script="scripts/sac.py")
    assert population.main(["--population", "2", *hunt[2:]]) == 0
    assert "population of" not in capsys.readouterr().err
    found = orion.trials("sac")
    assert [t["status"] for t in found] == ["completed"] * 2
    for trial in found:
        results = results_in(trial["working_dir"])
        assert results["task"] == "sac" and trial["objective"] == results["objective"]
        assert results["env_steps"] == 200


def test_n_workers_starts_that_many_workers_each_on_its_own_budget(orion):
    """``--n-workers 2`` (orion hunt's option; the worker ran alone before 2026-12-08): two
    workers, each with its own ``--worker-max-trials`` 1, so both trials complete where one
    worker would stop after one; the counts are added up."""
    argv = worker_command(orion, "nw", 1, 2, ("--n-workers", "2", "--worker-max-trials", "1"))
    done = subprocess.run([sys.executable, "-m", "rltasks.orion.population", *argv], cwd=ROOT,
                          env=orion.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^2 population workers: pids \d+, \d+$", done.stderr, re.M), done.stderr
    # Orion's own logging still reaches stderr (its note on the config's old `algorithms` key)
    assert "algorithms is deprecated" in done.stderr
    assert done.stderr.count("population of 1: trials") == 2
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "completed": 2, "broken": 0, "interrupted": 0}
    assert [t["status"] for t in orion.trials("nw")] == ["completed"] * 2


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_n_workers_stop_at_an_epoch_end_when_their_supervisor_is_stopped(orion, how):
    """SIGTERM to the supervisor's process group (as ``timeout`` sends it) reaches each worker
    once, through the supervisor: both stop at an epoch end and release their trials as
    interrupted, exit 130. SIGKILL of the supervisor alone: each worker is SIGTERMed by the
    kernel (Linux's parent-death signal) and does the same instead of training on."""
    if how == "sigkill" and not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    argv = worker_command(orion, how, 1, 2, ("--n-workers", "2", "--heartbeat", "1"))
    argv[argv.index("--epochs") + 1] = "20"
    proc = start([sys.executable, "-m", "rltasks.orion.population", *argv], env=orion.vars)
    work = orion.root / "work"
    wait_for(lambda: len(list(work.glob("*/last.ckpt"))) == 2, proc, "both trials' checkpoints",
             poll=0.05)
    if how == "sigterm":
        os.killpg(proc.pid, signal.SIGTERM)
        code, err = finish_process(proc)
        assert code == 130, err[-3000:]
    else:
        proc.kill()
        code, err = finish_process(proc)  # the workers hold its stderr until they exit
        assert code == -signal.SIGKILL
    assert err.count("interrupted: SIGTERM received: trials [") == 2, err[-3000:]
    assert "already released" not in err, err[-3000:]
    found = orion.trials(how)
    assert [t["status"] for t in found] == ["interrupted"] * 2
    for trial in found:  # each stopped at an epoch end, after its first, and saved it
        assert 1 <= checkpoint.load(Path(trial["working_dir"]) / "last.ckpt")["epoch"] < 20


def test_the_supervisors_exit_code_from_its_workers():
    """A worker that died (a signal, a crash) makes the command fail, naming it; an
    interrupted one makes it Orion's interrupt code; otherwise a lone worker's rule."""
    from collections import Counter

    from rltasks.orion.workers import exit_code

    said: list[str] = []
    ok = Counter(completed=3, broken=1, interrupted=0)
    assert exit_code([0, 0], ok, said.append) == 0 and not said
    assert exit_code([0, -9], ok, said.append) == 1
    assert said == ["population worker 1 died (exit code -9): the trials it held are Orion's "
                    "to re-queue once their heartbeat is old"]
    assert exit_code([130, 0], ok, said.append) == 130
    assert exit_code([1, 1], Counter(completed=0, broken=2, interrupted=0), said.append) == 1
    said.clear()  # every trial broke in workers that ended well: 1, no worker named
    assert exit_code([0, 0], Counter(completed=0, broken=2, interrupted=0), said.append) == 1
    assert not said
