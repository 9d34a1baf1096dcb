"""Real ``orion hunt`` runs of ``scripts/ppo.py`` against a temporary pickled database.

Every Orion process gets ``ORION_DB_TYPE=pickleddb`` and ``ORION_DB_ADDRESS=<tmp>/orion.pkl``,
so no test ever touches the user's database. ``orion hunt`` exits 0 even when every trial
broke, so outcomes are read back from the database through Orion's Python client.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ORION = BIN / "orion"
FAST = ["--steps-per-epoch", "512", "--num-envs", "2", "--eval-episodes", "2"]
TIMEOUT = 180  # seconds for one hunt; a trial takes a few

# Runs in a subprocess (Orion reads its configuration when imported): prints every trial.
QUERY = """
import json, sys
from orion.client import get_experiment
storage = {"type": "legacy", "database": {"type": "pickleddb", "host": sys.argv[2]}}
exp = get_experiment(sys.argv[1], storage=storage)
print(json.dumps([{
    "id": t.id, "status": t.status, "working_dir": t.working_dir, "params": t.params,
    "hash_params": t.hash_params, "parent": t.parent,
    "objective": None if t.objective is None else t.objective.value,
    "results": {r.name: r.value for r in t.results},
} for t in exp.fetch_trials()]))
"""


def orion_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORION_")}
    return {**env, "ORION_DB_TYPE": "pickleddb", "ORION_DB_ADDRESS": str(tmp_path / "orion.pkl"),
            "PYTHONWARNINGS": "ignore", "RLTASKS_THREADS": "1",
            "PATH": os.pathsep.join([str(BIN), env.get("PATH", "")])}


def hunt(tmp_path: Path, name: str, space: str, *args: str, max_trials: int | None = 1,
         orion_args: tuple[str, ...] = (), script: str = "scripts/ppo.py",
         timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """``orion hunt`` of ``script`` with ``space`` (YAML text, or a path under the repo) as
    its --config; output merged. ``max_trials=None`` leaves the budget to the algorithm."""
    config = ROOT / space if space.endswith(".yaml") and "\n" not in space else (
        tmp_path / f"{name}.yaml")
    if config.parent == tmp_path:
        config.write_text(space)
    budget = [] if max_trials is None else ["--exp-max-trials", str(max_trials)]
    return subprocess.run(
        [str(ORION), "hunt", *orion_args, "-n", name, *budget,
         "--working-dir", str(tmp_path / "work"),
         "python", script, "--config", str(config), *args],
        cwd=ROOT, env=orion_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout)


def trials(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-c", QUERY, name, str(tmp_path / "orion.pkl")],
                          cwd=tmp_path, env=orion_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def results_of(trial: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    workdir = Path(trial["working_dir"])
    assert workdir.parent == tmp_path / "work", workdir  # per-trial dirs under --working-dir
    return json.loads((workdir / "results.json").read_text())


def test_hunt_of_three_trials_completes_each_with_minus_return_mean(tmp_path):
    space = ("lr: 'orion~loguniform(1e-4, 1e-2)'\n"
             "optimizer: \"orion~choices(['adam', 'sgd'])\"\n")
    proc = hunt(tmp_path, "t3", space, "--epochs", "1", *FAST, max_trials=3)
    found = trials(tmp_path, "t3")
    assert [t["status"] for t in found] == ["completed"] * 3, proc.stdout[-5000:]
    assert len({t["id"] for t in found}) == 3
    for trial in found:
        results = results_of(trial, tmp_path)
        assert trial["objective"] == -results["return_mean"] == results["objective"]
        assert results["epoch"] == 1 and results["env_steps"] == 512
        assert results["workdir"] == trial["working_dir"]  # ORION_WORKING_DIR was used
        hparams = results["hparams"]  # the trial ran with the values Orion drew
        assert (hparams["lr"], hparams["optimizer"]) == (trial["params"]["/lr"],
                                                        trial["params"]["/optimizer"])


def test_invalid_hyperparameter_is_a_broken_trial_with_a_one_line_error(tmp_path):
    proc = hunt(tmp_path, "bad", "lr: 'orion~uniform(-1.0, -0.5)'\n", "--epochs", "1", *FAST,
                orion_args=("--exp-max-broken", "1"))
    found = trials(tmp_path, "bad")
    assert [t["status"] for t in found] == ["broken"], proc.stdout[-5000:]
    assert found[0]["objective"] is None
    out = proc.stdout
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.match(r"error: .*\blr=-0\.\d+", errors[0]), out[-5000:]
    # Orion logs a traceback of its own ExecutionError; the trial itself must not print one.
    assert not re.search(r'File "[^"]*(/rltasks/|scripts/ppo\.py)', out), out[-5000:]
    assert not re.search(r"^(ValueError|UsageError|\w+Error):", out, re.M), out[-5000:]


def test_fidelity_free_trial_reports_the_objective_of_its_results_json(tmp_path):
    space = "lr: 'orion~loguniform(1e-4, 1e-2)'\nclip_range: 0.3\n"
    proc = hunt(tmp_path, "single", space, "--epochs", "2", *FAST)
    found = trials(tmp_path, "single")
    assert [t["status"] for t in found] == ["completed"], proc.stdout[-5000:]
    (trial,) = found
    results = results_of(trial, tmp_path)
    assert trial["objective"] == results["objective"] == -results["return_mean"]
    assert results["epoch"] == 2 and results["env_steps"] == 1024
    assert results["hparams"]["clip_range"] == 0.3 and results["hparams"]["lr"] == trial[
        "params"]["/lr"]
    for key in ("return_mean", "return_std", "length_mean", "env_steps"):
        assert trial["results"][key] == results[key], key
