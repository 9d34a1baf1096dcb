"""What each algorithm switch changes, checked by hand on tiny batches and hand-set weights.

``test_dqn.py`` and ``test_offpolicy.py`` check that every switch trains; here each one is
held to its formula: double DQN's target, dueling heads, the squared and Huber losses, PPO's
value clipping and clip-range schedule, TD3's target policy smoothing and prioritized
replay's annealed importance weights. Whole updates are pinned too (DQN by hand, DDPG and
A2C against references written as CleanRL and SB3 write them): which networks change, and
by how much. Tasks are built through ``rltasks.make_task`` at tiny sizes; their update
(``train_step``, ``update``) runs on a batch made here, and what it returns and leaves in
the networks is compared with the numbers computed here.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from helpers import assert_resumes_exactly

import rltasks
from rltasks.nets import QNetwork

TINY = dict(hidden=4, layers=1, buffer_size=64, batch_size=2, learning_starts=0)


# ------------------------------------------------------------------------------------- DQN

def dqn(**hp):
    return rltasks.make_task("dqn", env="CartPole-v1", seed=0, steps_per_epoch=8).init(
        **{**TINY, "optimizer": "sgd", "lr": 1e-6, "double": False, **hp})


def set_linear_q(net, weights, bias=(0.0, 0.0)):
    """Make a 1-hidden-layer (width 4) non-dueling Q-network linear on non-negative inputs:
    the hidden layer is the identity (ReLU keeps x >= 0), the output ``weights @ x + bias``."""
    first, last = net.net[0], net.net[2]
    with torch.no_grad():
        first.weight.copy_(torch.eye(4))
        first.bias.zero_()
        last.weight.copy_(torch.tensor(weights, dtype=torch.float32))
        last.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def dqn_batch(obs, actions, returns, discounts, next_obs, weights=None):
    n = len(obs)
    return {"obs": torch.tensor(obs, dtype=torch.float32),
            "actions": torch.tensor(actions, dtype=torch.int64),
            "returns": torch.tensor(returns, dtype=torch.float32),
            "discounts": torch.tensor(discounts, dtype=torch.float32),
            "next_obs": torch.tensor(next_obs, dtype=torch.float32),
            "weights": torch.ones(n) if weights is None else torch.tensor(weights),
            "indices": torch.arange(n)}


def fixed_sample(task, batch):
    """Make the task's buffer hand out ``batch``; returns the list of betas it was asked for."""
    betas = []

    def sample(batch_size, rng, beta=1.0):
        betas.append(beta)
        return batch

    task.buffer.sample = sample
    return betas


# online Q(s') = [1, 2] (argmax 1); target Q(s') = [3, 0.5]; Q(s, a=0) = 0 for s = e1
ONLINE = [[0.0, 1.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]]
TARGET = [[0.0, 3.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0]]
ONE = dqn_batch(obs=[[1.0, 0, 0, 0]], actions=[0], returns=[1.0], discounts=[0.5],
                next_obs=[[0, 1.0, 0, 0]])


@pytest.mark.parametrize("double, next_value", [(False, 3.0), (True, 0.5)])
def test_double_dqn_evaluates_the_online_argmax_with_the_target_net(double, next_value):
    """Vanilla: r + d max_a Q'(s', a) = 1 + 0.5 * 3 = 2.5. Double: the online net picks
    a* = 1 and the target net values it, 1 + 0.5 * Q'(s', 1) = 1.25. The loss (MSE, Q(s,
    0) = 0) is the squared target."""
    task = dqn(double=double, loss="mse")
    set_linear_q(task.q, ONLINE)
    set_linear_q(task.target, TARGET)
    fixed_sample(task, ONE)
    target = 1.0 + 0.5 * next_value
    assert task.train_step()["loss"].item() == pytest.approx(target ** 2, rel=1e-6)


def test_double_dqn_equals_vanilla_when_both_nets_agree_on_the_argmax():
    losses = []
    for double in (False, True):
        task = dqn(double=double, loss="mse")
        set_linear_q(task.q, TARGET)  # same argmax as the target net
        set_linear_q(task.target, TARGET)
        fixed_sample(task, ONE)
        losses.append(task.train_step()["loss"].item())
    assert losses[0] == losses[1] == pytest.approx(2.5 ** 2)


def test_one_dqn_update_by_hand_changes_only_the_taken_actions_head():
    """The whole step on one transition (s = e1, a = 0, r = 1, discount 0.5, s' = e2), SGD
    with lr 0.1 and no momentum. Target 1 + 0.5 * max Q'(s') = 2.5; Q(s, 0) = 0, so the TD
    error is -2.5 and the Huber loss |x| - 1/2 = 2; its gradient in Q(s, 0) is -1. The head
    of action 0 moves by +0.1 * h = +0.1 e1 (and its bias by +0.1); action 1's head, the
    hidden layer (the only active unit, 0, reaches Q(s, 0) with weight 0) and the target
    network stay as they were. The gradient norm (sqrt 2) is under max_grad_norm: no clip."""
    task = dqn(lr=0.1, momentum=0.0, loss="huber", target_update=10**6)
    set_linear_q(task.q, ONLINE)
    set_linear_q(task.target, TARGET)
    fixed_sample(task, ONE)
    before = {k: v.clone() for k, v in task.q.state_dict().items()}
    target_before = {k: v.clone() for k, v in task.target.state_dict().items()}
    assert task.train_step()["loss"].item() == pytest.approx(2.0)
    after = task.q.state_dict()
    expected_head = torch.tensor(ONLINE)
    expected_head[0, 0] += 0.1
    torch.testing.assert_close(after["net.2.weight"], expected_head)
    torch.testing.assert_close(after["net.2.bias"], torch.tensor([0.1, 0.0]))
    for key in ("net.0.weight", "net.0.bias"):
        torch.testing.assert_close(after[key], before[key])
    for key, value in task.target.state_dict().items():
        torch.testing.assert_close(value, target_before[key])


