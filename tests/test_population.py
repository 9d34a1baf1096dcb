"""Populations (issue 16): members trained in lockstep with stacked networks end with the
bits of their solo runs, fail alone, stop alone and resume."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import assert_same_state

import rltasks
from rltasks import checkpoint
from rltasks.population import Population, lockstep_keys
from rltasks.task import BadResume, NonFiniteError

#: three members that differ in seed, lr, gamma (and, for A2C, the optimizer's family)
MEMBERS = [(0, {"lr": 3e-4, "gamma": 0.99}), (1, {"lr": 1e-3, "gamma": 0.95}),
           (2, {"lr": 5e-4, "gamma": 0.98})]


def member(algo: str, seed: int, hp: dict[str, Any], env: str = "CartPole-v1",
           observers: tuple = (), steps: int = 256) -> Any:
    return rltasks.make_task(algo, env=env, seed=seed, steps_per_epoch=steps,
                             observers=observers).init(**hp)


def solo_states(algo: str, members: list[tuple[int, dict]], epochs: int, **kw: Any) -> list:
    states = []
    for seed, hp in members:
        task = member(algo, seed, hp, **kw)
        task.fit(epochs)
        states.append(task.state_dict())
        task.close()
    return states


@pytest.mark.parametrize("algo, env, extra", [
    ("ppo", "CartPole-v1", {}),
    ("ppo", "Pendulum-v1", {"n_steps": 16, "batch_size": 64, "update_epochs": 2}),
    ("a2c", "CartPole-v1", {}),
    ("pg", "CartPole-v1", {}),
])
def test_each_member_ends_with_the_bits_of_its_solo_run(algo, env, extra):
    members = [(seed, {**hp, **extra}) for seed, hp in MEMBERS]
    if algo == "a2c":  # members may differ in the optimizer's family (each steps its own)
        members[1][1]["optimizer"] = "adam"
    pop = Population([member(algo, seed, hp, env=env) for seed, hp in members])
    histories = pop.fit(3)
    assert not pop.errors and [len(h) for h in histories] == [3, 3, 3]
    for want, got in zip(solo_states(algo, members, 3, env=env), pop.members, strict=True):
        assert_same_state(want, got.state_dict())
    # the members really differ: a population of copies would pass the check above too
    assert pop.members[0].history[-1]["loss"] != pop.members[1].history[-1]["loss"]


def test_members_that_cannot_share_a_lockstep_are_refused_in_one_line():
    ppo = member("ppo", 0, {})
    with pytest.raises(ValueError, match=r"differ in hidden \(64 and 32\).*group trials by it"):
        Population([ppo, member("ppo", 1, {"hidden": 32})])
    with pytest.raises(ValueError, match="differ in steps_per_epoch"):
        Population([ppo, member("ppo", 1, {}, steps=512)])
    with pytest.raises(ValueError, match="one task; got 'ppo' and 'a2c'"):
        Population([ppo, member("a2c", 1, {})])
    with pytest.raises(ValueError, match="'dqn' cannot join a population; ppo, a2c and pg can"):
        Population([rltasks.make_task("dqn", env="CartPole-v1").init()])
    with pytest.raises(ValueError, match="vector observations; rltasks/Catch-v0 has images"):
        Population([rltasks.make_task("ppo", env="rltasks/Catch-v0").init()])
    assert {"hidden", "layers", "n_steps", "batch_size", "update_epochs"} <= set(
        lockstep_keys(ppo))
    assert not {"lr", "gamma", "clip_range", "ent_coef"} & set(lockstep_keys(ppo))


def test_a_member_whose_loss_turns_nan_breaks_alone():
    pop = Population([member("ppo", seed, hp) for seed, hp in MEMBERS])
    sick = pop.members[1]
    real = sick.loss

    def nan_loss(*args: Any) -> Any:
        loss, stats = real(*args)
        return loss * float("nan"), stats * float("nan")
    sick.loss = nan_loss
    pop.fit(3)
    assert list(pop.errors) == [1] and isinstance(pop.errors[1], NonFiniteError)
    assert sick.epoch == 0 and "loss became nan in epoch 1" in str(pop.errors[1])
    with pytest.raises(BadResume):
        sick.fit(3)
    healthy = [MEMBERS[0], MEMBERS[2]]
    for want, got in zip(solo_states("ppo", healthy, 3), [pop.members[0], pop.members[2]],
                         strict=True):
        assert_same_state(want, got.state_dict())


class StopAfter:
    """An early-stopping observer: stop after epoch ``n``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_end(self, task: Any, metrics: dict[str, Any]) -> None:
        if task.epoch >= self.n:
            task.stop_reason = f"stopped after epoch {self.n}"


def test_a_member_that_stops_early_leaves_the_lockstep_and_the_rest_go_on():
    pop = Population([member("ppo", seed, hp, observers=(StopAfter(1),) if seed == 1 else ())
                      for seed, hp in MEMBERS])
    assert [len(h) for h in pop.fit(3)] == [3, 1, 3]
    want = solo_states("ppo", [MEMBERS[0], MEMBERS[2]], 3)
    stopped = member("ppo", *MEMBERS[1], observers=(StopAfter(1),))
    stopped.fit(3)
    want.insert(1, stopped.state_dict())
    for state, got in zip(want, pop.members, strict=True):
        assert_same_state(state, got.state_dict())


def test_a_population_resumes_from_its_members_checkpoints(tmp_path):
    """Members saved at different epochs (a population killed while its members wrote their
    checkpoints): the laggards catch up alone, then the lockstep goes on; every member ends
    as its uninterrupted solo run."""
    first = Population([member("ppo", seed, hp) for seed, hp in MEMBERS])
    first.fit(1)
    checkpoint.save(tmp_path / "m1.ckpt", first.members[1].state_dict())
    first.fit(2)
    resumed = []
    for k, (seed, hp) in enumerate(MEMBERS):
        path = tmp_path / f"m{k}.ckpt"
        if k != 1:
            checkpoint.save(path, first.members[k].state_dict())
        task = member("ppo", seed, hp)
        task.load_state_dict(checkpoint.load(path))
        resumed.append(task)
    assert [m.epoch for m in resumed] == [2, 1, 2]
    Population(resumed).fit(3)
    for want, got in zip(solo_states("ppo", MEMBERS, 3), resumed, strict=True):
        assert_same_state(want, got.state_dict())
