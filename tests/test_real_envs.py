"""Real continuous-control and Box2D envs: every task that fits each one trains a short epoch
(MuJoCo's float64 observations included), and every per-env default is a valid setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rltasks
from rltasks.envs import VecLoader
from rltasks.task import ATARI, MAKE_DEFAULTS
from rltasks.tasks import REGISTRY, tasks_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENVS = ["HalfCheetah-v5", "Hopper-v5", "InvertedPendulum-v5", "LunarLander-v3",
        "LunarLanderContinuous-v3", "BipedalWalker-v3", "gridwalk:GridWalk-v0"]
#: small settings, so that each epoch trains (off-policy: past learning_starts)
SMALL = {"hidden": 16, "n_steps": 16, "batch_size": 16, "learning_starts": 32,
         "buffer_size": 1000, "update_epochs": 2, "train_freq": 4, "gradient_steps": 1}


def fitting(env: str) -> list[str]:
    loader = VecLoader(env, 1, "sync")
    try:
        return tasks_for(loader.single_action_space, loader.single_observation_space,
                         VecLoader)
    finally:
        loader.close()


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


def _matrix() -> list[tuple[str, str]]:
    """(env, task) for every task that fits each env, found when the tests are collected."""
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        return [(env, name) for env in ENVS for name in fitting(env)]
    finally:
        sys.path.remove(str(EXAMPLES))


CASES = _matrix()


@pytest.mark.parametrize(("env", "name"), CASES, ids=[f"{n}-{e}" for e, n in CASES])
def test_every_task_that_fits_trains_an_epoch(env, name):
    specs = REGISTRY[name].hparam_specs()
    task = rltasks.make_task(name, env=env, num_envs=2, steps_per_epoch=64,
                             **{k: v for k, v in SMALL.items() if k in specs})
    try:
        task.init()
        history = task.fit(1)
        assert task.env_steps >= 64 and len(history) == 1
        assert all(np.isfinite(v) for v in history[0].values() if isinstance(v, float))
        trained = history[0].get("gradient_steps", 1)
        assert trained > 0  # an off-policy task really updated
        assert np.isfinite(task.evaluate(1)["return_mean"])
    finally:
        task.close()


def test_the_matrix_covers_both_families():
    covered = {name for _, name in CASES}
    assert covered == set(rltasks.known_tasks()) - {"maddpg"}


@pytest.mark.parametrize(("name", "env"), [(name, env) for name, cls in sorted(REGISTRY.items())
                                           for env in cls.ENV_DEFAULTS])
def test_every_per_env_default_is_a_valid_setting(name, env):
    wanted = REGISTRY[name].ENV_DEFAULTS[env]
    env = "ALE/Breakout-v5" if env == ATARI else env  # the Atari set: for any ALE id
    task = rltasks.make_task(name, env=env, horizon=4)  # a per-env schedule needs a horizon
    try:
        task.init()  # validates every default hyperparameter
        for key in MAKE_DEFAULTS:
            if key in wanted:
                assert task.fixed[key] == wanted[key]
        assert {k: task.hp[k] for k in wanted if k in task.hp} == {
            k: v for k, v in wanted.items() if k in task.hp}
        assert set(wanted) <= set(task.hp) | set(MAKE_DEFAULTS)
    finally:
        task.close()


def test_given_loader_arguments_win_over_the_env_defaults():
    task = rltasks.make_task("ppo", env="Hopper-v5", num_envs=2, norm_obs=False)
    try:
        assert task.fixed["num_envs"] == 2 and task.fixed["norm_obs"] is False
        assert task.fixed["norm_reward"] is True  # not given: rl-zoo3's
    finally:
        task.close()


def test_recording_a_mujoco_run_without_opengl_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    from rltasks.checkpoint import save
    from rltasks.trial.payload import make_payload

    task = rltasks.make_task("td3", env="InvertedPendulum-v5", steps_per_epoch=32, hidden=8,
                             learning_starts=16, batch_size=8)
    try:
        task.init()
        task.fit(1)
        save(tmp_path / "last.ckpt", make_payload(task))
    finally:
        task.close()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MUJOCO_GL"] = "glfw"  # a window-system back-end: no display here, so no context
    proc = subprocess.run([sys.executable, "-m", "rltasks", "record", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot render frames on this machine" in errors[0]
    assert "MUJOCO_GL=egl" in errors[0] and "Traceback" not in proc.stderr
