"""Env-state snapshots (``rltasks.envs.snapshot``, ``env_state="snapshot"``): episodes run on
across epoch boundaries and resumes, and a run still resumes bit for bit.

A restored loader steps exactly as the original; in snapshot mode episodes outlast an epoch
(in reset mode they cannot); tasks resume exactly in process and after SIGKILL; envs that
cannot be captured fall back to reset mode (saying so once) or, when snapshots are demanded,
are refused in one line; a checkpoint from before snapshots resumes in reset mode.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    assert_resumes_exactly,
    assert_same_state,
    finish_process,
    kill_group,
    launch,
    results_in,
    state_diffs,
    wait_for,
)

import rltasks
from rltasks import checkpoint
from rltasks.envs import VecLoader, snapshot
from rltasks.envs.multi import ParallelLoader
from rltasks.trial.run import main

RELEASE = Path(__file__).parent / "data" / "release-0.1.0"
RESET_LINE = "env state: every epoch resets the envs"


# -- the loader: capture and restore -----------------------------------------------------------
def actions(loader: VecLoader, steps: int, seed: int) -> list[np.ndarray]:
    space = loader.single_action_space
    space.seed(seed)
    return [np.stack([space.sample() for _ in range(loader.num_envs)]) for _ in range(steps)]


def steps_of(loader: VecLoader, acts: list[np.ndarray]) -> list:
    out = []
    for a in acts:
        obs, rew, term, trunc, final = loader.step(a)
        out.append((obs, rew, term, trunc, final))
    return out + [loader.pop_episodes()]


def round_trip(env_id: str, vectorization: str, steps: int, **kwargs) -> tuple[list, list]:
    """Step a loader ``steps`` times, snapshot it through the checkpoint codec into a fresh
    loader, then step both ``steps`` more times with the same actions: the outputs of both
    (every step's, the episodes finished, the final loader state)."""
    make = lambda: VecLoader(env_id, 2, vectorization, env_state="snapshot", **kwargs)  # noqa: E731
    original, restored = make(), make()
    try:
        acts = actions(original, 2 * steps, seed=5)
        original.reset(seed=11)
        steps_of(original, acts[:steps])
        restored.load_state_dict(checkpoint.decode(checkpoint.encode(original.state_dict())))
        return tuple([*steps_of(loader, acts[steps:]), loader.state_dict()]
                     for loader in (original, restored))
    finally:
        original.close()
        restored.close()


#: (env, vectorization, steps before and after the snapshot, a shorter time limit or None)
ROUND_TRIPS = [
    ("CartPole-v1", "native", 60, None), ("CartPole-v1", "sync", 60, None),
    ("Pendulum-v1", "sync", 120, None), ("Acrobot-v1", "sync", 40, 50),
    ("MountainCarContinuous-v0", "sync", 40, 50), ("InvertedPendulum-v5", "sync", 30, None),
    ("Hopper-v5", "sync", 40, None), ("Ant-v5", "sync", 20, 30),
]


@pytest.mark.parametrize(("env_id", "vectorization", "steps", "limit"), ROUND_TRIPS)
def test_a_restored_loader_steps_exactly_as_the_original(env_id, vectorization, steps, limit):
    """Episodes end and restart inside the compared steps (CartPole, Hopper: falls; the
    others: their time limit, counted before and after the snapshot)."""
    kwargs = {"env_kwargs": {"max_episode_steps": limit}} if limit else {}
    a, b = round_trip(env_id, vectorization, steps, **kwargs)
    assert_same_state(a, b)
    assert a[-2], "no episode ended after the snapshot: the test would miss autoresets"


def test_normalisation_and_episode_statistics_travel_with_the_snapshot():
    a, b = round_trip("CartPole-v1", "native", 50, norm_obs=True, norm_reward=True)
    assert_same_state(a, b)


def test_the_positions_mujoco_envs_read_before_stepping_are_needed(monkeypatch):
    """Ant reads its torso's position before it steps: a snapshot of the mjState alone is not
    enough, which is why ``MUJOCO_DERIVED`` exists (and what makes this test able to fail)."""
    monkeypatch.setattr(snapshot, "MUJOCO_DERIVED", ())
    a, b = round_trip("Ant-v5", "sync", 20)
    assert state_diffs(a[0], b[0])  # the very first reward after the restore differs


def test_a_snapshot_holds_only_plain_values():
    loader = VecLoader("Hopper-v5", 2, env_state="snapshot")
    loader.reset(seed=0)
    loader.step(np.zeros((2, 3), np.float32))
    state = loader.state_dict()
    checkpoint.encode(state)  # raises TypeError on any object the codec does not take
    env = state["envs"]["envs"][0]
    assert json.loads(env["rngs"]["np_random"])["bit_generator"] == "PCG64"
    assert [w["_elapsed_steps"] for w in env["wrappers"][:1]] == [1]
    loader.close()


def test_record_episode_statistics_counters_are_part_of_an_env_snapshot():
    import gymnasium as gym

    make = lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"), 5)  # noqa: E731
    original, restored = make(), make()
    original.reset(seed=1)
    for _ in range(30):
        if original.step(1)[2]:
            original.reset()
    snapshot.restore_env(restored, checkpoint.decode(checkpoint.encode(
        snapshot.capture_env(original))))
    for env in (original, restored):
        while not env.step(0)[2]:
            pass
    assert restored.return_queue.maxlen == 5
    for name in ("episode_count", "episode_returns", "episode_lengths", "return_queue",
                 "length_queue"):
        assert list(np.atleast_1d(getattr(original, name))) == list(
            np.atleast_1d(getattr(restored, name))), name
    assert len(original.return_queue) >= 2  # episodes ended before and after the snapshot


# -- which envs can be captured -------------------------------------------------------------
@pytest.mark.parametrize(("env_id", "vectorization", "why"), [
    ("LunarLander-v3", "auto", "LunarLander keeps state"),
    ("CartPole-v1", "async", "worker processes"),
    ("rltasks/PointReach-v0", "auto", "PointReachEnv keeps state"),
])
def test_envs_that_cannot_be_captured_reset_or_are_refused_in_one_line(env_id, vectorization,
                                                                        why):
    loader = VecLoader(env_id, 1, vectorization)
    assert loader.env_state == "reset" and why in loader.env_state_reason
    assert "envs" not in loader.state_dict()
    loader.close()
    with pytest.raises(ValueError, match="use env_state='reset'") as err:
        VecLoader(env_id, 1, vectorization, env_state="snapshot")
    assert why in str(err.value) and "\n" not in str(err.value)


def test_env_state_modes():
    assert VecLoader("Pendulum-v1", 1).env_state == "snapshot"
    assert VecLoader("Pendulum-v1", 1).env_state_reason is None
    reset = VecLoader("Pendulum-v1", 1, env_state="reset")
    assert reset.env_state == "reset" and "asked for" in reset.env_state_reason
    with pytest.raises(ValueError, match="env_state='always' is not one of"):
        VecLoader("Pendulum-v1", 1, env_state="always")
    with pytest.raises(ValueError, match="use env_state='reset'"):
        ParallelLoader("mpe2/simple_spread_v3", 1, env_state="snapshot")
    assert ParallelLoader("mpe2/simple_spread_v3", 1).env_state == "reset"


def test_a_snapshot_loader_refuses_a_reset_mode_state_and_a_reset_loader_ignores_snapshots():
    snap, reset = (VecLoader("Pendulum-v1", 2, env_state=m) for m in ("snapshot", "reset"))
    with pytest.raises(ValueError, match="no env snapshot.*env_state='reset'"):
        snap.load_state_dict(reset.state_dict())
    reset.load_state_dict(snap.state_dict())
    with pytest.raises(ValueError, match="for \\(3,\\) envs, not 2"):
        snap.load_state_dict(VecLoader("Pendulum-v1", 3, env_state="snapshot").state_dict())


# -- tasks ---------------------------------------------------------------------------------------
def pendulum_ppo(env_state: str):
    """64 env steps per env and epoch; a Pendulum episode is 200."""
    return rltasks.make_task("ppo", "Pendulum-v1", num_envs=2, steps_per_epoch=128, seed=1,
                             env_state=env_state).init(n_steps=32, batch_size=64,
                                                       update_epochs=1, hidden=16)


def test_episodes_cross_epoch_boundaries_in_snapshot_mode_only():
    snap, reset = pendulum_ppo("snapshot"), pendulum_ppo("reset")
    snap.fit(4)
    reset.fit(4)
    assert [row["episodes"] for row in snap.history] == [0, 0, 0, 2]
    assert snap.history[-1]["length_mean"] == 200 > 64
    assert [row["episodes"] for row in reset.history] == [0, 0, 0, 0]
    assert snap.fixed["env_state"] == "snapshot" and "env_state" not in reset.fixed


def test_the_noise_restarts_at_an_epoch_start_only_when_the_envs_were_reset(monkeypatch):
    ends = {}
    for mode in ("snapshot", "reset"):
        task = rltasks.make_task("td3", "Pendulum-v1", steps_per_epoch=50, env_state=mode)
        task.init(learning_starts=20, batch_size=16, hidden=16)
        real, calls = task.episode_ended, []
        monkeypatch.setattr(task, "episode_ended", lambda done, r=real, c=calls: (
            c.append(bool(done.any())), r(done)))
        task.fit(3)  # 150 steps: no episode ends
        ends[mode] = sum(calls)
    assert ends == {"snapshot": 1, "reset": 3}


@pytest.mark.parametrize("case", ["ppo-cartpole-native-normalised", "td3-pendulum-ou",
                                  "ppo-hopper"])
def test_snapshot_mode_resumes_exactly_in_process(case, tmp_path):
    make = {
        "ppo-cartpole-native-normalised": lambda: rltasks.make_task(
            "ppo", "CartPole-v1", num_envs=4, steps_per_epoch=256, seed=3, norm_obs=True,
            norm_reward=True).init(update_epochs=1, n_steps=16),
        "td3-pendulum-ou": lambda: rltasks.make_task(
            "td3", "Pendulum-v1", num_envs=2, steps_per_epoch=150, seed=3).init(
            noise="ornstein_uhlenbeck", learning_starts=100, batch_size=32, hidden=16),
        "ppo-hopper": lambda: rltasks.make_task(
            "ppo", "Hopper-v5", num_envs=2, steps_per_epoch=128, seed=3).init(
            n_steps=32, batch_size=32, update_epochs=1, hidden=16),
    }[case]
    straight = assert_resumes_exactly(make, tmp_path, stop=1, end=3)
    assert straight.loader.env_state == "snapshot"


def test_resuming_without_the_running_episodes_is_another_run(tmp_path):
    """What the snapshot buys: the same checkpoint continued in reset mode diverges."""
    make = lambda mode: rltasks.make_task(  # noqa: E731
        "ppo", "CartPole-v1", num_envs=2, steps_per_epoch=64, seed=2, env_state=mode).init(
        update_epochs=1, n_steps=16)
    straight, first = make("snapshot"), make("snapshot")
    straight.fit(2)
    first.fit(1)
    other = make("reset")
    other.load_state_dict(first.state_dict())
    other.fit(2)
    assert state_diffs(straight.state_dict()["modules"], other.state_dict()["modules"])
    with pytest.raises(ValueError, match="no running episodes.*env_state='reset'"):
        make("snapshot").load_state_dict(make("reset").init().state_dict())


# -- the runner --------------------------------------------------------------------------------
def test_env_state_snapshot_on_an_env_that_cannot_be_captured_exits_2_in_one_line(
        tmp_path, capsys):
    assert main("ppo", ["--env", "LunarLander-v3", "--env-state", "snapshot",
                        "--workdir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: env_state='snapshot': the state of LunarLander-v3's")
    assert "use env_state='reset' (--env-state reset)" in err[-1]


def test_a_new_run_snapshots_and_an_explicit_contrary_mode_is_refused(tmp_path, capsys):
    args = ["--steps-per-epoch", "128", "--num-envs", "2", "--n-steps", "16", "--epochs", "1",
            "--eval-episodes", "1", "--workdir", str(tmp_path)]
    assert main("ppo", args) == 0
    results = results_in(tmp_path)
    assert (results["env_state"], results["env_state_reason"]) == ("snapshot", None)
    assert checkpoint.peek(tmp_path / "last.ckpt")["fixed"]["env_state"] == "snapshot"
    assert RESET_LINE not in capsys.readouterr().err
    assert main("ppo", [*args, "--epochs", "2", "--env-state", "reset"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "another run (env_state='snapshot' there, None here)" in err


def test_a_release_checkpoint_resumes_in_reset_mode_through_the_runner(tmp_path, capsys):
    shutil.copy(RELEASE / "ppo" / "last.ckpt", tmp_path / "last.ckpt")
    command = json.loads((RELEASE / "ppo" / "expected.json").read_text())["command"]
    argv = shlex.split(command.removesuffix(" --epochs 1"))[2:]
    args = [*argv, "--eval-episodes", "1", "--workdir", str(tmp_path)]
    assert main("ppo", [*args, "--epochs", "2", "--env-state", "snapshot"]) == 2
    assert "env_state=None there, 'snapshot' here" in capsys.readouterr().err
    assert main("ppo", [*args, "--epochs", "2"]) == 0
    err = capsys.readouterr().err
    assert err.count(RESET_LINE) == 1 and "it resumes last.ckpt, written in reset mode" in err
    results = results_in(tmp_path)
    assert results["env_state"] == "reset" and results["resumed_from"] == 1
    assert "env_state" not in checkpoint.peek(tmp_path / "last.ckpt")["fixed"]


# -- SIGKILL -------------------------------------------------------------------------------------
EPOCHS = 4
COMMON = ["--epochs", str(EPOCHS), "--seed", "5", "--eval-episodes", "2", "--hidden", "16"]
#: scenario -> (script, arguments, mode in force): a MuJoCo env, a classic-control env whose
#: 200-step episodes outlast an epoch (150 steps), and Box2D's LunarLander, which falls back
KILLED = {
    "ppo-hopper": ("ppo", ["--env", "Hopper-v5", *COMMON, "--steps-per-epoch", "256",
                           "--num-envs", "2", "--n-steps", "64", "--batch-size", "64",
                           "--update-epochs", "2"], "snapshot"),
    "sac-pendulum": ("sac", ["--env", "Pendulum-v1", *COMMON, "--steps-per-epoch", "150",
                             "--learning-starts", "100", "--batch-size", "32"], "snapshot"),
    "ppo-lunarlander": ("ppo", ["--env", "LunarLander-v3", *COMMON, "--steps-per-epoch",
                                "256", "--num-envs", "2", "--n-steps", "64", "--batch-size",
                                "64", "--update-epochs", "2"], "reset"),
}
RESULT_KEYS = ("return_mean", "return_std", "length_mean", "epoch", "env_steps", "env_state",
               "env_state_reason")


def ckpt_epoch(workdir: Path) -> int:
    try:
        return int(checkpoint.peek(workdir / "last.ckpt")["epoch"])
    except (FileNotFoundError, checkpoint.CheckpointError):
        return 0


def complete(script: str, args: list[str], workdir: Path) -> str:
    code, err = finish_process(launch(script, *args, workdir=workdir))
    assert code == 0, err[-3000:]
    return err


@pytest.mark.parametrize("scenario", KILLED)
def test_sigkilled_mid_episode_then_rerun_ends_exactly_as_uninterrupted(scenario, tmp_path):
    script, args, mode = KILLED[scenario]
    err = complete(script, args, tmp_path / "reference")
    assert err.count(RESET_LINE) == (mode == "reset")
    reference = checkpoint.load(tmp_path / "reference" / "last.ckpt")
    workdir = tmp_path / "run"
    proc = launch(script, *args, workdir=workdir)
    try:  # killed in the epoch after the second checkpoint, in the middle of episodes
        wait_for(lambda: ckpt_epoch(workdir) >= 2, proc, "the second checkpoint")
    finally:
        kill_group(proc)
    killed_at = ckpt_epoch(workdir)
    assert 2 <= killed_at < EPOCHS
    err = complete(script, args, workdir)
    assert err.count(RESET_LINE) == (mode == "reset")
    resumed = checkpoint.load(workdir / "last.ckpt")
    assert_same_state(resumed["state"], reference["state"])
    ours, theirs = results_in(workdir), results_in(tmp_path / "reference")
    assert ours["resumed_from"] == killed_at and ours["env_state"] == mode
    assert {k: ours[k] for k in RESULT_KEYS} == {k: theirs[k] for k in RESULT_KEYS}
    if scenario == "sac-pendulum":  # 200-step episodes, 150 steps an epoch: they crossed
        assert [row["episodes"] for row in reference["state"]["history"]] == [0, 1, 1, 1]
    if mode == "reset":
        assert "LunarLander keeps state" in ours["env_state_reason"]
