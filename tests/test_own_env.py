"""The user's own env: ``--env module:EnvId`` (examples/gridwalk.py, float64 observations),
``--env-kwargs`` as part of the run's identity, a checkpoint that never imports a module by
itself, and a real ``orion hunt`` of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rltasks
from rltasks.checkpoint import peek

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ENV = "gridwalk:GridWalk-v0"
FAST = ["--epochs", "1", "--steps-per-epoch", "256", "--num-envs", "2", "--eval-episodes", "2"]


def env_with_examples(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=f"{EXAMPLES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env or env_with_examples())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One short PPO run on the example env with env kwargs."""
    workdir = tmp_path_factory.mktemp("own") / "run"
    proc = run("scripts/ppo.py", "--env", ENV, "--env-kwargs", '{"size": 6}', *FAST,
               "--workdir", str(workdir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def test_a_module_env_trains_through_the_script(trained):
    results = json.loads((trained / "results.json").read_text())
    assert results["env"] == ENV and results["env_steps"] == 256
    fixed = peek(trained / "last.ckpt")["fixed"]
    assert fixed["env"] == ENV and fixed["env_kwargs"] == {"size": 6}


def test_env_kwargs_reach_the_env_constructor(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    task = rltasks.make_task("dqn", env=ENV, env_kwargs={"size": 5})
    try:
        assert task.loader._venv.env.envs[0].unwrapped.size == 5
        assert task.fixed["env_kwargs"] == {"size": 5}
    finally:
        task.close()
    plain = rltasks.make_task("dqn", env=ENV)
    try:
        assert "env_kwargs" not in plain.fixed  # older checkpoints, without kwargs, still match
    finally:
        plain.close()


def test_float64_observations_reach_every_task_as_float32(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    for name in ("ppo", "dqn"):
        task = rltasks.make_task(name, env=ENV, num_envs=2, steps_per_epoch=64,
                                 **({"learning_starts": 16, "batch_size": 8}
                                    if name == "dqn" else {}))
        try:
            task.init()
            task.fit(1)
            assert task.obs.dtype == np.float32
            assert np.isfinite(task.evaluate(2)["return_mean"])
        finally:
            task.close()


def test_other_env_kwargs_are_refused_on_resume(trained, tmp_path):
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    proc = run("scripts/ppo.py", "--env", ENV, "--env-kwargs", '{"size": 9}', *FAST,
               "--workdir", str(workdir))
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith("error: ") and "env_kwargs={'size': 6} there" in err[-1]


def test_bad_env_kwargs_are_one_line(tmp_path):
    for kwargs, expected in (('{"size": ', "is not a valid env_kwargs: not JSON"),
                             ('[1, 2]', "not a JSON object"),
                             ('{"colour": 1}', "does not take these env kwargs")):
        proc = run("scripts/ppo.py", "--env", ENV, "--env-kwargs", kwargs, *FAST,
                   "--workdir", str(tmp_path / "bad"))
        assert proc.returncode == 2, proc.stderr
        assert expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_an_unimportable_env_module_is_one_line(tmp_path):
    proc = run("scripts/ppo.py", "--env", "no_such_module_xyz:Env-v0", *FAST,
               "--workdir", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "cannot import 'no_such_module_xyz'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_checkpoint_never_imports_a_module_by_itself(trained, tmp_path):
    marker = tmp_path / "imported"
    # a copy of the env module that leaves a mark when imported
    module = tmp_path / "markedwalk.py"
    module.write_text((EXAMPLES / "gridwalk.py").read_text().replace('"GridWalk-v0"',
                                                                    '"MarkedWalk-v0"')
                      + f"\nopen({str(marker)!r}, 'w').close()\n")
    env = env_with_examples(PYTHONPATH=str(tmp_path))
    workdir = tmp_path / "run"
    proc = run("scripts/dqn.py", "--env", "markedwalk:MarkedWalk-v0", *FAST,
               "--workdir", str(workdir), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    marker.unlink()
    for command in (["eval", str(workdir)], ["export", str(workdir)],
                    ["record", str(workdir)]):
        refused = run("-m", "rltasks", *command, env=env)
        assert refused.returncode == 2, refused.stderr
        assert "pass --env-module markedwalk" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and not marker.exists()
    allowed = run("-m", "rltasks", "eval", str(workdir), "--env-module", "markedwalk", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["env"] == "markedwalk:MarkedWalk-v0" and marker.exists()


def test_a_real_hunt_of_a_module_env_completes_every_trial(orion):
    orion.env["PYTHONPATH"] = str(EXAMPLES)
    space = "lr: 'orion~loguniform(1e-4, 1e-2)'\nenv_kwargs:\n  size: 6\n"
    proc = orion.hunt("own", space, "--env", ENV, *FAST, max_trials=2)
    found = orion.trials("own")
    assert [t["status"] for t in found] == ["completed"] * 2, proc.stdout[-5000:]
    for trial in found:
        fixed = peek(Path(trial["working_dir"]) / "last.ckpt")["fixed"]
        assert fixed["env"] == ENV and fixed["env_kwargs"] == {"size": 6}