@pytest.mark.parametrize("loss, expected", [
    # TD errors 3 and 0.5: squared 9 and 0.25; Huber (delta 1) |x| - 0.5 = 2.5 and x**2/2
    ("mse", (9.0 + 0.25) / 2), ("huber", (2.5 + 0.125) / 2)])
def test_squared_and_huber_losses_by_hand(loss, expected):
    task = dqn(loss=loss)
    set_linear_q(task.q, [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    set_linear_q(task.target, [[0.0] * 4, [0.0] * 4])
    # Q(s, 0) = s_0; the targets are the returns (target net 0): errors 4 - 1 and 2.5 - 2
    batch = dqn_batch(obs=[[1.0, 0, 0, 0], [2.0, 0, 0, 0]], actions=[0, 0],
                      returns=[4.0, 2.5], discounts=[0.9, 0.9], next_obs=[[0, 1.0, 0, 0]] * 2)
    fixed_sample(task, batch)
    assert task.train_step()["loss"].item() == pytest.approx(expected, rel=1e-6)


def test_dueling_builds_value_plus_advantage_minus_its_mean():
    task = dqn(dueling=True, hidden=3)  # one hidden layer: the body is that layer
    q = task.q
    assert q.dueling and isinstance(q.value, torch.nn.Linear)
    assert q.value.out_features == 1 and q.advantage.out_features == 2
    # the body stops one layer short (4 -> 3), then the two heads on its activated output
    assert [m.out_features for m in q.net if isinstance(m, torch.nn.Linear)] == [3]
    with torch.no_grad():
        q.net[0].weight.copy_(torch.eye(3, 4))
        q.net[0].bias.zero_()
        q.value.weight.copy_(torch.tensor([[1.0, 1.0, 1.0]]))
        q.value.bias.fill_(0.5)
        q.advantage.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 4.0]]))
        q.advantage.bias.copy_(torch.tensor([1.0, -1.0]))
    s = torch.tensor([[1.0, 2.0, 3.0, 7.0]])  # body: relu(s[:3]) = [1, 2, 3]
    v, adv = 0.5 + 6.0, torch.tensor([2.0 + 1.0, 12.0 - 1.0])
    expected = v + adv - adv.mean()  # [6.5 - 4, 6.5 + 4]
    torch.testing.assert_close(q(s), expected.unsqueeze(0))
    # a constant added to every advantage changes nothing: only V + A - mean(A) is seen
    with torch.no_grad():
        q.advantage.bias.add_(100.0)
    torch.testing.assert_close(q(s), expected.unsqueeze(0))
    plain = dqn(dueling=False).q
    assert not plain.dueling and not hasattr(plain, "advantage")
    assert isinstance(QNetwork(4, [3], 2, dueling=True).advantage, torch.nn.Linear)


# -------------------------------------------------------------------- prioritized replay

def test_per_beta_anneals_from_per_beta_to_one_over_per_beta_steps():
    task = dqn(replay="prioritized", per_beta=0.4, per_beta_steps=100)
    betas = fixed_sample(task, ONE)
    for steps in (0, 25, 50, 100, 1000):
        task.env_steps = steps
        task.train_step()
    assert betas == pytest.approx([0.4, 0.55, 0.7, 1.0, 1.0])


