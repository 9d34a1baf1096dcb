"""Optimizer and schedule blocks.

torch.optim appears here as the reference the optimizers of rltasks.optim must match, and as
their fallback on a torch without the private kernels of their fast path.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from helpers import assert_same_state

from rltasks import checkpoint, optim
from rltasks.hparams import HP
from rltasks.optim import (
    OPTIM_HPARAMS,
    OPTIMIZERS,
    SCHEDULES,
    kernels,
    make_optimizer,
    scheduled,
    set_lr,
)
from rltasks.optim.optimizers import SHARED_HPARAMS, BlockOptimizer

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {"adam": optim.Adam, "adamw": optim.AdamW, "adamax": optim.Adamax,
            "sgd": optim.SGD, "rmsprop": optim.RMSprop}

#: name -> the torch.optim optimizer ours must match, built from the same hparams
TORCH = {
    "adam": lambda p, hp: torch.optim.Adam(p, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]),
                                           eps=hp["adam_eps"], weight_decay=hp["weight_decay"]),
    "adamw": lambda p, hp: torch.optim.AdamW(p, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]),
                                             eps=hp["adam_eps"], weight_decay=hp["weight_decay"]),
    "adamax": lambda p, hp: torch.optim.Adamax(p, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]),
                                               eps=hp["adam_eps"],
                                               weight_decay=hp["weight_decay"]),
    "sgd": lambda p, hp: torch.optim.SGD(p, lr=hp["lr"], momentum=hp["momentum"],
                                         weight_decay=hp["weight_decay"]),
    "rmsprop": lambda p, hp: torch.optim.RMSprop(p, lr=hp["lr"], alpha=0.99, eps=1e-5,
                                                 momentum=hp["momentum"],
                                                 weight_decay=hp["weight_decay"]),
}

SETTINGS = [(name, wd, momentum) for name in sorted(EXPECTED) for wd in (0.0, 0.05)
            for momentum in ((0.0, 0.9) if name in ("sgd", "rmsprop") else (0.9,))]


def hparams(name, **overrides):
    return ({k: spec.default for k, spec in OPTIM_HPARAMS.items()} | optim.OPTIM_CONSTANTS
            | {"optimizer": name, "lr": 1e-2} | overrides)


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def train(opt, params, steps, gen, first=0):
    """``steps`` steps on random gradients from ``gen``; the first bias gets none every 5th
    step, from step 0 on, so its state starts late (a parameter outside the loss)."""
    for k in range(first, first + steps):
        for i, p in enumerate(params):
            grad = torch.randn(p.shape, generator=gen)
            p.grad = None if i == 1 and k % 5 == 0 else grad
        opt.step()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_optimizer_builds_and_steps(name):
    assert set(OPTIMIZERS) == set(EXPECTED)
    param = torch.nn.Parameter(torch.ones(3))
    hp = {k: spec.default for k, spec in OPTIM_HPARAMS.items()} | {"optimizer": name, "lr": 0.1}
    opt = make_optimizer([param], hp)
    assert type(opt) is EXPECTED[name] and isinstance(opt, optim.Optimizer)
    assert opt.param_groups[0]["lr"] == 0.1
    (param**2).sum().backward()
    opt.step()
    assert (param < 1).all()
    set_lr(opt, 0.01)
    assert opt.param_groups[0]["lr"] == 0.01
    if name in ("sgd", "rmsprop"):
        assert opt.param_groups[0]["momentum"] == hp["momentum"]


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        make_optimizer([torch.nn.Parameter(torch.ones(1))], {"optimizer": "lbfgs"})


@pytest.mark.parametrize("name, weight_decay, momentum", SETTINGS)
def test_matches_torch_optim(name, weight_decay, momentum):
    hp = hparams(name, weight_decay=weight_decay, momentum=momentum)
    ours_net, torch_net = mlp(), mlp()
    ours = make_optimizer(ours_net.parameters(), hp)
    reference = TORCH[name](torch_net.parameters(), hp)
    train(ours, list(ours_net.parameters()), 20, torch.Generator().manual_seed(1))
    train(reference, list(torch_net.parameters()), 20, torch.Generator().manual_seed(1))
    for a, b in zip(ours_net.parameters(), torch_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # torch's state_dict layout: the same parameter indices and state names, our settings a
    # subset of torch's with the same values
    mine, theirs = ours.state_dict(), reference.state_dict()
    assert list(mine["state"]) == sorted(theirs["state"]) == (
        [0, 1, 2, 3] if name != "sgd" or momentum else [])
    for index, state in mine["state"].items():
        assert state.keys() == theirs["state"][index].keys()
        for key, value in state.items():
            torch.testing.assert_close(value, theirs["state"][index][key], atol=1e-6, rtol=0)
    if name != "sgd":  # the bias without a gradient at 4 of the 20 steps took 16
        assert [float(mine["state"][i]["step"]) for i in range(4)] == [20, 16, 20, 20]
    (group,) = mine["param_groups"]
    assert group["params"] == [0, 1, 2, 3] and list(group)[-1] == "params"
    assert {k: v for k, v in theirs["param_groups"][0].items() if k in group} == group


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_state_dict_round_trip_resumes_bit_identically(name):
    hp = hparams(name, weight_decay=0.01, momentum=0.9)
    straight_net, resumed_net = mlp(), mlp()
    straight = make_optimizer(straight_net.parameters(), hp)
    first = make_optimizer(resumed_net.parameters(), hp)
    gen_a, gen_b = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    train(straight, list(straight_net.parameters()), 10, gen_a)
    train(first, list(resumed_net.parameters()), 10, gen_b)
    saved = checkpoint.decode(checkpoint.encode(first.state_dict()))
    resumed = make_optimizer(resumed_net.parameters(), hparams(name, lr=0.5, momentum=0.9))
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0] == first.param_groups[0]  # settings restored, betas a tuple
    assert_same_state(resumed.state_dict(), first.state_dict())
    train(straight, list(straight_net.parameters()), 10, gen_a, first=10)
    train(resumed, list(resumed_net.parameters()), 10, gen_b, first=10)
    for a, b in zip(straight_net.parameters(), resumed_net.parameters(), strict=True):
        assert torch.equal(a, b)
    assert checkpoint.encode(straight.state_dict()) == checkpoint.encode(resumed.state_dict())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loads_a_torch_optim_state_dict(name):
    """Checkpoints written while rltasks used torch.optim resume with the same state."""
    hp = hparams(name, weight_decay=0.01, momentum=0.9)
    ours_net, torch_net = mlp(), mlp()
    reference = TORCH[name](torch_net.parameters(), hp)
    gen = torch.Generator().manual_seed(3)
    train(reference, list(torch_net.parameters()), 10, gen)
    ours_net.load_state_dict(torch_net.state_dict())
    ours = make_optimizer(ours_net.parameters(), hp)
    ours.load_state_dict(checkpoint.decode(checkpoint.encode(reference.state_dict())))
    gen_ours = torch.Generator()
    gen_ours.set_state(gen.get_state())
    train(reference, list(torch_net.parameters()), 10, gen, first=10)
    train(ours, list(ours_net.parameters()), 10, gen_ours, first=10)
    for a, b in zip(ours_net.parameters(), torch_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_load_state_dict_refuses_another_shape():
    hp = hparams("adam")
    opt = make_optimizer(mlp().parameters(), hp)
    train(opt, list(opt.param_groups[0]["params"]), 1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"\[4\] parameters per group; this optimizer has \[1\]"):
        make_optimizer([torch.nn.Parameter(torch.ones(2))], hp).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="holds \\['exp_avg', 'exp_avg_sq', 'step'\\]; SGD needs"):
        make_optimizer(mlp().parameters(), hparams("sgd")).load_state_dict(opt.state_dict())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_set_lr_changes_the_step(name):
    deltas = {}
    for lr in (0.0, 0.01, 0.02):
        param = torch.nn.Parameter(torch.linspace(-1, 1, 5))
        opt = make_optimizer([param], hparams(name, lr=0.3, weight_decay=0.0))
        set_lr(opt, lr)
        assert opt.param_groups[0]["lr"] == lr
        param.grad = torch.linspace(-2, 3, 5)
        opt.step()
        deltas[lr] = param.detach() - torch.linspace(-1, 1, 5)
    assert torch.equal(deltas[0.0], torch.zeros(5))
    torch.testing.assert_close(deltas[0.02], 2 * deltas[0.01])
    assert (deltas[0.01] != 0).all()


def test_zero_grad():
    param = torch.nn.Parameter(torch.ones(3))
    opt = make_optimizer([param], hparams("sgd"))
    (param**2).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert torch.equal(param.grad, torch.zeros(3))
    opt.zero_grad()
    assert param.grad is None
    opt.step()  # no gradient: nothing moves, no state
    assert torch.equal(param.detach(), torch.ones(3)) and opt.state_dict()["state"] == {}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_training_never_imports_dynamo(name):
    """torch.optim imports torch._dynamo (~1 s of every trial's start-up); ours must not,
    and nor may the rest of a PPO epoch (clip_grad_norm_ included)."""
    code = ("import rltasks; t = rltasks.make_task('ppo', env='CartPole-v1', num_envs=2, "
            f"steps_per_epoch=128, optimizer={name!r}); t.init(update_epochs=1); t.fit(1); "
            "import sys; print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False"], out.stderr


def test_schedules():
    assert set(SCHEDULES) == {"constant", "linear", "cosine", "exponential"}
    assert scheduled(1e-3, "constant", 0.7) == 1e-3
    assert scheduled(1e-3, "linear", 0.0) == 1e-3
    assert scheduled(1e-3, "linear", 0.25) == pytest.approx(7.5e-4)
    assert scheduled(1e-3, "linear", 1.5) == 0.0
    assert scheduled(2.0, "cosine", 0.5) == pytest.approx(1.0)
    assert scheduled(2.0, "cosine", 1.0) == pytest.approx(0.0)
    assert scheduled(1.0, "exponential", 1.0) == pytest.approx(0.01)
    assert scheduled(1.0, "exponential", 0.5) == pytest.approx(0.1)
    values = [scheduled(1.0, name, p / 10) for name in SCHEDULES for p in range(11)]
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in values)


def test_linear_lr_schedule_follows_env_steps_in_a_task():
    import rltasks

    task = rltasks.make_task("ppo", env="CartPole-v1", num_envs=2, steps_per_epoch=256,
                             horizon=4).init(lr=1e-3, lr_schedule="linear", update_epochs=1)
    task.fit(2)
    # 4 rollouts of 64 steps per epoch; each update uses the lr at its step count, and the
    # epoch row reports their mean: linear decay to 0 over 4 epochs of 256 steps.
    expected = [sum(1e-3 * (1 - 64 * k / 1024) for k in range(e * 4 + 1, e * 4 + 5)) / 4
                for e in range(2)]
    assert [row["lr"] for row in task.history] == pytest.approx(expected)


@pytest.mark.parametrize(("name", "hp", "epoch_steps"), [
    ("ppo", {"n_steps": 64, "update_epochs": 1}, 128),  # whole rollouts of 64 x 2 envs
    ("dqn", {"learning_starts": 0, "train_freq": 4, "gradient_steps": 1}, 102),  # 51 x 2 envs
])
def test_the_horizon_is_made_of_the_epochs_a_task_really_runs(name, hp, epoch_steps):
    """An epoch of 101 asked steps is rounded up to whole units; the schedules' horizon is
    ``horizon`` such epochs (it was ``horizon * steps_per_epoch``: a PPO run whose rollouts
    outgrew its epochs annealed its lr to 0 early and trained on at lr 0)."""
    import rltasks

    task = rltasks.make_task(name, env="CartPole-v1", num_envs=2, steps_per_epoch=101,
                             horizon=4).init(lr=1e-3, lr_schedule="linear", **hp)
    assert task.epoch_steps() == epoch_steps
    task.fit(2)
    assert task.env_steps == 2 * epoch_steps and task.progress() == 0.5
    assert task.scheduled("lr", "lr_schedule") == pytest.approx(0.5e-3)
    task.close()


# -- the private kernels and the torch.optim fallback --------------------------------------


def force_fallback(monkeypatch):
    """From now on, a torch without any private kernel: kernels.py reports them all missing
    and calling one raises, so an optimizer built now must step through torch.optim."""
    monkeypatch.setattr(kernels, "MISSING", frozenset(kernels.NAMES))
    for name in kernels.NAMES:
        monkeypatch.setattr(kernels, name[1:], kernels.kernel(name, types.SimpleNamespace()))


def test_this_torch_has_every_kernel_and_the_optimizers_use_them():
    assert kernels.MISSING == kernels.missing(torch) == frozenset()
    assert kernels.missing(types.SimpleNamespace()) == set(kernels.NAMES)
    for name in kernels.NAMES:
        assert getattr(kernels, name[1:]) is getattr(torch, name)
    with pytest.raises(RuntimeError, match=r"has no torch\._fused_adam_"):
        kernels.kernel("_fused_adam_", types.SimpleNamespace())([])
    for name, cls in OPTIMIZERS.items():
        assert set(cls.KERNELS) <= set(kernels.NAMES) and cls.TORCH is not None
        assert make_optimizer(mlp().parameters(), hparams(name)).fallback is None


@pytest.mark.parametrize("name, weight_decay, momentum", SETTINGS)
def test_each_optimizer_lists_every_kernel_it_calls(name, weight_decay, momentum, monkeypatch):
    """Its KERNELS decide whether it falls back: a kernel it calls unlisted would fail on a
    torch that lacks it. Here every kernel it does not list fails."""
    listed = OPTIMIZERS[name].KERNELS
    for kernel in set(kernels.NAMES) - set(listed):
        monkeypatch.setattr(kernels, kernel[1:], kernels.kernel(kernel, types.SimpleNamespace()))
    net = mlp()
    opt = make_optimizer(net.parameters(), hparams(name, weight_decay=weight_decay,
                                                   momentum=momentum))
    train(opt, list(net.parameters()), 6, torch.Generator().manual_seed(1))
    assert opt.fallback is None


def assert_close_states(a, b):
    """Two optimizer state_dicts of the same layout (indices, names, dtypes, devices,
    settings) whose tensors agree to 1e-6."""
    assert a["param_groups"] == b["param_groups"] and list(a["state"]) == list(b["state"])
    for index, state in a["state"].items():
        assert list(state) == list(b["state"][index])
        for key, value in state.items():
            other = b["state"][index][key]
            assert (value.dtype, value.device, value.shape) == (other.dtype, other.device,
                                                                other.shape)
            torch.testing.assert_close(value, other, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name, weight_decay, momentum", SETTINGS)
def test_the_fallback_matches_the_fast_path(name, weight_decay, momentum, monkeypatch):
    """Over 20 steps (a parameter skipped at some), parameters and state agree to 1e-6 (the
    fused Adam kernel and torch's for-loop round differently; the others agree exactly)."""
    hp = hparams(name, weight_decay=weight_decay, momentum=momentum)
    fast_net, slow_net = mlp(), mlp()
    fast = make_optimizer(fast_net.parameters(), hp)
    train(fast, list(fast_net.parameters()), 20, torch.Generator().manual_seed(1))
    force_fallback(monkeypatch)
    slow = make_optimizer(slow_net.parameters(), hp)
    assert type(slow) is EXPECTED[name] and isinstance(slow.fallback.optimizer, type(slow).TORCH)
    train(slow, list(slow_net.parameters()), 20, torch.Generator().manual_seed(1))
    for a, b in zip(fast_net.parameters(), slow_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert_close_states(fast.state_dict(), slow.state_dict())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_fallback_trains(name, monkeypatch):
    """A regression fitted with the fallback alone (zero_grad both ways, set_lr, a schedule)."""
    force_fallback(monkeypatch)
    net = mlp()
    opt = make_optimizer(net.parameters(), hparams(name, momentum=0.9))
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(64, 3, generator=gen)
    y = torch.stack([x[:, 0] * x[:, 1], x[:, 2].sin()], 1)
    losses = []
    for k in range(300):
        opt.zero_grad(set_to_none=k % 2 == 0)
        set_lr(opt, scheduled(1e-2, "cosine", k / 300))
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::50]


def segment(opt, seed, first):
    """Ten steps of gradients seeded by ``seed``: both paths replay the same ones."""
    train(opt, opt.param_groups[0]["params"], 10, torch.Generator().manual_seed(seed), first)


def snapshot(net, opt):
    """Copies of the net's weights and of the optimizer's state_dict."""
    return {k: v.clone() for k, v in net.state_dict().items()}, opt.state_dict()


def resumed(name, weights, saved):
    """A new net and optimizer (other settings) resumed from ``snapshot``'s pair, the state
    through the checkpoint codec."""
    net = mlp()
    net.load_state_dict(weights)
    opt = make_optimizer(net.parameters(), hparams(name, lr=0.5))
    opt.load_state_dict(checkpoint.decode(checkpoint.encode(saved)))
    assert_same_state(opt.state_dict(), saved)
    return net, opt


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_state_dicts_load_across_the_two_paths(name, monkeypatch):
    """A checkpoint of the fast path resumes on the fallback and one of the fallback on the
    fast path: the resumed run follows the one that wrote it (to 1e-6)."""
    hp = hparams(name, weight_decay=0.01, momentum=0.9)
    fast_net = mlp()
    fast = make_optimizer(fast_net.parameters(), hp)
    segment(fast, 10, 0)
    weights, saved = snapshot(fast_net, fast)
    segment(fast, 11, 10)
    with monkeypatch.context() as patch:
        force_fallback(patch)
        slow_net, slow = resumed(name, weights, saved)
        assert slow.fallback is not None
        segment(slow, 11, 10)
        assert_close_states(slow.state_dict(), fast.state_dict())
        weights, saved = snapshot(slow_net, slow)
        segment(slow, 12, 20)
    fast_net, fast = resumed(name, weights, saved)
    assert fast.fallback is None
    segment(fast, 12, 20)
    for a, b in zip(fast_net.parameters(), slow_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert_close_states(fast.state_dict(), slow.state_dict())


# -- the registry and the tables derived from it -------------------------------------------


def test_the_tables_are_derived_from_the_registry():
    assert optim.derive(optim.REGISTRY) == {
        "OPTIMIZERS": OPTIMIZERS, "OPTIM_HPARAMS": OPTIM_HPARAMS,
        "OPTIMIZER_HPARAMS": optim.OPTIMIZER_HPARAMS,
        "NAMESPACED_OPTIM_HPARAMS": optim.NAMESPACED_OPTIM_HPARAMS,
        "OPTIM_CONSTANTS": optim.OPTIM_CONSTANTS}
    assert list(OPTIMIZERS.items()) == [(cls.name, cls) for cls in optim.REGISTRY]
    assert list(OPTIM_HPARAMS) == ["optimizer", "lr", "momentum", "beta1", "beta2",
                                   "weight_decay"]
    assert OPTIM_HPARAMS["optimizer"].default == "adam"
    assert optim.OPTIMIZER_HPARAMS == {
        "adam": ("beta1", "beta2", "weight_decay"), "adamw": ("beta1", "beta2", "weight_decay"),
        "adamax": ("beta1", "beta2", "weight_decay"), "sgd": ("momentum", "weight_decay"),
        "rmsprop": ("momentum", "weight_decay")}
    assert optim.OPTIM_CONSTANTS == {"adam_eps": 1e-5}
    space = optim.optimizer_space()
    assert list(space) == ["optimizer", "lr", *optim.NAMESPACED_OPTIM_HPARAMS]
    assert space["adamw.weight_decay"] == "loguniform(1e-4, 0.1)"
    for name, cls in OPTIMIZERS.items():
        for key, spec in cls.HPARAMS.items():  # a flat hyperparameter, perhaps its own prior
            assert dataclasses.replace(spec, prior=OPTIM_HPARAMS[key].prior) == OPTIM_HPARAMS[key]
            if f"{name}.{key}" != "adamw.weight_decay":
                assert space[f"{name}.{key}"] == OPTIM_HPARAMS[key].prior


class Lion(BlockOptimizer):
    """Lion (Chen et al. 2023) in public torch ops: an optimizer added in a test, with a
    hyperparameter it shares (``beta1``) and one of its own (``lion_beta2``)."""

    name = "lion"
    HPARAMS = {"beta1": SHARED_HPARAMS["beta1"],
               "lion_beta2": HP(0.99, "uniform(0.9, 0.999)", low=0.0, high=1.0,
                                high_open=True, help="momentum decay of lion")}

    def __init__(self, params, lr, betas):
        super().__init__(params, lr=lr, betas=tuple(betas))

    @classmethod
    def from_hparams(cls, params, hp):
        return cls(params, lr=hp["lr"], betas=(hp["beta1"], hp["lion_beta2"]))

    def init_state(self, param):
        return {"exp_avg": torch.zeros_like(param)}

    def fast_update(self, group, params, grads, states):
        beta1, beta2 = group["betas"]
        for param, grad, state in zip(params, grads, states, strict=True):
            param.add_(state["exp_avg"].lerp(grad, 1 - beta1).sign_(), alpha=-group["lr"])
            state["exp_avg"].lerp_(grad, 1 - beta2)


def test_a_registered_optimizer_joins_every_table(monkeypatch):
    """One class and one registry entry: the choices, the task hyperparameters, the finder's
    space, unused_hparams and make_optimizer follow, without another edit."""
    registry = (*optim.REGISTRY, Lion)
    monkeypatch.setattr(optim, "REGISTRY", registry)
    for table, value in optim.derive(registry).items():
        monkeypatch.setattr(optim, table, value)
    names = ["adam", "adamw", "adamax", "sgd", "rmsprop", "lion"]
    flat = optim.OPTIM_HPARAMS
    assert flat["optimizer"].choices == tuple(names) and flat["optimizer"].default == "adam"
    assert flat["optimizer"].prior == f"choices({names!r})"
    assert list(flat) == ["optimizer", "lr", "momentum", "beta1", "beta2", "weight_decay",
                          "lion_beta2"]
    assert flat["lion_beta2"] is Lion.HPARAMS["lion_beta2"]
    assert optim.NAMESPACED_OPTIM_HPARAMS[-2:] == ("lion.beta1", "lion.lion_beta2")
    space = optim.optimizer_space()
    assert list(space)[-2:] == ["lion.beta1", "lion.lion_beta2"]
    assert space["lion.lion_beta2"] == "uniform(0.9, 0.999)"
    assert space["optimizer"] == f"choices({names!r})"
    assert optim.unused_hparams("lion") == {"momentum", "beta2", "weight_decay"}
    assert "lion_beta2" in optim.unused_hparams("adam")
    param = torch.nn.Parameter(torch.ones(3))
    opt = optim.make_optimizer([param], {k: v.default for k, v in flat.items()}
                               | {"optimizer": "lion", "lr": 0.1})
    assert type(opt) is Lion and opt.param_groups[0]["betas"] == (0.9, 0.99)
    (param**2).sum().backward()
    opt.step()
    assert torch.equal(param.detach(), torch.full((3,), 0.9))
    monkeypatch.undo()
    assert "lion" not in optim.OPTIMIZERS and "lion.beta1" not in optim.optimizer_space()


def test_a_registry_that_disagrees_is_refused(monkeypatch):
    class Odd(Lion):
        name = "odd"
        HPARAMS = {"momentum": dataclasses.replace(SHARED_HPARAMS["momentum"], default=0.5)}

    with pytest.raises(TypeError, match=r"Odd.HPARAMS\['momentum'\] .* in more than its prior"):
        optim.derive((*optim.REGISTRY, Odd))
    with pytest.raises(TypeError, match="two optimizers share a name"):
        optim.derive((*optim.REGISTRY, optim.Adam))

    class Eps(Lion):
        name = "eps"
        CONSTANTS = {"adam_eps": 1e-8}

    with pytest.raises(TypeError, match=r"Eps.CONSTANTS\['adam_eps'\] = 1e-08"):
        optim.derive((*optim.REGISTRY, Eps))

    class Fast(Lion):  # calls a private kernel but names no torch.optim class to fall back to
        KERNELS = ("_foreach_add_",)

    Fast([torch.nn.Parameter(torch.ones(1))], lr=0.1, betas=(0.9, 0.99))
    force_fallback(monkeypatch)
    with pytest.raises(RuntimeError, match=r"\['_foreach_add_'\]\) and has no torch.optim"):
        Fast([torch.nn.Parameter(torch.ones(1))], lr=0.1, betas=(0.9, 0.99))



def test_step_together_gives_each_optimizer_its_own_steps_bits_in_fewer_calls(monkeypatch):
    """A population's optimizers stepped together (``step_together``): the parameters and
    states of each end with the bits of stepping it alone, over steps where one parameter
    has no gradient; Adams of equal settings share one fused call and every Adam's step
    counters advance in one call; other optimizers step alone."""
    adams = [("adam", 1e-2), ("adam", 1e-2), ("adam", 3e-3), ("adamw", 1e-2)]

    def run(settings: list[tuple[str, float]], step) -> list:
        nets = [mlp() for _ in settings]
        opts = [make_optimizer(n.parameters(), hparams(name, lr=lr))
                for n, (name, lr) in zip(nets, settings, strict=True)]
        gens = [torch.Generator().manual_seed(i) for i in range(len(nets))]
        for k in range(12):
            for net, gen in zip(nets, gens, strict=True):
                for i, p in enumerate(net.parameters()):
                    grad = torch.randn(p.shape, generator=gen)
                    p.grad = None if i == 1 and k % 5 == 0 else grad
            step(opts)
        return [{"params": {n: p.detach().clone() for n, p in net.named_parameters()},
                 "opt": opt.state_dict()} for net, opt in zip(nets, opts, strict=True)]

    settings = [*adams, ("sgd", 1e-2), ("rmsprop", 1e-2), ("adamax", 1e-2)]
    alone = run(settings, lambda opts: [opt.step() for opt in opts])
    for got, want in zip(run(settings, optim.step_together), alone, strict=True):
        assert_same_state(got, want)
    calls = dict.fromkeys(("fused_adam_", "fused_adamw_", "foreach_add_"), 0)

    def counting(name: str, real):
        def counted(*args, **kw):
            calls[name] += 1
            return real(*args, **kw)
        return counted

    for name in calls:
        monkeypatch.setattr(kernels, name, counting(name, getattr(kernels, name)))
    run(adams, optim.step_together)
    # a step: the two Adams at lr 1e-2 in one fused call, the third in another, the AdamW
    # in its own; the counters of all four in one foreach call
    assert calls == {"fused_adam_": 2 * 12, "fused_adamw_": 12, "foreach_add_": 12}
