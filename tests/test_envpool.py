"""EnvPool (``vectorization='envpool'``) beyond Atari, whose games tests/test_atari.py runs
through both vector envs: same-step autoreset, seeding, MuJoCo, exact resume in reset
mode (said once), and the one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_resumes_exactly, run_script

import rltasks
from rltasks.envs import VecLoader, pool

pytest.importorskip("envpool", reason="EnvPool's wheels: Linux x86_64, Python >= 3.11")


def test_a_finished_env_starts_its_next_episode_in_the_same_step():
    """EnvPool restarts a finished env on its next step; the loader restarts it at once: the
    step that ends an episode returns the new episode's first observation (CartPole starts
    within +-0.05) and, apart, the last one of the finished episode (out of bounds)."""
    loader = VecLoader("CartPole-v1", 4, vectorization="envpool")
    rng, ends = np.random.default_rng(0), 0
    try:
        obs = loader.reset(3)
        for _ in range(400):
            obs, rew, term, trunc, final = loader.step(rng.integers(2, size=4))
            if final is None:
                continue
            done = term | trunc
            ends += int(done.sum())
            assert (np.abs(obs[done]) <= 0.05).all()
            fell = (np.abs(final[done][:, 0]) > 2.4) | (np.abs(final[done][:, 2]) > np.deg2rad(12))
            assert fell.all() and term[done].all()
        episodes = loader.pop_episodes()
    finally:
        loader.close()
    assert ends == len(episodes) > 20
    assert all(8 <= length < 100 for _, length, _ in episodes)  # a random policy falls


def test_reset_seeds_decide_the_episodes():
    def first_steps(seed: int) -> np.ndarray:
        loader = VecLoader("CartPole-v1", 2, vectorization="envpool")
        try:
            frames = [loader.reset(seed)]
            frames += [loader.step(np.ones(2, np.int64))[0] for _ in range(5)]
            frames.append(loader.reset(seed + 1))  # a new seed, a pool seeded anew
            frames.append(loader.reset(seed))
        finally:
            loader.close()
        return np.stack(frames)

    a, b = first_steps(7), first_steps(7)
    assert np.array_equal(a, b) and np.array_equal(a[0], a[-1])
    assert not np.array_equal(a[0], a[-2]) and not np.array_equal(a[0], first_steps(8)[0])


@pytest.mark.parametrize("name", ["ppo", "sac"])
def test_mujoco_through_envpool_resumes_exactly_with_epoch_boundary_resets(name, tmp_path):
    hp = ({"learning_starts": 32, "buffer_size": 256, "batch_size": 32} if name == "sac"
          else {"n_steps": 32, "batch_size": 32, "update_epochs": 1})
    straight = assert_resumes_exactly(lambda: rltasks.make_task(
        name, env="HalfCheetah-v5", vectorization="envpool", seed=2, num_envs=2,
        steps_per_epoch=64).init(**hp), tmp_path)
    assert straight.loader.env_state == "reset"
    assert pool.NO_STATE in straight.loader.env_state_reason
    assert straight.observation_space.shape == (17,)


def test_a_run_says_once_that_envpool_resets_every_epoch(tmp_path):
    proc = run_script("ppo", "--env", "CartPole-v1", "--vectorization", "envpool",
                      "--epochs", "2", "--steps-per-epoch", "256", "--n-steps", "64",
                      "--num-envs", "4", workdir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if pool.NO_STATE in line]
    assert len(said) == 1 and said[0].startswith("env state: every epoch resets the envs")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["env_state"] == "reset" and results["epoch"] == 2


def test_envpool_errors_are_one_line_and_name_the_fix(monkeypatch):
    with pytest.raises(ValueError, match=r"^EnvPool has no rltasks/Catch-v0 \(.*\); use "
                                         r"vectorization='sync'$"):
        VecLoader("rltasks/Catch-v0", 1, vectorization="envpool")
    with pytest.raises(ValueError, match=r"^EnvPool's CartPole-v1 does not take these env "
                                         r"kwargs \{'no_such': 1\}: "):
        VecLoader("CartPole-v1", 1, vectorization="envpool", env_kwargs={"no_such": 1})
    with pytest.raises(ValueError, match=r"env_state='snapshot': the state of CartPole-v1's "
                                         r"envs cannot be saved \(EnvPool does not"):
        VecLoader("CartPole-v1", 1, vectorization="envpool", env_state="snapshot")
    real = pool.importlib.util.find_spec
    monkeypatch.setattr(pool.importlib.util, "find_spec",
                        lambda name, *a: None if name == "envpool" else real(name, *a))
    with pytest.raises(ValueError, match=r"^vectorization='envpool' needs EnvPool, which is "
                                         r"not installed; pip install 'rltasks\[envpool\]'$"):
        VecLoader("CartPole-v1", 1, vectorization="envpool")
