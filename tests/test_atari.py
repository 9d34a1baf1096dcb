"""Atari through ale-py's C++ vector env (``vectorization='ale'``, the default for ALE ids)
and through EnvPool's (``'envpool'``): the standard preprocessing, its training-only parts,
one short epoch of PPO and of DQN, and exact resume. SIGKILL resume is in
tests/test_kill_matrix.py (ppo-atari, dqn-per-atari); EnvPool's other envs in
tests/test_envpool.py."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_resumes_exactly

import rltasks
from rltasks.envs import VecLoader, registry
from rltasks.envs.pool import NO_STATE

#: the two Atari vector envs, and what each says of its envs' state
VECTORIZATIONS = {"ale": "AtariVectorEnv does not hand out its emulators' states",
                  "envpool": NO_STATE}
both = pytest.mark.parametrize("vectorization", list(VECTORIZATIONS))


def random_steps(loader: VecLoader, steps: int, train: bool, seed: int = 3):
    rng = np.random.default_rng(0)
    obs = loader.reset(seed)
    out = []
    for _ in range(steps):
        actions = rng.integers(loader.single_action_space.n, size=loader.num_envs)
        next_obs, rew, term, trunc, final = loader.step(actions, train=train)
        out.append((obs, next_obs, rew, term, trunc))
        obs = next_obs
    return out, loader.pop_episodes()


@both
def test_ale_ids_get_the_standard_preprocessing_with_stacked_uint8_frames(vectorization):
    loader = VecLoader("ALE/Pong-v5", num_envs=2, vectorization=vectorization)
    try:
        assert loader.env_state == "reset"
        assert VECTORIZATIONS[vectorization] in loader.env_state_reason
        steps, _ = random_steps(loader, 40, train=True)
    finally:
        loader.close()
    assert loader.single_observation_space.shape == (4, 84, 84)
    for obs, next_obs, _, term, trunc in steps:
        assert obs.dtype == np.uint8 and obs.shape == (2, 4, 84, 84)
        running = ~(term | trunc)  # a frame stack moves on by one frame per step
        assert np.array_equal(next_obs[running, :3], obs[running, 1:])
    assert any(not np.array_equal(o[:, 3], n[:, 3]) for o, n, *_ in steps)


def test_ale_py_is_the_default_for_ale_ids():
    loader = VecLoader("ALE/Pong-v5", num_envs=1)
    try:
        assert loader.vectorization == "ale" and loader.atari
    finally:
        loader.close()
    sync = VecLoader("ALE/Pong-v5", num_envs=1, vectorization="sync")  # gymnasium's raw env
    try:
        assert not sync.atari and sync.single_observation_space.shape == (210, 160, 3)
    finally:
        sync.close()


def test_sticky_actions_follow_the_env_id():
    for env_id, sticky in (("ALE/Breakout-v5", 0.25), ("BreakoutNoFrameskip-v4", 0.0)):
        spec = registry.check_env_id(env_id)
        assert spec.kwargs["repeat_action_probability"] == sticky


@both
def test_life_loss_and_reward_clipping_apply_to_training_only(vectorization):
    """The same seeded Breakout games, stepped for training and for evaluation: identical
    frames and true-game episode statistics; training sees clipped rewards and a terminal
    at every lost life, evaluation the game's rewards and one terminal per game."""
    train_loader, eval_loader = (VecLoader("ALE/Breakout-v5", 2, vectorization)
                                 for _ in range(2))
    try:
        train, train_episodes = random_steps(train_loader, 600, train=True)
        evaluation, eval_episodes = random_steps(eval_loader, 600, train=False)
    finally:
        train_loader.close()
        eval_loader.close()
    assert train_episodes == eval_episodes and eval_episodes  # whole games, true scores
    rewards = np.array([s[2] for s in evaluation])
    assert np.array_equal(np.array([s[2] for s in train]), np.sign(rewards))
    train_terms = np.array([s[3] for s in train])
    eval_terms = np.array([s[3] for s in evaluation])
    assert (train_terms >= eval_terms).all()
    # Breakout has 5 lives: each game ends after 5 terminals in training, 1 in evaluation
    assert train_terms.sum() >= 4 * eval_terms.sum() + eval_terms.sum() > eval_terms.sum()
    for (obs_t, *_), (obs_e, *_) in zip(train, evaluation, strict=True):
        assert np.array_equal(obs_t, obs_e)


@both
@pytest.mark.parametrize("train", [True, False])
def test_a_lost_life_is_followed_by_fire(vectorization, train):
    """Breakout's next ball is launched by FIRE: a policy that never presses it loses its
    first ball (launched by FIRE on reset) and, without a FIRE after each lost life, would
    wait out the game's 27,000-step cap on its second. The loader fires for it, in training
    and evaluation (as SB3's ``FireResetEnv`` after ``EpisodicLifeEnv``), so a NOOP policy
    plays whole 5-life games. No sticky actions here (``NoFrameskip-v4``): with them ALE may
    repeat the previous action instead of FIRE, and the agent must learn to fire itself."""
    loader = VecLoader("BreakoutNoFrameskip-v4", 2, vectorization)
    noop = np.zeros(2, np.int64)
    lost = []
    try:
        assert registry.fire_action(registry.check_env_id("BreakoutNoFrameskip-v4")) == 1
        loader.reset(0)
        for _ in range(1000):
            loader.step(noop, train=train)
            lost.append(loader._venv.life_lost.copy())
            if len(loader.episodes) >= 4:
                break
        episodes = loader.pop_episodes()
    finally:
        loader.close()
    assert len(episodes) >= 4, f"{len(episodes)} games ended in {len(lost)} NOOP steps"
    assert all(length < 300 for _, length, _ in episodes)
    assert np.sum(lost) >= 4 * 4  # 4 lives lost in a game before its last


