"""Populations (issue 16): members trained in lockstep with stacked networks end with the
bits of their solo runs, fail alone, stop alone and resume."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import numpy as np
import pytest
import torch
from helpers import assert_same_state, run_script, sigterm_seeds

import rltasks
from rltasks import checkpoint, nets
from rltasks.population import Population, lockstep_keys
from rltasks.population import members as population_members
from rltasks.task import BadResume, NonFiniteError

#: three members that differ in seed, lr, gamma (and, for A2C, the optimizer's family)
MEMBERS = [(0, {"lr": 3e-4, "gamma": 0.99}), (1, {"lr": 1e-3, "gamma": 0.95}),
           (2, {"lr": 5e-4, "gamma": 0.98})]
#: DQN members' replay loop within a 256-step epoch: updates from step 100, one per 2 steps
#: every 4, the target copied every 50
DQN = {"learning_starts": 100, "train_freq": 4, "gradient_steps": -1, "subsample_steps": 2,
       "target_update": 50}


def member(algo: str, seed: int, hp: dict[str, Any], env: str = "CartPole-v1",
           observers: tuple = (), steps: int = 256) -> Any:
    hp = dict(hp)
    num_envs = hp.pop("num_envs", None)
    return rltasks.make_task(algo, env=env, seed=seed, steps_per_epoch=steps,
                             num_envs=num_envs, observers=observers).init(**hp)


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
    # two envs (F-ordered observation batches of two rows), 16 units: shapes where the
    # batched product is not the solo one's and runs member by member
    ("ppo", "CartPole-v1", {"num_envs": 2, "n_steps": 16, "batch_size": 32, "hidden": 16}),
    ("ppo", "Pendulum-v1", {"n_steps": 16, "batch_size": 64, "update_epochs": 2}),
    ("a2c", "CartPole-v1", {}),
    ("pg", "CartPole-v1", {}),
    ("dqn", "CartPole-v1", DQN),
    ("dqn", "CartPole-v1", {**DQN, "dueling": True, "layers": 1}),
    # not epsilon-greedy: each member chooses on its slice of one stacked forward
    ("dqn", "CartPole-v1", {**DQN, "exploration": "boltzmann", "learning_starts": 0}),
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


def test_dqn_members_may_differ_in_replay_ratio_targets_loss_and_optimizer():
    """Members with different numbers of gradient steps per env step (train_freq,
    subsample_steps, learning_starts) step together where their steps fall together; each
    ends as its solo run, prioritized replay, n-step returns and two envs included."""
    common = {"replay": "prioritized", "double": True, "n_step": 3, "gradient_steps": -1,
              "batch_size": 32, "hidden": 32, "num_envs": 2}
    members = [
        (0, {"lr": 3e-4, "train_freq": 4, "learning_starts": 100, "subsample_steps": 1}),
        (1, {"lr": 1e-3, "gamma": 0.95, "train_freq": 16, "learning_starts": 0,
             "subsample_steps": 4, "tau": 0.1, "target_update": 1}),
        (2, {"lr": 5e-4, "train_freq": 1, "learning_starts": 200, "subsample_steps": 2,
             "double": False, "loss": "mse", "optimizer": "sgd"})]
    members = [(seed, {**common, **hp}) for seed, hp in members]
    pop = Population([member("dqn", seed, hp) for seed, hp in members])
    pop.fit(3)
    assert not pop.errors
    # 768 steps of 2 envs: 1 update per 4 steps from step 100, 4 per 16, 1 per 2 from 200
    assert [m.history[-1]["gradient_steps"] for m in pop.members] == [256, 64, 128]
    for want, got in zip(solo_states("dqn", members, 3), pop.members, strict=True):
        assert_same_state(want, got.state_dict())



@pytest.mark.parametrize("ks", [[0, 1, 2], [0, 2]])
def test_stacked_gradients_are_clipped_as_one_tensor_each_with_each_members_bits(
        monkeypatch, ks):
    """Gradients handed out by ``StackedMLP.scatter_grads`` are measured and scaled per
    stacked tensor (no per-tensor ``_foreach_norm``), with each member's limit, and end as
    ``clip_grad_norm_`` leaves each member's own; members not clipped (not in ``ks``) keep
    their gradients."""
    torch.manual_seed(0)
    solos = [nets.mlp(5, [64, 64], 3) for _ in range(3)]
    stacked = nets.StackedMLP(solos)
    x = nets.aligned_stack([torch.randn(32, 5) * 10 for _ in range(3)])
    stacked(x).pow(2).sum().backward()
    stacked.scatter_grads()
    grads = {k: [p.grad.clone() for p in m.parameters()] for k, m in enumerate(solos)}
    limits = [0.01, 1e6, 0.5]
    monkeypatch.setattr(torch, "_foreach_norm", lambda *a, **kw: pytest.fail("per tensor"))
    total = population_members.clip_together(
        [[p.grad for p in solos[k].parameters()] for k in ks], ks, 3, [limits[k] for k in ks])
    monkeypatch.undo()
    for i, k in enumerate(ks):
        ps = [torch.nn.Parameter(torch.empty_like(g)) for g in grads[k]]
        for p, g in zip(ps, grads[k], strict=True):
            p.grad = g.clone()
        assert torch.equal(torch.nn.utils.clip_grad_norm_(ps, limits[k]), total[i])
        assert all(torch.equal(p.grad, q.grad) for p, q in zip(ps, solos[k].parameters(),
                                                                strict=True))
    for k in set(range(3)) - set(ks):
        assert all(torch.equal(g, p.grad) for g, p in zip(grads[k], solos[k].parameters(),
                                                          strict=True))
    assert total[0] > 1 and not torch.equal(grads[0][0], solos[0][0].weight.grad)  # clipped


def test_dqn_members_clip_and_copy_targets_together_as_each_would_alone(monkeypatch):
    """The clipping (each member's own limit, two of three small enough to clip every step)
    and the target copies are computed for all members at once; the copies that fall due at
    one step are made together, whichever members they are; each member ends as its solo
    run."""
    members = [(seed, {**hp, **DQN}) for seed, hp in MEMBERS]
    for (_, hp), limit, every in zip(members, (0.01, 0.05, 100.0), (50, 100, 64), strict=True):
        hp.update(max_grad_norm=limit, target_update=every)
    copied: list[list[int]] = []
    real = nets.StackedMLP.copy_from

    def spy(self: Any, source: Any, ks: list[int]) -> None:
        copied.append(list(ks))
        real(self, source, ks)

    monkeypatch.setattr(nets.StackedMLP, "copy_from", spy)
    pop = Population([member("dqn", seed, hp) for seed, hp in members])
    pop.fit(3)
    assert not pop.errors
    # 768 steps: members 0 and 1 copy together every 100 steps, 0 alone at 50, 150, ...,
    # 2 alone every 64
    assert [0, 1] in copied and [0] in copied and [2] in copied
    norms: list[float] = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, limit: norms.append(float(clip(params, limit))) or
                        torch.tensor(norms[-1]))
    for want, got in zip(solo_states("dqn", members, 3), pop.members, strict=True):
        assert_same_state(want, got.state_dict())
    assert sum(n > 0.05 for n in norms) > len(norms) / 2  # the solo runs clipped

def test_dqn_members_on_uniform_replay_share_one_storage_across_epochs():
    """Uniform replay buffers of DQN members hold their transitions in one stacked array per
    field (each member's slice), made once: a later epoch gathers from the same storage;
    prioritized buffers keep their own (and every member still ends as its solo run: the
    tests above)."""
    pop = Population([member("dqn", seed, {**hp, **DQN}) for seed, hp in MEMBERS])
    pop.fit(1)
    base = pop.members[0].buffer.obs.base
    assert base is not None and base.shape == (3, *pop.members[0].buffer.obs.shape)
    for k, m in enumerate(pop.members):
        assert m.buffer.obs.base is base and np.array_equal(m.buffer.obs, base[k])
        assert m.buffer.actions.base.shape[0] == 3 and len(m.buffer) == 256
    pop.fit(2)
    assert all(m.buffer.obs.base is base for m in pop.members)
    prioritized = Population([member("dqn", seed, {**hp, **DQN, "replay": "prioritized"})
                              for seed, hp in MEMBERS])
    prioritized.fit(1)
    assert all(m.buffer.obs.base is None for m in prioritized.members)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_the_shared_replay_storage_writes_only_the_rows_filled():
    """Moving members' buffers into the stacked storage copies the rows filled so far, not
    the capacity: three members of a million transitions each (48 MB apiece when written)
    leave the process about as large as they found it after 200 steps each."""

    def resident_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def growth(buffer_size: int) -> float:
        members = [member("dqn", seed, {**hp, **DQN, "buffer_size": buffer_size}, steps=200)
                   for seed, hp in MEMBERS]
        for m in members:
            m.fit(1)  # each buffer holds 200 transitions in its own arrays
        before = resident_mb()
        pop = Population(members)
        pop.fit(2)
        assert pop.members[0].buffer.obs.base.shape == (3, buffer_size, 4)
        return resident_mb() - before

    growth(1000)  # the population's first epoch in this process: kernels, caches
    assert growth(1_000_000) < 50  # 137 MB when the whole capacity was copied (measured)


def test_a_failing_td_kind_takes_out_only_its_members():
    """Members' TD targets and losses are computed by one member of each (double, loss)
    kind for all rows: a kind that fails takes out its members, not the others."""
    members = [(seed, {**hp, **DQN}) for seed, hp in MEMBERS]
    members[2][1]["loss"] = "mse"
    pop = Population([member("dqn", seed, hp) for seed, hp in members])
    pop.members[2].td_loss = lambda *args: 1 / 0
    pop.fit(2)
    assert list(pop.errors) == [2] and isinstance(pop.errors[2], ZeroDivisionError)
    for want, got in zip(solo_states("dqn", members[:2], 2), pop.members[:2], strict=True):
        assert_same_state(want, got.state_dict())


def test_a_dqn_member_whose_loss_turns_nan_breaks_alone():
    members = [(seed, {**hp, **DQN}) for seed, hp in MEMBERS]
    pop = Population([member("dqn", seed, hp) for seed, hp in members])
    sick = pop.members[0]
    real = sick.buffer.add

    def poisoned(obs: Any, actions: Any, rewards: np.ndarray, *rest: Any) -> None:
        real(obs, actions, rewards * np.float32("nan"), *rest)  # only its loss turns NaN

    sick.buffer.add = poisoned
    pop.fit(2)
    assert list(pop.errors) == [0] and isinstance(pop.errors[0], NonFiniteError)
    for want, got in zip(solo_states("dqn", members[1:], 2), pop.members[1:], strict=True):
        assert_same_state(want, got.state_dict())
    # every member out of one lockstep: recorded, the epoch ends, nothing crashes
    pop = Population([member("dqn", seed, hp) for seed, hp in members[:2]])
    for m in pop.members:
        m.buffer.draw = lambda *args: 1 / 0
    pop.fit(1)
    assert sorted(pop.errors) == [0, 1] and [m.epoch for m in pop.members] == [0, 0]


def test_members_that_cannot_share_a_lockstep_are_refused_in_one_line():
    ppo = member("ppo", 0, {})
    with pytest.raises(ValueError, match=r"differ in hidden \(64 and 32\).*group trials by it"):
        Population([ppo, member("ppo", 1, {"hidden": 32})])
    with pytest.raises(ValueError, match="differ in steps_per_epoch"):
        Population([ppo, member("ppo", 1, {}, steps=512)])
    elsewhere = member("ppo", 1, {})
    elsewhere.device = torch.device("meta")  # no second device on a CPU machine
    with pytest.raises(ValueError, match="run on one device; got cpu and meta"):
        Population([ppo, elsewhere])
    with pytest.raises(ValueError, match="one task; got 'ppo' and 'a2c'"):
        Population([ppo, member("a2c", 1, {})])
    with pytest.raises(ValueError, match="'sac' cannot join a population; ppo, a2c, pg and dqn"):
        Population([rltasks.make_task("sac", env="Pendulum-v1").init()])
    with pytest.raises(ValueError, match=r"differ in batch_size \(64 and 32\)"):
        Population([member("dqn", 0, {}), member("dqn", 1, {"batch_size": 32})])
    with pytest.raises(ValueError, match="vector observations; rltasks/Catch-v0 has images"):
        Population([rltasks.make_task("ppo", env="rltasks/Catch-v0").init()])
    assert {"hidden", "layers", "n_steps", "batch_size", "update_epochs"} <= set(
        lockstep_keys(ppo))
    assert not {"lr", "gamma", "clip_range", "ent_coef"} & set(lockstep_keys(ppo))
    dqn = set(lockstep_keys(member("dqn", 0, {})))
    assert {"hidden", "layers", "batch_size", "buffer_size", "replay", "exploration"} <= dqn
    assert not {"lr", "gamma", "train_freq", "learning_starts", "target_update", "tau",
                "double", "eps_min"} & dqn


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
    assert sick.epoch == 0 and "gradient norm became nan in epoch 1" in str(pop.errors[1])
    with pytest.raises(BadResume):
        sick.fit(3)
    healthy = [MEMBERS[0], MEMBERS[2]]
    for want, got in zip(solo_states("ppo", healthy, 3), [pop.members[0], pop.members[2]],
                         strict=True):
        assert_same_state(want, got.state_dict())


def test_a_member_whose_env_fails_mid_rollout_breaks_alone():
    pop = Population([member("ppo", seed, hp) for seed, hp in MEMBERS])
    broken, calls = pop.members[2].loader, []
    real_step = broken.step

    def failing_step(actions: Any) -> Any:
        calls.append(1)
        if len(calls) == 40:  # epoch 2 (32 steps of 8 envs an epoch)
            raise RuntimeError("the simulator crashed")
        return real_step(actions)
    broken.step = failing_step
    pop.fit(3)
    assert list(pop.errors) == [2] and "simulator crashed" in str(pop.errors[2])
    assert pop.members[2].epoch == 1
    for want, got in zip(solo_states("ppo", MEMBERS[:2], 3), pop.members[:2], strict=True):
        assert_same_state(want, got.state_dict())
    # every member out of one lockstep: the population records them, it does not crash
    pop = Population([member("ppo", seed, hp) for seed, hp in MEMBERS[:2]])
    for m in pop.members:
        m.loss = lambda *args: 1 / 0
    pop.fit(1)
    assert sorted(pop.errors) == [0, 1]
    assert all(isinstance(e, ZeroDivisionError) for e in pop.errors.values())


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


@pytest.mark.parametrize("algo, extra", [("ppo", {}), ("dqn", DQN)])
def test_a_population_resumes_from_its_members_checkpoints(tmp_path, algo, extra):
    """Members saved at different epochs (a population killed while its members wrote their
    checkpoints): the laggards catch up alone, then the lockstep goes on; every member ends
    as its uninterrupted solo run (DQN's replay buffers and target networks included)."""
    members = [(seed, {**hp, **extra}) for seed, hp in MEMBERS]
    first = Population([member(algo, seed, hp) for seed, hp in members])
    first.fit(1)
    checkpoint.save(tmp_path / "m1.ckpt", first.members[1].state_dict())
    first.fit(2)
    resumed = []
    for k, (seed, hp) in enumerate(members):
        path = tmp_path / f"m{k}.ckpt"
        if k != 1:
            checkpoint.save(path, first.members[k].state_dict())
        task = member(algo, seed, hp)
        task.load_state_dict(checkpoint.load(path))
        resumed.append(task)
    assert [m.epoch for m in resumed] == [2, 1, 2]
    Population(resumed).fit(3)
    for want, got in zip(solo_states(algo, members, 3), resumed, strict=True):
        assert_same_state(want, got.state_dict())


def test_aligned_stack_keeps_each_members_layout_and_alignment():
    f_ordered = torch.arange(6.0).reshape(3, 2).T  # [2, 3] with strides (1, 2)
    stacked = nets.aligned_stack([f_ordered, f_ordered + 10, f_ordered + 20])
    assert torch.equal(stacked, torch.stack([f_ordered, f_ordered + 10, f_ordered + 20]))
    for k in range(3):
        assert stacked[k].stride() == f_ordered.stride()
        assert stacked[k].data_ptr() % nets.ALIGN == 0
    # the batched product is used where it gives the solo bits, member by member elsewhere:
    # both give the solo layer's output
    layers = [torch.nn.Linear(3, 5) for _ in range(2)]
    w = nets.aligned_stack([lin.weight.detach() for lin in layers])
    b = nets.aligned_stack([lin.bias.detach()[None] for lin in layers])
    x = nets.aligned_stack([f_ordered, f_ordered * 2])  # two members' F-ordered batches
    for fn in (nets.StackedLinear.apply, nets.member_linear, nets.stacked_linear):
        out = fn(x, w, b)
        assert torch.allclose(out[1], layers[1](f_ordered * 2))
    assert torch.equal(nets.member_linear(x, w, b)[1], layers[1](f_ordered * 2))


SEEDS_ARGS = ("--env", "CartPole-v1", "--epochs", "2", "--steps-per-epoch", "256",
              "--num-envs", "4", "--n-steps", "16", "--batch-size", "64", "--update-epochs", "2",
              "--eval-episodes", "2")


def seed_run(workdir: Any) -> tuple[dict, dict]:
    """A seed's results (without its working dir) and its last checkpoint's state."""
    results = json.loads((workdir / "results.json").read_text())
    results.pop("workdir")
    return results, checkpoint.load(workdir / "last.ckpt")["state"]


def test_seeds_train_as_one_population_and_each_seed_ends_as_its_solo_run(tmp_path):
    done = run_script("ppo", *SEEDS_ARGS, "--seeds", "2", "--seed", "3",
                      workdir=tmp_path / "pop")
    assert done.returncode == 0, done.stderr[-2000:]
    mean = json.loads((tmp_path / "pop" / "results.json").read_text())
    assert mean["seeds"] == [3, 4] and mean["seeds_trained"] == "as one population"
    # each member's progress line says whose it is (plain lines, even on a terminal)
    assert "[ppo seed 3] epoch 2/2" in done.stderr and "[ppo seed 4] epoch 2/2" in done.stderr
    procs = run_script("ppo", *SEEDS_ARGS, "--seeds", "2", "--seed", "3",
                       "--seed-processes", "true", workdir=tmp_path / "procs")
    assert procs.returncode == 0, procs.stderr[-2000:]
    by_procs = json.loads((tmp_path / "procs" / "results.json").read_text())
    assert by_procs["seeds_trained"] == "in 2 processes"
    assert by_procs["objective"] == mean["objective"]
    for seed in (3, 4):
        solo = run_script("ppo", *SEEDS_ARGS, "--seed", seed, workdir=tmp_path / f"solo{seed}")
        assert solo.returncode == 0, solo.stderr[-2000:]
        want_results, want_state = seed_run(tmp_path / f"solo{seed}")
        for mode in ("pop", "procs"):
            results, state = seed_run(tmp_path / mode / f"seed-{seed}")
            assert results == want_results
            assert_same_state(want_state, state)
    # a member's working dir is a solo trial's: a solo run resumes it, as it resumes its own
    for workdir in (tmp_path / "pop" / "seed-4", tmp_path / "solo4"):
        more = run_script("ppo", *SEEDS_ARGS, "--seed", 4, "--epochs", 3, workdir=workdir)
        assert more.returncode == 0, more.stderr[-2000:]
    resumed, alone = seed_run(tmp_path / "pop" / "seed-4"), seed_run(tmp_path / "solo4")
    assert resumed[0]["resumed_from"] == alone[0]["resumed_from"] == 2
    assert_same_state(alone[1], resumed[1])


def test_seeds_of_an_image_env_train_as_processes(tmp_path):
    done = run_script("ppo", "--env", "rltasks/Catch-v0", "--epochs", "1", "--steps-per-epoch",
                      "64", "--num-envs", "2", "--n-steps", "32", "--eval-episodes", "1",
                      "--seeds", "2", workdir=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "has images: train its trials alone; one process per seed instead" in done.stderr
    assert json.loads((tmp_path / "results.json").read_text())["seeds_trained"] == \
        "in 2 processes"


def test_an_image_env_leaves_the_population_path_after_preparing_one_seed(tmp_path,
                                                                         monkeypatch):
    """The env is checked on the first seed: an Atari ``--seeds 8`` builds one seed's envs,
    not eight, before falling back to processes."""
    from rltasks.trial import together
    from rltasks.trial.options import resolve

    prepared, real = [], together.prepare
    monkeypatch.setattr(together, "prepare", lambda *a, **k: prepared.append(1) or real(*a, **k))
    options, hparams = resolve("ppo", ["--env", "rltasks/Catch-v0", "--num-envs", "2",
                                       "--seeds", "3", "--workdir", str(tmp_path)])
    messages = []
    assert together.run_together("ppo", options, hparams, messages.append) is None
    assert prepared == [1] and "one process per seed instead" in messages[-1]


def test_sigterm_stops_a_population_at_an_epoch_end_and_it_resumes(tmp_path):
    args = ("--seeds", "2", *SEEDS_ARGS[:2], "--steps-per-epoch", "256")
    code, err = sigterm_seeds("ppo", args, tmp_path)
    assert code == 130, err[-3000:]
    assert err.count("SIGTERM received: finishing the current epoch") == 1  # one process
    assert "interrupted: SIGTERM received: seeds [0, 1] stopped at an epoch end" in err
    stopped = [checkpoint.load(tmp_path / f"seed-{s}" / "last.ckpt")["state"]["epoch"]
               for s in (0, 1)]
    assert stopped[0] == stopped[1]  # in lockstep
    again = run_script("ppo", *args, "--epochs", str(stopped[0] + 1), workdir=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [s["resumed_from"] for s in results["per_seed"]] == stopped
    assert results["epoch"] == stopped[0] + 1


class _SignalAt:
    """Observer: sends this process SIGTERM at the end of epoch ``epoch`` (after the
    member's own pre-emption check: between two members' ends of that epoch)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, task: Any, metrics: dict[str, Any]) -> None:
        if task.epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("held", [True, False])
def test_a_signal_between_members_epoch_ends_stops_them_at_one_epoch(tmp_path, held):
    """The race behind a flaky lockstep stop: SIGTERM lands after member 0 checked for it and
    before member 1 did. Held (as ``train_population`` holds it), both stop at the next
    epoch end; unheld, member 1 stops an epoch before member 0."""
    from rltasks.checkpoint import Checkpointer
    from rltasks.trial.preempt import Preempted, StopAtEpochEnd, StopSignals

    with StopSignals(log=lambda _: None) as signals:
        tasks = [member("ppo", seed, hp, observers=(
            StopAtEpochEnd(signals, Checkpointer(tmp_path / str(seed)), 100, 5),
            *([_SignalAt(1)] if seed == 0 else []))) for seed, hp in MEMBERS[:2]]
        pop = Population(tasks)
        pop.fit(5, **({"epoch_end": signals.held} if held else {}))
    assert all(isinstance(pop.errors.get(k), Preempted) for k in (0, 1)), pop.errors
    stopped = [t.epoch for t in tasks]
    assert stopped == ([2, 2] if held else [2, 1])
    assert [checkpoint.load(tmp_path / str(s) / "last.ckpt")["state"]["epoch"]
            for s in (0, 1)] == stopped
    for t in tasks:
        t.close()


def test_a_populations_members_say_their_envs_note_once(tmp_path):
    """LunarLander's envs cannot be saved: each member's run resets them every epoch, and
    the population says so once, not once per seed."""
    from rltasks.trial import together
    from rltasks.trial.options import resolve

    options, hparams = resolve("ppo", ["--env", "LunarLander-v3", "--num-envs", "2",
                                       "--n-steps", "16", "--batch-size", "32",
                                       "--steps-per-epoch", "32", "--epochs", "1",
                                       "--eval-episodes", "1", "--seeds", "3",
                                       "--workdir", str(tmp_path)])
    messages: list[str] = []
    results = together.run_together("ppo", options, hparams, messages.append)
    assert results is not None and results["seeds_trained"] == "as one population"
    notes = [m for m in messages if m.startswith("env state: every epoch resets the envs")]
    assert notes == ["env state: every epoch resets the envs: the state of LunarLander-v3's "
                     "envs cannot be saved (LunarLander keeps state rltasks cannot capture: "
                     "it captures gymnasium's classic control and MuJoCo envs)"]