def test_per_importance_weights_use_the_annealed_beta_and_scale_the_loss():
    """Priorities 1, 4 (alpha 1): P = 0.2, 0.8; weights (P / min P)**-beta = 1, 4**-beta.
    The loss is the mean of weight * per-sample loss."""
    task = dqn(replay="prioritized", per_alpha=1.0, per_beta=0.2, per_beta_steps=100,
               loss="mse", batch_size=64)
    set_linear_q(task.q, [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    set_linear_q(task.target, [[0.0] * 4, [0.0] * 4])
    buf = task.buffer
    obs = np.array([[1.0, 0, 0, 0], [2.0, 0, 0, 0]], np.float32)
    buf._store(obs, np.zeros(2, np.int64), np.array([4.0, 2.5], np.float32),
               np.zeros(2, np.float32), obs)
    buf.tree.set(np.arange(2), np.array([1.0, 4.0]))
    real = buf.sample
    seen = []

    def sample(batch_size, rng, beta=1.0):
        seen.append((beta, batch := real(batch_size, rng, beta)))
        return batch

    buf.sample = sample
    task.env_steps = 50  # beta = 0.2 + 0.8 * 0.5 = 0.6
    loss = task.train_step()["loss"].item()
    beta, batch = seen[0]
    assert beta == pytest.approx(0.6)
    idx = batch["indices"].numpy()
    assert set(idx) == {0, 1}
    weights = np.where(idx == 0, 1.0, 4.0 ** -0.6)
    np.testing.assert_allclose(batch["weights"].numpy(), weights, rtol=1e-6)
    per_sample = np.where(idx == 0, 9.0, 0.25)  # TD errors 3 and 0.5 (discount 0)
    assert loss == pytest.approx(float(np.mean(weights * per_sample)), rel=1e-5)


# ------------------------------------------------------------------------------------- PPO

def ppo(**hp):
    task = rltasks.make_task("ppo", env="CartPole-v1", seed=0, num_envs=1, steps_per_epoch=4,
                             horizon=hp.pop("horizon", None))
    return task.init(**{"hidden": 4, "layers": 1, "n_steps": 4, "batch_size": 4,
                        "update_epochs": 1, "norm_adv": False, "optimizer": "sgd", "lr": 1e-6,
                        **hp})


def constant_output(net, values):
    """Make an MLP output ``values`` whatever its input (zero last-layer weights)."""
    with torch.no_grad():
        net[-1].weight.zero_()
        net[-1].bias.copy_(torch.tensor(values, dtype=torch.float32))


def ppo_batch(values, returns, logp=None, adv=None):
    n = len(values)
    return {"obs": torch.zeros(n, 4), "actions": torch.zeros(n, dtype=torch.int64),
            "logp": torch.tensor(logp if logp is not None else [math.log(0.5)] * n),
            "values": torch.tensor(values), "returns": torch.tensor(returns),
            "adv": torch.tensor(adv if adv is not None else [0.0] * n)}


# the critic says V = 1 everywhere; old values and returns chosen so the clip matters
OLD, RETURNS = [0.0, 0.0, 0.9, 1.0], [3.0, -1.0, 2.0, 1.0]


def clipped_value_loss(v, old, ret, eps):
    total = 0.0
    for o, r in zip(old, ret, strict=True):
        clipped = o + max(-eps, min(eps, v - o))
        total += max((v - r) ** 2, (clipped - r) ** 2)
    return total / len(old)


@pytest.mark.parametrize("vf_clip, expected", [
    # V - old = 1, 1, 0.1, 0; with eps 0.2 the clipped values are 0.2, 0.2, 1, 1:
    # max((1-3)^2, (0.2-3)^2) = 7.84, max(4, 1.44) = 4, max(1, 1) = 1, 0 -> 12.84 / 4
    # (SB3's scale: the mean squared error, no 0.5)
    (0.2, (7.84 + 4.0 + 1.0 + 0.0) / 4),
    (0.0, (4.0 + 4.0 + 1.0 + 0.0) / 4),  # 0 disables: the plain squared error
])
def test_vf_clip_clips_the_value_loss_as_ppo_says(vf_clip, expected):
    task = ppo(vf_clip=vf_clip)
    constant_output(task.critic, [1.0])
    constant_output(task.actor, [0.0, 0.0])
    out = task.update(ppo_batch(OLD, RETURNS))
    assert out["value_loss"] == pytest.approx(expected, rel=1e-6)
    if vf_clip:
        assert expected == pytest.approx(clipped_value_loss(1.0, OLD, RETURNS, vf_clip))


@pytest.mark.parametrize("schedule, at_half, at_end", [
    ("constant", 0.2, 0.2), ("linear", 0.1, 0.0), ("cosine", 0.1, 0.0),
    ("exponential", 0.2 * 0.1, 0.2 * 0.01)])
def test_clip_schedule_values_along_the_horizon(schedule, at_half, at_end):
    task = ppo(clip_range=0.2, clip_schedule=schedule, horizon=4)
    steps = task.steps_per_epoch * 4
    got = []
    for done in (0, steps // 2, steps, 2 * steps):
        task.env_steps = done
        got.append(task.scheduled("clip_range", "clip_schedule"))
    assert got == pytest.approx([0.2, at_half, at_end, at_end])


@pytest.mark.parametrize("schedule, clip", [("constant", 0.2), ("linear", 0.1)])
def test_the_update_clips_the_ratio_with_the_scheduled_clip_range(schedule, clip):
    """Halfway through the horizon, ratio 1.5 and advantage 1: the surrogate is
    max(-1.5, -(1 + clip)) = -(1 + clip), and the clipped fraction is 1."""
    task = ppo(clip_range=0.2, clip_schedule=schedule, horizon=2)
    task.env_steps = task.steps_per_epoch  # progress 0.5
    constant_output(task.critic, [0.0])
    constant_output(task.actor, [0.0, 0.0])  # pi(a) = 0.5; old logp makes the ratio 1.5
    b = ppo_batch([0.0] * 4, [0.0] * 4, logp=[math.log(0.5 / 1.5)] * 4, adv=[1.0] * 4)
    out = task.update(b)
    assert out["clip_range"] == pytest.approx(clip)
    assert out["policy_loss"] == pytest.approx(-(1 + clip), rel=1e-5)
    assert out["clip_frac"] == 1.0


# ------------------------------------------------------------------------------------- TD3

N = 16  # TD3's batch
MU = 0.6  # the target actor's action, tanh(atanh(0.6))


def td3(**hp):
    return rltasks.make_task("td3", env="Pendulum-v1", seed=0, steps_per_epoch=8).init(
        **{**TINY, "batch_size": N, "policy_delay": 100, **hp})


def capture_target_actions(task):
    """Record the actions the target critics are asked about (the smoothed target action)."""
    seen = []
    task.critic_target.register_forward_hook(lambda mod, args, out: seen.append(args[1]))
    return seen


def td3_batch():
    return {"obs": torch.zeros(N, 3), "actions": torch.zeros(N, 1),
            "returns": torch.zeros(N), "discounts": torch.ones(N),
            "next_obs": torch.zeros(N, 3), "weights": torch.ones(N), "indices": torch.arange(N)}


@pytest.mark.parametrize("sigma, clip", [(0.7, 0.3), (0.05, 0.5), (2.0, 0.5)])
def test_td3_smoothed_target_action_is_clipped_noise_around_the_target_actor(sigma, clip):
    """a' = clip(mu'(s') + clip(sigma * eps, -c, c), -1, 1), eps the task generator's draw."""
    task = td3(target_noise=sigma, target_noise_clip=clip)
    constant_output(task.actor_target, [math.atanh(MU)])
    seen = capture_target_actions(task)
    fixed_sample(task, td3_batch())
    gen = torch.Generator().set_state(task.gen.get_state())
    noise = torch.randn((N, 1), generator=gen) * sigma  # the draw train_step makes
    task.train_step()
    expected = (MU + noise.clamp(-clip, clip)).clamp(-1.0, 1.0)
    torch.testing.assert_close(seen[0], expected)
    assert not torch.allclose(seen[0], torch.full((N, 1), MU))  # the noise did something
    if sigma > clip:  # the noise clip mattered, on both sides, and so did the action bounds
        assert (noise > clip).any() and (noise < -clip).any()
        assert torch.allclose(seen[0].min(), torch.tensor(MU - clip))
    if min(sigma, clip) > 1 - MU:  # noise can pass the upper bound: the action is cut there
        assert seen[0].max() == 1.0


def test_td3_without_target_noise_uses_the_target_actor_as_it_is():
    task = td3(target_noise=0.0)
    constant_output(task.actor_target, [math.atanh(MU)])
    seen = capture_target_actions(task)
    fixed_sample(task, td3_batch())
    task.train_step()
    torch.testing.assert_close(seen[0], torch.full((N, 1), MU))


def test_ddpg_has_no_target_smoothing():
    task = rltasks.make_task("ddpg", env="Pendulum-v1", seed=0, steps_per_epoch=8).init(
        **{**TINY, "batch_size": N})
    constant_output(task.actor_target, [math.atanh(MU)])
    seen = capture_target_actions(task)
    fixed_sample(task, td3_batch())
    task.train_step()
    torch.testing.assert_close(seen[0], torch.full((N, 1), MU))


def sgd_reference(module, loss_of, lr, max_norm=None):
    """One plain SGD step (p -= lr * grad) on a copy of ``module``, its gradients clipped to
    a global norm of ``max_norm`` when given; the copy, frozen."""
    ref = copy.deepcopy(module).requires_grad_(True)
    params = list(ref.parameters())
    grads = torch.autograd.grad(loss_of(ref), params)
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads)).item()
    scale = 1.0 if max_norm is None else min(1.0, max_norm / (norm + 1e-6))
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p -= lr * scale * g
    return ref.requires_grad_(False)


def pendulum_batch(seed: int) -> dict[str, torch.Tensor]:
    """A random batch of 4 Pendulum transitions (one terminal), drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(4, 3, generator=gen), "actions": torch.rand(4, 1, generator=gen),
            "returns": torch.randn(4, generator=gen), "discounts": torch.tensor([0.9, 0, .9, .9]),
            "next_obs": torch.randn(4, 3, generator=gen), "weights": torch.ones(4),
            "indices": torch.arange(4)}


@pytest.mark.parametrize("name", ["ddpg", "td3"])
def test_one_ddpg_or_td3_update_against_a_cleanrl_style_reference(name):
    """DDPG's (and TD3's, with policy_delay 1 and no target smoothing) whole step on a random
    batch of 4, as CleanRL's ddpg/td3_continuous_action.py write it: y = r + d min_i Q'_i(s',
    tanh(mu'(s'))); every critic takes an SGD step on sum_i mean (Q_i(s, a) - y)^2; the actor
    then takes one on -mean Q_1(s, tanh(mu(s))) through the *updated* first critic; every
    target moves by tau towards its network. Each network must end as the reference's."""
    lr, tau = 0.05, 0.3
    extra = {"policy_delay": 1, "target_noise": 0.0} if name == "td3" else {}
    task = rltasks.make_task(name, env="Pendulum-v1", seed=0, steps_per_epoch=8).init(
        **{**TINY, "batch_size": 4, "optimizer": "sgd", "momentum": 0.0, "lr": lr, "tau": tau,
           **extra})
    batch = pendulum_batch(seed=1)
    fixed_sample(task, batch)
    with torch.no_grad():
        y = batch["returns"] + batch["discounts"] * task.critic_target(
            batch["next_obs"], torch.tanh(task.actor_target(batch["next_obs"]))).min(0).values
    critic = sgd_reference(task.critic, lambda c: ((c(batch["obs"], batch["actions"]) - y)
                                                   ** 2).mean(1).sum(), lr)
    actor = sgd_reference(task.actor, lambda a: -critic(batch["obs"], torch.tanh(
        a(batch["obs"])))[0].mean(), lr)
    targets = {net: {k: (1 - tau) * v + tau * new for (k, v), new in zip(
        getattr(task, f"{net}_target").state_dict().items(), ref.state_dict().values(),
        strict=True)} for net, ref in (("actor", actor), ("critic", critic))}
    with torch.no_grad():  # the actor's loss: the old actor through the updated critic
        critic_loss = ((task.critic(batch["obs"], batch["actions"]) - y) ** 2).mean(1).sum()
        actor_loss = -critic(batch["obs"], torch.tanh(task.actor(batch["obs"])))[0].mean()
    out = task.train_step()
    assert out["critic_loss"].item() == pytest.approx(critic_loss.item(), rel=1e-5)
    assert out["actor_loss"].item() == pytest.approx(actor_loss.item(), rel=1e-5)
    for net, ref in (("actor", actor), ("critic", critic)):
        for key, value in getattr(task, net).state_dict().items():
            torch.testing.assert_close(value, ref.state_dict()[key], msg=f"{net} {key}")
        for key, value in getattr(task, f"{net}_target").state_dict().items():
            torch.testing.assert_close(value, targets[net][key], msg=f"{net}_target {key}")