def test_fire_is_found_in_the_games_action_set_where_it_has_one():
    assert registry.fire_action(registry.check_env_id("ALE/Pong-v5")) == 1
    assert registry.fire_action(registry.check_env_id("ALE/Freeway-v5")) is None  # no FIRE


@both
@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_one_short_epoch_on_pong_and_an_unclipped_evaluation(name, vectorization):
    hp = ({"learning_starts": 32, "buffer_size": 256, "train_freq": 16, "replay": "prioritized",
           "batch_size": 16, "gradient_steps": 2}
          if name == "dqn" else {"n_steps": 32, "batch_size": 64, "update_epochs": 1})
    task = rltasks.make_task(name, env="ALE/Pong-v5", seed=0, num_envs=2, steps_per_epoch=128,
                             vectorization=vectorization).init(**hp)
    task.fit(1)
    assert np.isfinite(task.history[-1]["loss"]) and task.env_steps == 128
    assert np.asarray(task.obs).shape == (2, 4, 84, 84)
    result = task.evaluate(episodes=1)
    # a whole game of Pong, the score the game gives: -21..21, at least 21 points played
    assert -21 <= result["return_mean"] <= 21 and result["length_mean"] > 21
    assert result["return_mean"] == int(result["return_mean"]) != 0


@both
@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_an_atari_run_resumes_exactly(name, vectorization, tmp_path):
    hp = ({"learning_starts": 16, "buffer_size": 128, "train_freq": 8, "replay": "prioritized",
           "n_step": 3, "batch_size": 16, "gradient_steps": 1} if name == "dqn"
          else {"n_steps": 16, "batch_size": 32, "update_epochs": 1})
    assert_resumes_exactly(lambda: rltasks.make_task(
        name, env="ALE/Pong-v5", seed=1, num_envs=2, steps_per_epoch=64,
        vectorization=vectorization).init(**hp), tmp_path)


def test_an_atari_id_without_ale_py_names_the_extra(monkeypatch):
    real = registry.importlib.util.find_spec
    monkeypatch.setattr(registry.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ale_py" else real(name, *a))
    with pytest.raises(ValueError, match=r"^ALE/NoSuchGame-v5 is an Atari game: ale-py \(with "
                                         r"its ROMs\) is not installed; pip install "
                                         r"'rltasks\[atari\]'$"):
        registry.check_env_id("ALE/NoSuchGame-v5")
    with pytest.raises(ValueError, match="vectorization='ale' is ale-py's Atari vector env"):
        VecLoader("CartPole-v1", 1, vectorization="ale")
    # ale-py not found once is looked for again: the process can still register it (this
    # test, run first in a worker, left every later ALE id unknown there)
    monkeypatch.setattr(registry, "_OPTIONAL_ENV_PACKAGES", ["ale_py"])
    assert registry._register_optional_envs() is False
    assert registry._OPTIONAL_ENV_PACKAGES == ["ale_py"]
    monkeypatch.setattr(registry.importlib.util, "find_spec", real)
    assert registry._register_optional_envs() is True
    assert registry._OPTIONAL_ENV_PACKAGES == []


@pytest.mark.parametrize(("name", "key", "value"), [
    ("ppo", "clip_range", 0.1), ("a2c", "vf_coef", 0.25), ("dqn", "learning_starts", 100_000)])
def test_every_ale_id_gets_rl_zoo3s_atari_set(name, key, value):
    for env in ("ALE/Breakout-v5", "PongNoFrameskip-v4"):
        task = rltasks.make_task(name, env=env, horizon=10, num_envs=1).init()
        assert task.hp[key] == value
        task.close()
    assert rltasks.make_task(name, env="CartPole-v1").init().hp[key] != value
    # reset mode starts new games every epoch: an Atari epoch's default lets each env's
    # first game of it run to the game's cap (27,000 steps), not 4,096 / num_envs steps
    task = rltasks.make_task(name, env="ALE/Pong-v5", horizon=10)
    assert task.steps_per_epoch // task.num_envs >= 27_000
    assert rltasks.make_task(name, env="CartPole-v1").steps_per_epoch == 4096
    task.close()


@both
def test_eval_record_and_export_reopen_an_atari_run_on_its_own_envs(vectorization, tmp_path):
    """The commands rebuild the run's task on the envs it was shaped for (gymnasium's raw
    210 x 160 RGB env would not fit its CNN); record films what the policy sees, since
    ale-py's and EnvPool's vector envs render nothing, and reports the game's score."""
    from helpers import cli, last_json
    from PIL import Image

    from rltasks import checkpoint
    from rltasks.trial.payload import make_payload

    task = rltasks.make_task("ppo", env="ALE/Pong-v5", seed=0, num_envs=2, steps_per_epoch=32,
                             vectorization=vectorization).init(n_steps=16, batch_size=32)
    task.fit(1)
    checkpoint.save(tmp_path / "last.ckpt", make_payload(task))
    task.close()
    video = last_json(cli("record", tmp_path, "--out", tmp_path / "pong.gif"))
    assert video["size"] == [84, 84] and video["frames"] > 21
    assert -21 <= video["returns"][0] <= 21 and video["returns"][0] == int(video["returns"][0])
    with Image.open(tmp_path / "pong.gif") as gif:
        assert gif.size == (84, 84) and gif.n_frames > 21  # (identical frames merge)
    assert last_json(cli("export", tmp_path))["parity"] is True
    assert last_json(cli("eval", tmp_path, "--episodes", "1"))["length_mean"] > 21
