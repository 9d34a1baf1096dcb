"""DDPG/TD3/SAC through the public API, the action-noise processes' statistics, and the
off-policy loop's memory over an epoch."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
from helpers import assert_resumes_exactly, assert_same_state

import rltasks
from rltasks import checkpoint
from rltasks.explore import NOISE_HPARAMS, NOISES, make_noise
from rltasks.tasks.ddpg import DDPG
from rltasks.tasks.td3 import TD3

FAST = dict(buffer_size=4000, learning_starts=100, batch_size=32, hidden=32)


def task(name, **kwargs):
    return rltasks.make_task(name, env="Pendulum-v1", seed=2, steps_per_epoch=256, **kwargs)


def test_a_discrete_env_is_refused_naming_the_tasks_that_fit():
    with pytest.raises(ValueError) as info:
        rltasks.make_task("td3", env="CartPole-v1")
    assert "td3 needs Box actions but CartPole-v1 has Discrete(2)" in str(info.value)
    assert "tasks that fit it: a2c, dqn, pg, ppo" in str(info.value)


@pytest.mark.parametrize("name", ["ddpg", "td3", "sac"])
@pytest.mark.parametrize("noise", sorted(NOISES))
def test_trains_and_resumes_exactly_with_every_noise(name, noise, tmp_path):
    hp = dict(FAST, noise=noise)
    straight = assert_resumes_exactly(lambda: task(name).init(**hp), tmp_path)
    row = straight.history[-1]
    assert row["gradient_steps"] == 256 and row["buffer"] == 512
    assert math.isfinite(row["critic_loss"])
    actions = straight.act(torch.randn(16, 3).numpy() * 3)
    assert actions.shape == (16, 1) and (abs(actions) <= 2.0).all()


def test_td3_delays_the_actor_and_sac_tunes_its_temperature():
    td3 = task("td3").init(**FAST, policy_delay=3)
    td3.fit(1)
    assert td3.updates == 157 and "actor_loss" not in td3.history[-1]
    sac = task("sac").init(**FAST)
    sac.fit(1)
    assert sac.history[-1]["ent_coef"] < 1.0  # the temperature moved from its initial 1.0
    assert set(sac.state_dict()["optimizers"]) == {"actor", "critic", "alpha"}


def _step_draws(task):
    """Run one ``train_step``; return what it drew: the torch generator's state change and
    whether the numpy generator moved past the batch it sampled."""
    before = task.gen.get_state()
    rng = copy.deepcopy(task.np_rng)
    task.buffer.sample(task.hp["batch_size"], rng)  # the batch: all a step samples from numpy
    losses = task.train_step()
    return before, rng.bit_generator.state == task.np_rng.bit_generator.state, losses


def test_ddpg_is_td3_with_one_critic_no_smoothing_noise_and_no_delay():
    assert issubclass(DDPG, TD3)
    specs = DDPG.hparam_specs()
    assert not {"policy_delay", "target_noise", "target_noise_clip"} & set(specs)
    assert {"policy_delay", "target_noise", "target_noise_clip"} <= set(TD3.hparam_specs())
    ddpg = task("ddpg").init(**FAST)
    ddpg.fit(1)
    assert ddpg.critic(torch.zeros(2, 3), torch.zeros(2, 1)).shape == (1, 2)
    assert {"critic_loss", "actor_loss"} <= set(ddpg.history[-1])
    updates, actor_target = ddpg.updates, copy.deepcopy(ddpg.actor_target.state_dict())
    before, batch_only, losses = _step_draws(ddpg)
    assert torch.equal(ddpg.gen.get_state(), before)  # no target smoothing noise drawn
    assert batch_only and set(losses) == {"critic_loss", "actor_loss"}
    assert ddpg.updates == updates + 1  # the actor and its target move at every step
    assert not torch.equal(ddpg.actor_target.state_dict()["0.weight"], actor_target["0.weight"])
    td3 = task("td3").init(**FAST)
    td3.fit(1)
    before, batch_only, _ = _step_draws(td3)
    smoothing = torch.Generator()
    smoothing.set_state(before)
    torch.randn((FAST["batch_size"], 1), generator=smoothing)  # the smoothing noise alone
    assert batch_only and torch.equal(td3.gen.get_state(), smoothing.get_state())


def test_sac_has_no_target_actor_and_loads_a_checkpoint_that_has_one():
    sac = task("sac").init(**FAST)
    sac.fit(1)
    assert set(sac.modules) == {"actor", "critic", "critic_target", "log_alpha"}
    assert not hasattr(sac, "actor_target")
    state = checkpoint.decode(checkpoint.encode(sac.state_dict()))
    state["modules"]["actor_target"] = copy.deepcopy(state["modules"]["actor"])  # as 0.1.0
    old = task("sac").init(**FAST)
    old.load_state_dict(state)
    old.fit(2)
    sac.fit(2)
    assert_same_state(old.state_dict(), sac.state_dict())


def noise(name, **hp):
    values = {k: spec.default for k, spec in NOISE_HPARAMS.items()} | {"noise": name} | hp
    return make_noise(values, num_envs=4000, act_dim=2)


def test_gaussian_noise_mean_variance_and_annealing():
    gen = torch.Generator().manual_seed(0)
    n = noise("gaussian", noise_mu=0.1, noise_sigma=0.5, noise_sigma_min=0.1,
              noise_annealing=1000)
    x = n.sample(0, gen)
    assert x.mean().item() == pytest.approx(0.1, abs=0.02)
    assert x.std().item() == pytest.approx(0.5, rel=0.03)
    assert n.sigma(500) == pytest.approx(0.3) and n.sigma(5000) == pytest.approx(0.1)
    assert n.sample(2000, gen).std().item() == pytest.approx(0.1, rel=0.03)
    assert noise("none").sample(0, gen).abs().max() == 0


def test_ornstein_uhlenbeck_reverts_to_its_mean_with_the_right_variance():
    gen = torch.Generator().manual_seed(1)
    theta, sigma, dt, mu = 0.5, 0.3, 0.1, 0.2
    n = noise("ornstein_uhlenbeck", ou_theta=theta, noise_sigma=sigma, noise_sigma_min=sigma,
              ou_dt=dt, noise_mu=mu)
    n.x.fill_(2.0)  # far from the mean: it decays as exp(-theta t)
    for _ in range(20):
        x = n.sample(0, gen)
    expected = mu + (2.0 - mu) * (1 - theta * dt) ** 20
    assert x.mean().item() == pytest.approx(expected, abs=0.02)
    for _ in range(400):  # stationary: variance sigma^2 dt / (1 - (1 - theta dt)^2)
        x = n.sample(0, gen)
    var = sigma**2 * dt / (1 - (1 - theta * dt) ** 2)
    assert x.mean().item() == pytest.approx(mu, abs=0.02)
    assert x.var().item() == pytest.approx(var, rel=0.05)
    steps = [n.sample(0, gen).clone() for _ in range(2)]
    corr = torch.corrcoef(torch.stack([steps[0].flatten(), steps[1].flatten()]))[0, 1]
    assert corr.item() == pytest.approx(1 - theta * dt, abs=0.03)  # correlated in time
    mask = torch.zeros(4000, dtype=torch.bool)
    mask[:10] = True
    n.reset(mask)
    assert (n.x[:10] == mu).all() and not (n.x[10:] == mu).all()
    saved = n.state_dict()
    other = noise("ornstein_uhlenbeck")
    other.load_state_dict(saved)
    assert torch.equal(other.x, n.x)


def test_step_losses_means_are_those_of_the_stacked_rows_and_it_grows():
    from rltasks.tasks.offpolicy import StepLosses

    gen = torch.Generator().manual_seed(0)
    rows = [{"a": torch.rand((), generator=gen), "b": torch.rand((), generator=gen) * 100}
            for _ in range(2500)]  # past the first capacity (1024) twice
    losses = StepLosses(("a", "b"))
    losses.extend(rows)
    assert len(losses) == 2500
    means = losses.means()
    for key in ("a", "b"):  # the bits of the list it replaced
        assert means[key] == float(torch.stack([r[key] for r in rows]).mean())
    assert StepLosses(("a",)).means() == {"a": 0.0}


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_an_epoch_of_gradient_steps_does_not_grow_the_process():
    """Each gradient step's losses used to stay alive as 0-dim tensors until the epoch's end,
    pinning glibc's heap between the steps' large transient allocations: over an epoch of
    400 steps at batch 1024 the process grew by 175-273 MB (measured; 130 KB a step at batch
    256, 5 GB for a 5-member population's 100k-step epoch). Now it grows by about 1 MB."""

    def resident_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    t = rltasks.make_task("dqn", env="CartPole-v1", seed=0, steps_per_epoch=400).init(
        batch_size=1024, hidden=256, layers=2, learning_starts=0, train_freq=1,
        gradient_steps=1, buffer_size=5000)
    t.fit(1)  # the allocator's caches warm
    before = resident_mb()
    t.fit(2)
    assert t.history[-1]["gradient_steps"] == 400
    assert resident_mb() - before < 20
    t.close()
