"""Real ``orion hunt`` runs of ``scripts/ppo.py`` against the test's own pickled database
(the ``orion`` fixture: every Orion process gets ``ORION_DB_TYPE=pickleddb`` and
``ORION_DB_ADDRESS=<tmp>/db.pkl``, so no test ever touches the user's database). ``orion hunt``
exits 0 even when every trial broke, so outcomes are read back from the database through
Orion's Python client.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from helpers import Orion, results_in

FAST = ["--steps-per-epoch", "512", "--num-envs", "2", "--eval-episodes", "2"]


def results_of(trial: dict[str, Any], orion: Orion) -> dict[str, Any]:
    workdir = Path(trial["working_dir"])
    assert workdir.parent == orion.root / "work", workdir  # per-trial dirs under --working-dir
    return results_in(workdir)


def test_hunt_of_three_trials_completes_each_with_minus_return_mean(orion):
    space = ("lr: 'orion~loguniform(1e-4, 1e-2)'\n"
             "optimizer: \"orion~choices(['adam', 'sgd'])\"\n")
    proc = orion.hunt("t3", space, "--epochs", "1", *FAST, max_trials=3)
    found = orion.trials("t3")
    assert [t["status"] for t in found] == ["completed"] * 3, proc.stdout[-5000:]
    assert len({t["id"] for t in found}) == 3
    for trial in found:
        results = results_of(trial, orion)
        assert trial["objective"] == -results["return_mean"] == results["objective"]
        assert results["epoch"] == 1 and results["env_steps"] == 512
        assert results["workdir"] == trial["working_dir"]  # ORION_WORKING_DIR was used
        hparams = results["hparams"]  # the trial ran with the values Orion drew
        assert (hparams["lr"], hparams["optimizer"]) == (trial["params"]["/lr"],
                                                        trial["params"]["/optimizer"])


def test_invalid_hyperparameter_is_a_broken_trial_with_a_one_line_error(orion):
    proc = orion.hunt("bad", "lr: 'orion~uniform(-1.0, -0.5)'\n", "--epochs", "1", *FAST,
                orion_args=("--exp-max-broken", "1"))
    found = orion.trials("bad")
    assert [t["status"] for t in found] == ["broken"], proc.stdout[-5000:]
    assert found[0]["objective"] is None
    out = proc.stdout
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.match(r"error: .*\blr=-0\.\d+", errors[0]), out[-5000:]
    # Orion logs a traceback of its own ExecutionError; the trial itself must not print one.
    assert not re.search(r'File "[^"]*(/rltasks/|scripts/ppo\.py)', out), out[-5000:]
    assert not re.search(r"^(ValueError|UsageError|\w+Error):", out, re.M), out[-5000:]


def test_fidelity_free_trial_reports_the_objective_of_its_results_json(orion):
    space = "lr: 'orion~loguniform(1e-4, 1e-2)'\nclip_range: 0.3\n"
    proc = orion.hunt("single", space, "--epochs", "2", *FAST)
    found = orion.trials("single")
    assert [t["status"] for t in found] == ["completed"], proc.stdout[-5000:]
    (trial,) = found
    results = results_of(trial, orion)
    assert trial["objective"] == results["objective"] == -results["return_mean"]
    assert results["epoch"] == 2 and results["env_steps"] == 1024
    assert results["hparams"]["clip_range"] == 0.3 and results["hparams"]["lr"] == trial[
        "params"]["/lr"]
    for key in ("return_mean", "return_std", "length_mean", "env_steps"):
        assert trial["results"][key] == results[key], key