def test_td3_delays_the_actor_and_the_targets_by_policy_delay():
    """With policy_delay 2 the first step changes the critics only; the second moves the
    actor and every target too."""
    task = td3(policy_delay=2)
    gen = torch.Generator().manual_seed(0)
    fixed_sample(task, td3_batch() | {"obs": torch.randn(N, 3, generator=gen),
                                      "returns": torch.randn(N, generator=gen)})
    nets = ("actor", "critic", "actor_target", "critic_target")
    states = [{n: copy.deepcopy(getattr(task, n).state_dict()) for n in nets}]
    for _ in range(2):
        out = task.train_step()
        states.append({n: copy.deepcopy(getattr(task, n).state_dict()) for n in nets})

    def moved(net, i):
        return any(not torch.equal(v, states[i + 1][net][k]) for k, v in states[i][net].items())
    assert [moved(n, 0) for n in nets] == [False, True, False, False]
    assert [moved(n, 1) for n in nets] == [True, True, True, True]
    assert "actor_loss" in out


@pytest.mark.parametrize("name, norm_adv", [("a2c", False), ("pg", True)])
def test_one_a2c_or_reinforce_update_against_a_reference_with_the_norm_clip_engaged(
        name, norm_adv):
    """A2C's step on a rollout of 5 (CartPole, 2 actions), as SB3's A2C.train writes it
    (REINFORCE's is the same step, its advantages normalised over the rollout):
    loss = -mean(A log pi(a|s)) - ent_coef * mean H(pi(s)) + vf_coef * mean (R - V(s))^2, the
    gradients of actor and critic together clipped to a global norm of max_grad_norm (here
    small enough to bite), one SGD step. Actor and critic must end as the reference's."""
    lr, max_norm, ent_coef, vf_coef = 0.1, 0.05, 0.01, 0.5
    task = rltasks.make_task(name, env="CartPole-v1", seed=0, num_envs=1).init(
        hidden=8, layers=1, optimizer="sgd", momentum=0.0, lr=lr, max_grad_norm=max_norm,
        ent_coef=ent_coef, vf_coef=vf_coef, norm_adv=norm_adv)
    gen = torch.Generator().manual_seed(2)
    b = {"obs": torch.randn(5, 4, generator=gen), "actions": torch.tensor([0, 1, 1, 0, 1]),
         "returns": torch.randn(5, generator=gen), "adv": torch.randn(5, generator=gen),
         "values": torch.zeros(5), "logp": torch.zeros(5)}
    actor, critic = copy.deepcopy(task.actor), copy.deepcopy(task.critic)
    logits = actor(b["obs"])
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(1, b["actions"][:, None]).squeeze(1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    adv = (b["adv"] - b["adv"].mean()) / (b["adv"].std() + 1e-8) if norm_adv else b["adv"]
    loss = (-(adv * logp).mean() - ent_coef * entropy.mean()
            + vf_coef * ((b["returns"] - critic(b["obs"]).squeeze(-1)) ** 2).mean())
    params = [*actor.parameters(), *critic.parameters()]
    grads = torch.autograd.grad(loss, params)
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    assert norm > max_norm  # the clip matters
    scale = max_norm / (norm + 1e-6)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p -= lr * scale * g
    out = task.update(b)
    assert out["loss"] == pytest.approx(loss.item(), rel=1e-5)
    for mine, ref in ((task.actor, actor), (task.critic, critic)):
        for (key, value), expected in zip(mine.state_dict().items(), ref.state_dict().values(),
                                          strict=True):
            torch.testing.assert_close(value, expected, msg=key)


def test_one_ppo_minibatch_update_against_an_sb3_style_reference():
    """PPO's step on one minibatch of 6 (CartPole), as SB3's ppo.py writes it (CleanRL's with
    SB3's value loss): advantages normalised over the minibatch; policy loss mean max(-A r,
    -A clip(r, 1 -+ eps)) with old log-probabilities that put some ratios outside the clip;
    value loss mean max((V - R)^2, (V_old + clip(V - V_old, -+ vf_clip) - R)^2), without
    CleanRL's 0.5, so that rl-zoo3's vf_coef values weigh the critic as they did when tuned;
    minus the entropy bonus; global-norm clip; one SGD step. Actor and critic must end as the
    reference's, and the loss match."""
    lr, eps, vf_clip, ent_coef, vf_coef, max_norm = 0.1, 0.2, 0.3, 0.01, 0.5, 0.5
    task = rltasks.make_task("ppo", env="CartPole-v1", seed=0, num_envs=1, steps_per_epoch=6)
    task.init(hidden=8, layers=1, n_steps=6, batch_size=6, update_epochs=1, norm_adv=True,
              optimizer="sgd", momentum=0.0, lr=lr, clip_range=eps, vf_clip=vf_clip,
              ent_coef=ent_coef, vf_coef=vf_coef, max_grad_norm=max_norm)
    gen = torch.Generator().manual_seed(3)
    b = {"obs": torch.randn(6, 4, generator=gen), "actions": torch.tensor([0, 1, 1, 0, 1, 0]),
         "returns": torch.randn(6, generator=gen), "adv": torch.randn(6, generator=gen),
         "values": torch.randn(6, generator=gen) * 0.5,
         "logp": torch.log(torch.tensor([0.3, 0.7, 0.5, 0.45, 0.9, 0.2]))}
    actor, critic = copy.deepcopy(task.actor), copy.deepcopy(task.critic)
    logp_all = torch.log_softmax(actor(b["obs"]), -1)
    logp = logp_all.gather(1, b["actions"][:, None]).squeeze(1)
    ratio = (logp - b["logp"]).exp()
    assert ((ratio - 1).abs() > eps).any() and ((ratio - 1).abs() < eps).any()
    adv = (b["adv"] - b["adv"].mean()) / (b["adv"].std() + 1e-8)
    pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - eps, 1 + eps)).mean()
    v = critic(b["obs"]).squeeze(-1)
    v_clipped = b["values"] + (v - b["values"]).clamp(-vf_clip, vf_clip)
    v_loss = torch.max((v - b["returns"]) ** 2, (v_clipped - b["returns"]) ** 2).mean()
    entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
    loss = pg - ent_coef * entropy + vf_coef * v_loss
    params = [*actor.parameters(), *critic.parameters()]
    grads = torch.autograd.grad(loss, params)
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    scale = min(1.0, max_norm / (norm.item() + 1e-6))
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p -= lr * scale * g
    out = task.update(b)
    assert out["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert out["value_loss"] == pytest.approx(v_loss.item(), rel=1e-5)
    for mine, ref in ((task.actor, actor), (task.critic, critic)):
        for (key, value), expected in zip(mine.state_dict().items(), ref.state_dict().values(),
                                          strict=True):
            torch.testing.assert_close(value, expected, msg=key)


def tanh_gaussian(actor, obs, noise):
    """CleanRL's sac_continuous_action.py get_action, with the draws given: the squashed
    action and its log-probability (torch.distributions' Normal, then log(1 - tanh^2))."""
    mean, log_std = actor(obs).chunk(2, -1)
    std = log_std.clamp(-20.0, 2.0).exp()
    pre = mean + std * noise
    logp = torch.distributions.Normal(mean, std).log_prob(pre) - torch.log(
        1 - torch.tanh(pre) ** 2 + 1e-12)
    return torch.tanh(pre), logp.sum(-1)


def sac_references(task, b, alpha, lr, draw_next, draw):
    """SAC's critics and actor after one reference step on batch ``b``: the soft target
    y = r + d (min_i Q'_i(s', a') - alpha log pi(a'|s')) with (a', log pi) =
    ``draw_next(actor, s')``; an SGD step of the critics on 0.5 sum_i mean (Q_i - y)^2; one
    of the actor on mean(alpha log pi(a|s) - min_i Q_i(s, a)), a from ``draw(actor, s)``,
    through the updated critics."""
    with torch.no_grad():
        next_a, next_logp = draw_next(task.actor, b["next_obs"])
        y = b["returns"] + b["discounts"] * (
            task.critic_target(b["next_obs"], next_a).min(0).values - alpha * next_logp)
    critic = sgd_reference(task.critic, lambda c: 0.5 * ((c(b["obs"], b["actions"]) - y)
                                                         ** 2).mean(1).sum(), lr)

    def actor_loss(a):
        action, logp = draw(a, b["obs"])
        return (alpha * logp - critic(b["obs"], action).min(0).values).mean()
    return critic, sgd_reference(task.actor, actor_loss, lr)


def test_one_sac_update_against_a_cleanrl_style_reference():
    """SAC's whole step on a random batch of 4 with the task's own noise draws: soft target
    y = r + d (min_i Q'_i(s', a') - alpha log pi(a'|s')), a' ~ pi(s'); the critics take an SGD
    step on 0.5 sum_i mean (Q_i - y)^2; the actor one on mean(alpha log pi(a|s) - min_i Q_i(s,
    a)) through the updated critics; log alpha one on -mean(log alpha (log pi + target
    entropy)); then the target critics move by tau. Every network must end as the
    reference's."""
    lr, tau = 0.05, 0.3
    task = rltasks.make_task("sac", env="Pendulum-v1", seed=0, steps_per_epoch=8).init(
        **{**TINY, "batch_size": 4, "optimizer": "sgd", "momentum": 0.0, "lr": lr, "tau": tau,
           "ent_coef_init": 0.5})
    b = pendulum_batch(seed=4)
    fixed_sample(task, b)
    draws = torch.Generator().set_state(task.gen.get_state())
    next_noise, noise = torch.randn(4, 1, generator=draws), torch.randn(4, 1, generator=draws)
    alpha = 0.5
    critic, actor = sac_references(task, b, alpha, lr,
                                   lambda a, obs: tanh_gaussian(a, obs, next_noise),
                                   lambda a, obs: tanh_gaussian(a, obs, noise))
    with torch.no_grad():
        logp = tanh_gaussian(task.actor, b["obs"], noise)[1]  # the actor before its step
    # d/d log_alpha of -log_alpha * mean(logp + target entropy), target entropy -1
    log_alpha = math.log(alpha) + lr * (logp - 1.0).mean().item()
    target = {k: (1 - tau) * v + tau * new for (k, v), new in zip(
        task.critic_target.state_dict().items(), critic.state_dict().values(), strict=True)}
    task.train_step()
    for net, ref in (("actor", actor.state_dict()), ("critic", critic.state_dict()),
                     ("critic_target", target)):
        for key, value in getattr(task, net).state_dict().items():
            torch.testing.assert_close(value, ref[key], rtol=1e-4, atol=1e-5, msg=f"{net} {key}")
    assert task.log_alpha.item() == pytest.approx(log_alpha, rel=1e-5)


def sde_tanh_gaussian(actor, obs, eps):
    """SB3's squashed ``StateDependentNoiseDistribution``, the draw given: features z (the
    noise sees them detached), the mean clipped to [-2, 2], weights W = exp(log_std) * eps,
    a = tanh(mean + z W), log pi = Normal(mean, sqrt(z^2 exp(log_std)^2 + 1e-6)) minus
    log(1 - tanh^2)."""
    z = actor.body(obs)
    mean = actor.mean(z).clamp(-2.0, 2.0)
    z, std = z.detach(), actor.log_std.exp()
    pre = mean + z @ (std * eps)
    dist = torch.distributions.Normal(mean, torch.sqrt(z ** 2 @ std ** 2 + 1e-6))
    logp = dist.log_prob(pre) - torch.log(1 - torch.tanh(pre) ** 2 + 1e-12)
    return torch.tanh(pre), logp.sum(-1)


def test_one_sac_gsde_update_at_a_fixed_temperature_against_an_sb3_style_reference():
    """SAC with gSDE and ``auto_ent_coef=False``, SB3's ``use_sde=True, ent_coef=0.5``: one
    weight draw W per gradient step serves the target's a' and the actor's a; the critics
    step as in plain SAC; the actor's step moves the mean's layers and gSDE's log_std (through
    the noise and the variance); the temperature does not move."""
    lr, tau, alpha = 0.05, 0.3, 0.5
    task = rltasks.make_task("sac", env="Pendulum-v1", seed=0, steps_per_epoch=8).init(
        **{**TINY, "batch_size": 4, "optimizer": "sgd", "momentum": 0.0, "lr": lr, "tau": tau,
           "ent_coef_init": alpha, "auto_ent_coef": False, "use_sde": True,
           "log_std_init": -1.0})
    b = pendulum_batch(seed=5)
    fixed_sample(task, b)
    eps = torch.randn(4, 1, generator=torch.Generator().set_state(task.gen.get_state()))
    def draw(a, obs):  # one W serves a' and a
        return sde_tanh_gaussian(a, obs, eps)
    critic, actor = sac_references(task, b, alpha, lr, draw, draw)
    log_std_before = task.actor.log_std.detach().clone()
    task.train_step()
    for key, value in task.actor.state_dict().items():
        torch.testing.assert_close(value, actor.state_dict()[key], rtol=1e-4, atol=1e-5,
                                   msg=f"actor {key}")
    for key, value in task.critic.state_dict().items():
        torch.testing.assert_close(value, critic.state_dict()[key], rtol=1e-4, atol=1e-5)
    assert not torch.equal(task.actor.log_std, log_std_before)
    assert task.log_alpha.exp().item() == pytest.approx(alpha, rel=1e-7)


def sde_task(**hp):
    return rltasks.make_task("sac", env="Pendulum-v1", seed=0, steps_per_epoch=2).init(
        **{**TINY, "use_sde": True, "log_std_init": 0.0, "train_freq": 1000, **hp})


@pytest.mark.parametrize(("hp", "every"), [({"sde_sample_freq": 4}, 4),
                                           ({"sde_sample_freq": -1, "train_freq": 6}, 6)])
def test_gsde_noise_is_smooth_in_the_state_and_redrawn_every_sde_sample_freq_steps(hp, every):
    """gSDE's exploration is ``mean + z(s) @ W``: between draws the same state gets the same
    action (plain SAC draws anew for every action) and two nearby states nearby noises; ``W``
    is redrawn at every ``sde_sample_freq`` env steps, or every ``train_freq`` with -1."""
    task = sde_task(**hp)
    obs = np.array([[0.6, 0.8, 0.1]], np.float32)
    first = task.explore(obs)[0]
    np.testing.assert_array_equal(task.explore(obs)[0], first)
    mean = task.policy(task.tensor(obs)).detach().numpy()
    assert np.abs(first - mean).min() > 1e-4  # there is noise
    near = task.explore(obs + np.float32(1e-3))[0]
    assert np.abs(near - first).max() < 1e-2
    plain = rltasks.make_task("sac", env="Pendulum-v1", seed=0).init(**TINY)
    assert not np.array_equal(plain.explore(obs)[0], plain.explore(obs)[0])
    weights = task.sde_weights.clone()
    steps = 0
    while steps + 2 < every:  # epochs of 2 env steps, no update (train_freq 1000 or 6)
        steps += 2
        task.fit(steps // 2)
        assert torch.equal(task.sde_weights, weights), f"redrawn after {steps} steps"
    task.fit(every // 2)
    assert not torch.equal(task.sde_weights, weights), f"not redrawn after {every} steps"


def test_sac_with_gsde_resumes_exactly_and_checkpoints_its_noise_weights(tmp_path):
    """The noise weights in use are part of the state: a run stopped between two draws
    resumes on the same weights and ends identical to one never stopped."""
    straight = assert_resumes_exactly(
        lambda: rltasks.make_task("sac", env="Pendulum-v1", seed=3, steps_per_epoch=24).init(
            **{**TINY, "use_sde": True, "sde_sample_freq": 16, "train_freq": 4,
               "auto_ent_coef": False}), tmp_path)
    assert "sde_weights" in straight.state_dict()["extra"]


@pytest.mark.parametrize(("name", "env", "extra"), [
    ("ddpg", "Pendulum-v1", {}), ("td3", "Pendulum-v1", {}),
    ("sac", "Pendulum-v1", {"use_sde": True}),  # gSDE's actor too
    ("dqn", "CartPole-v1", {"dueling": True}), ("dqn", "CartPole-v1", {}),
    ("maddpg", "mpe2/simple_spread_v3", {})])
def test_ortho_init_false_keeps_pytorchs_default_init(name, env, extra):
    """``ortho_init`` (default True): orthogonal weights (the first layer's rows or columns
    orthogonal with norm sqrt(2)) and zero biases in every MLP of the task; False: PyTorch's
    default nn.Linear init, SB3's and CleanRL's, weights and biases uniform in
    +-1/sqrt(fan_in), the biases not zero."""
    if name == "maddpg":
        pytest.importorskip("mpe2")
    for ortho in (True, False):
        task = rltasks.make_task(name, env=env, seed=0).init(hidden=8, ortho_init=ortho,
                                                             **extra)
        for key, net in task.modules.items():
            layers = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
            if not layers:
                continue
            first = layers[0].weight.detach()  # (out, in): orthogonal along the shorter side
            gram = first.T @ first if first.shape[0] >= first.shape[1] else first @ first.T
            eye = 2.0 * torch.eye(len(gram))
            if ortho:
                torch.testing.assert_close(gram, eye, msg=key)
                assert all(torch.count_nonzero(m.bias) == 0 for m in layers), key
            else:
                assert not torch.allclose(gram, eye, atol=0.1), key
                for m in layers:
                    limit = 1 / math.sqrt(m.weight.shape[1]) + 1e-7
                    assert m.weight.abs().max() <= limit and m.bias.abs().max() <= limit, key
                    assert torch.count_nonzero(m.bias) == len(m.bias), key
        task.close()


def test_one_maddpg_update_against_a_reference_of_the_paper():
    """MADDPG's step (Lowe et al. 2017, continuous actions) on a random batch of 3: for each
    agent i in turn, its centralised critic regresses on r_i + d Q'_i(all s', all mu'(s'))
    (one clipped SGD step), then its actor ascends Q_i(all s, a with a_i = tanh(mu_i(s_i)),
    the others' actions from the buffer) through that updated critic, with the 1e-3
    pre-activation penalty; then every target moves by tau. Every network must end as the
    reference's."""
    lr, tau, max_norm = 0.05, 0.3, 0.5
    task = rltasks.make_task("maddpg", env="mpe2/simple_spread_v3", seed=0,
                             steps_per_epoch=8).init(hidden=8, layers=1, batch_size=3,
                                                     buffer_size=64, optimizer="sgd",
                                                     momentum=0.0, lr=lr, tau=tau,
                                                     max_grad_norm=max_norm, learning_starts=0)
    n, obs_dim, act_dim = task.n_agents, task.agent_obs, task.act_dim
    gen = torch.Generator().manual_seed(5)
    b = {"obs": torch.randn(3, n, obs_dim, generator=gen),
         "actions": torch.rand(3, n, act_dim, generator=gen) * 2 - 1,
         "returns": torch.randn(3, n, generator=gen), "discounts": torch.tensor([0.9, 0.0, 0.9]),
         "next_obs": torch.randn(3, n, obs_dim, generator=gen), "weights": torch.ones(3),
         "indices": torch.arange(3)}
    fixed_sample(task, b)
    flat = b["obs"].reshape(3, -1)
    with torch.no_grad():
        next_a = torch.stack([torch.tanh(task.actors_target[i](b["next_obs"][:, i]))
                              for i in range(n)], 1)
        next_in = torch.cat([b["next_obs"].reshape(3, -1), next_a.reshape(3, -1)], -1)
    critics, actors = [], []
    for i in range(n):
        with torch.no_grad():
            y = b["returns"][:, i] + b["discounts"] * task.critics_target[i](next_in).squeeze(-1)
        critic = sgd_reference(task.critics[i], lambda c, y=y: ((c(torch.cat(
            [flat, b["actions"].reshape(3, -1)], -1)).squeeze(-1) - y) ** 2).mean(), lr, max_norm)

        def actor_loss(a, i=i, critic=critic):
            out = a(b["obs"][:, i])
            mine = b["actions"].clone()
            mine[:, i] = torch.tanh(out)
            return -critic(torch.cat([flat, mine.reshape(3, -1)], -1)).mean() + 1e-3 * (
                out ** 2).mean()
        actors.append(sgd_reference(task.actors[i], actor_loss, lr, max_norm))
        critics.append(critic)
    targets = {}
    for name, refs in (("actors", actors), ("critics", critics)):
        old = getattr(task, f"{name}_target")
        targets[name] = [{k: (1 - tau) * v + tau * ref.state_dict()[k]
                          for k, v in old[i].state_dict().items()} for i, ref in enumerate(refs)]
    task.train_step()
    for name, refs in (("actors", actors), ("critics", critics)):
        for i, ref in enumerate(refs):
            for key, value in getattr(task, name)[i].state_dict().items():
                torch.testing.assert_close(value, ref.state_dict()[key], msg=f"{name}[{i}] {key}")
            for key, value in getattr(task, f"{name}_target")[i].state_dict().items():
                torch.testing.assert_close(value, targets[name][i][key],
                                           msg=f"{name}_target[{i}] {key}")


# ------------------------------------------------------------------- Gaussian policies

@pytest.mark.parametrize("name", ["ppo", "a2c", "pg"])
def test_log_std_init_is_the_std_in_the_envs_action_units(name):
    """As SB3's and rl-zoo3's: Pendulum's torque is in [-2, 2], so log_std_init=0 draws
    torques of std 1, which is 0.5 in the [-1, 1] units the Gaussian works in."""
    task = rltasks.make_task(name, env="Pendulum-v1", num_envs=2, seed=0).init(log_std_init=0.3)
    try:
        np.testing.assert_allclose(task.log_std.detach().numpy(), [0.3 - math.log(2.0)],
                                   rtol=1e-6)
        obs = torch.zeros((20_000, 3))
        with torch.no_grad():
            mean = task.actor(obs)
            actions, _, _ = task.sample(obs)
        torque = (actions - mean).numpy() * task.act_scale  # before the clip to the bounds
        assert torque.std() == pytest.approx(math.exp(0.3), rel=0.02)
    finally:
        task.close()
