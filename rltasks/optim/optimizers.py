"""The optimizers: Adam, AdamW, Adamax, SGD, RMSprop, each declaring what the block needs.

A class declares its ``name`` (its ``optimizer`` choice), ``HPARAMS`` (the block
hyperparameters it reads besides ``lr``, each with the Orion prior it is hunted with as
``<name>.<hparam>``), ``CONSTANTS`` (fixed settings it reads, which a task may override) and
``from_hparams`` (how it is built from a hyperparameter dict); ``rltasks.optim`` derives the
block's tables from the classes it registers. The update (``fast_update``) runs the private
torch kernels the class lists in ``KERNELS`` (``rltasks.optim.kernels``); on a torch that
lacks one, the ``torch.optim`` class of the same algorithm (``TORCH``) updates the same
state instead (``rltasks.optim.fallback``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from rltasks.hparams import HP
from rltasks.optim import kernels
from rltasks.optim.base import Optimizer
from rltasks.optim.fallback import TorchOptim

#: the learning rate, which every optimizer reads (and a schedule changes, ``set_lr``)
LR = HP(3e-4, "loguniform(1e-5, 1e-2)", low=0.0, high=10.0, low_open=True,
        help="initial learning rate")

#: The hyperparameters several optimizers read, declared once so that they agree: each is one
#: flat hyperparameter of a task, in this order, and the optimizers that read it are hunted
#: with it as ``<name>.<hparam>``. An optimizer's own new hyperparameter needs no entry here.
SHARED_HPARAMS: dict[str, HP] = {
    "momentum": HP(0.9, "uniform(0.0, 0.99)", low=0.0, high=1.0, high_open=True,
                   help="momentum of sgd and rmsprop"),
    "beta1": HP(0.9, "uniform(0.8, 0.99)", low=0.0, high=1.0, high_open=True,
                help="first-moment decay of adam, adamw and adamax"),
    "beta2": HP(0.999, "uniform(0.9, 0.9999)", low=0.0, high=1.0, high_open=True,
                help="second-moment decay of adam, adamw and adamax"),
    "weight_decay": HP(0.0, "uniform(0.0, 0.001)", low=0.0, high=1.0,
                       help="L2 penalty (decoupled for adamw)"),
}


def shared(*names: str) -> dict[str, HP]:
    """The shared hyperparameters ``names``, for an optimizer's ``HPARAMS``."""
    return {name: SHARED_HPARAMS[name] for name in names}


class BlockOptimizer(Optimizer):
    """An optimizer of the block: its declarations, and its update on the fast path or,
    where this torch lacks one of its ``KERNELS``, through ``TORCH`` (``self.fallback``)."""

    name: ClassVar[str] = ""
    HPARAMS: ClassVar[dict[str, HP]] = {}
    CONSTANTS: ClassVar[dict[str, Any]] = {}
    #: the private torch kernels ``fast_update`` calls (``rltasks.optim.kernels.NAMES``)
    KERNELS: ClassVar[tuple[str, ...]] = ()
    #: the torch.optim class of the same algorithm, settings and state names
    TORCH: ClassVar[type[torch.optim.Optimizer] | None] = None

    def __init__(self, params: Iterable[Tensor], **settings: Any) -> None:
        super().__init__(params, **settings)
        self.fallback: TorchOptim | None = None
        if not kernels.available(self.KERNELS):
            if self.TORCH is None:
                raise RuntimeError(f"{type(self).__name__} needs torch kernels this torch lacks "
                                   f"({sorted(kernels.MISSING & set(self.KERNELS))}) and has "
                                   f"no torch.optim fallback")
            self.fallback = TorchOptim(self.TORCH, self.param_groups[0])

    @classmethod
    def from_hparams(cls, params: Iterable[Tensor], hp: dict[str, Any]) -> BlockOptimizer:
        """Build one from the block's hyperparameters (``lr``, ``HPARAMS``, ``CONSTANTS``)."""
        raise NotImplementedError

    def update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
               states: list[dict[str, Tensor]]) -> None:
        if self.fallback is None:
            self.fast_update(group, params, grads, states)
        else:
            self.fallback.step(group, params, states)

    def fast_update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    states: list[dict[str, Tensor]]) -> None:
        """``update`` through the private kernels of ``KERNELS``."""
        raise NotImplementedError


def _zeros(param: Tensor, *names: str) -> dict[str, Tensor]:
    return {name: torch.zeros_like(param, memory_format=torch.preserve_format) for name in names}


def _cpu_step() -> Tensor:
    # torch.optim keeps the step of non-fused optimizers on the CPU: bias corrections read it.
    return torch.zeros((), dtype=torch.float32)


_ONE = torch.ones(())


def _advance(steps: list[Tensor]) -> None:
    """Add 1 to every step counter. On the CPU, adding a tensor is ~3x faster than adding
    the number 1, which foreach wraps into a new tensor for every counter (torch does this)."""
    if steps[0].is_cpu:
        kernels.foreach_add_(steps, _ONE, alpha=1.0)
    else:
        kernels.foreach_add_(steps, 1)


class AdamFamily(BlockOptimizer):
    """What Adam, AdamW and Adamax share: betas, eps, weight decay, and their hyperparameters
    (``beta1``, ``beta2``, ``weight_decay``, the fixed ``adam_eps``)."""

    HPARAMS = shared("beta1", "beta2", "weight_decay")
    CONSTANTS = {"adam_eps": 1e-5}
    #: the default learning rate of the constructor (torch's)
    DEFAULT_LR = 1e-3

    def __init__(self, params: Iterable[Tensor], lr: float | None = None,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=self.DEFAULT_LR if lr is None else lr, betas=tuple(betas),
                         eps=eps, weight_decay=weight_decay)

    @classmethod
    def from_hparams(cls, params: Iterable[Tensor], hp: dict[str, Any]) -> BlockOptimizer:
        return cls(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["adam_eps"],
                   weight_decay=hp["weight_decay"])


class Adam(AdamFamily):
    """Adam with coupled L2 weight decay, through the fused kernel ``torch.optim.Adam(
    fused=True)`` calls: one C++ pass over all parameters (~1.8x the for-loop on CPU)."""

    name = "adam"
    KERNELS = ("_foreach_add_", "_fused_adam_")
    TORCH = torch.optim.Adam
    decoupled = False

    def init_state(self, param: Tensor) -> dict[str, Tensor]:
        # the fused kernel wants float32 steps on the parameter's device
        return {"step": torch.zeros((), dtype=torch.float32, device=param.device),
                **_zeros(param, "exp_avg", "exp_avg_sq")}

    def fast_update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    states: list[dict[str, Tensor]]) -> None:
        _advance([s["step"] for s in states])  # the kernel reads the step, does not advance it
        self.fused(group, params, grads, states)

    def fused(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
              states: list[dict[str, Tensor]]) -> None:
        """The fused kernel's update of ``params`` (their steps already advanced): each
        tensor's update is elementwise and its own, whichever list it is passed in."""
        kernel = kernels.fused_adamw_ if self.decoupled else kernels.fused_adam_
        beta1, beta2 = group["betas"]
        kernel(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
               [], [s["step"] for s in states], lr=group["lr"], beta1=beta1, beta2=beta2,
               weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False,
               maximize=False)


def step_together(optimizers: Iterable[Optimizer]) -> None:
    """Each optimizer's ``step()``, the same bits, in fewer calls (a population's members'
    optimizers, ``rltasks.population``): the step counters of every Adam and AdamW on the
    fast path advance in one call per device, and those with the same settings update in
    one fused call (the kernel updates each tensor on its own, whichever list holds it: a
    ``--seeds`` population's members all share one); any other optimizer steps alone."""
    fused: dict[tuple, tuple[Adam, list[list]]] = {}
    steps: dict[torch.device, list[Tensor]] = {}
    for opt in optimizers:
        if not isinstance(opt, Adam) or opt.fallback is not None:
            opt.step()
            continue
        params, grads, states = opt.with_grads()
        if not params:
            continue
        group = opt.param_groups[0]
        key = (opt.decoupled, params[0].device, group["lr"], group["betas"], group["eps"],
               group["weight_decay"])
        lists = fused.setdefault(key, (opt, [[], [], []]))[1]
        for into, items in zip(lists, (params, grads, states), strict=True):
            into.extend(items)
        steps.setdefault(params[0].device, []).extend(s["step"] for s in states)
    with torch.no_grad():
        for counters in steps.values():
            _advance(counters)
        for opt, (params, grads, states) in fused.values():
            opt.fused(opt.param_groups[0], params, grads, states)


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay``), fused kernel.

    Hunted with its own weight-decay prior: decoupled decay is typically 100x coupled L2."""

    name = "adamw"
    HPARAMS = {**Adam.HPARAMS, "weight_decay": dataclasses.replace(
        SHARED_HPARAMS["weight_decay"], prior="loguniform(1e-4, 0.1)")}
    KERNELS = ("_foreach_add_", "_fused_adamw_")
    TORCH = torch.optim.AdamW
    decoupled = True

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class Adamax(AdamFamily):
    """Adamax (Adam with an infinity norm), coupled L2; the math of torch's foreach version."""

    name = "adamax"
    KERNELS = ("_foreach_add_", "_foreach_add", "_foreach_lerp_", "_foreach_mul_",
               "_foreach_abs", "_foreach_maximum_", "_foreach_addcdiv_")
    TORCH = torch.optim.Adamax
    DEFAULT_LR = 2e-3

    def init_state(self, param: Tensor) -> dict[str, Tensor]:
        return {"step": _cpu_step(), **_zeros(param, "exp_avg", "exp_inf")}

    def fast_update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    states: list[dict[str, Tensor]]) -> None:
        beta1, beta2 = group["betas"]
        steps = [s["step"] for s in states]
        exp_avgs, exp_infs = [s["exp_avg"] for s in states], [s["exp_inf"] for s in states]
        _advance(steps)
        if group["weight_decay"] != 0:
            grads = kernels.foreach_add(grads, params, alpha=group["weight_decay"])
        kernels.foreach_lerp_(exp_avgs, grads, 1 - beta1)
        kernels.foreach_mul_(exp_infs, beta2)
        norms = kernels.foreach_abs(grads)
        kernels.foreach_add_(norms, group["eps"])
        kernels.foreach_maximum_(exp_infs, norms)
        rates = [-group["lr"] / (1 - beta1 ** step.item()) for step in steps]
        kernels.foreach_addcdiv_(params, exp_avgs, exp_infs, rates)


class SGD(BlockOptimizer):
    """SGD with heavy-ball momentum (dampening 0, no Nesterov) and coupled L2, foreach ops.

    The momentum buffer starts at zero, so its first update ``0 * m + g`` is exactly torch's
    ``buf = g.clone()``; without momentum there is no state, as in torch."""

    name = "sgd"
    HPARAMS = shared("momentum", "weight_decay")
    KERNELS = ("_foreach_add", "_foreach_mul_", "_foreach_add_")
    TORCH = torch.optim.SGD

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    @classmethod
    def from_hparams(cls, params: Iterable[Tensor], hp: dict[str, Any]) -> BlockOptimizer:
        return cls(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])

    def init_state(self, param: Tensor) -> dict[str, Tensor]:
        return _zeros(param, "momentum_buffer") if self.param_groups[0]["momentum"] else {}

    def fast_update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    states: list[dict[str, Tensor]]) -> None:
        if group["weight_decay"] != 0:
            grads = kernels.foreach_add(grads, params, alpha=group["weight_decay"])
        if group["momentum"] != 0:
            bufs = [s["momentum_buffer"] for s in states]
            kernels.foreach_mul_(bufs, group["momentum"])
            kernels.foreach_add_(bufs, grads)
            grads = bufs
        kernels.foreach_add_(params, grads, alpha=-group["lr"])


class RMSprop(BlockOptimizer):
    """RMSprop (not centered) with heavy-ball momentum and coupled L2; the math of torch's
    foreach version. Defaults alpha 0.99 and eps 1e-5 as in the A2C paper and SB3."""

    name = "rmsprop"
    HPARAMS = shared("momentum", "weight_decay")
    KERNELS = ("_foreach_add_", "_foreach_add", "_foreach_mul_", "_foreach_addcmul_",
               "_foreach_sqrt", "_foreach_addcdiv_")
    TORCH = torch.optim.RMSprop

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-5, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                         weight_decay=weight_decay)

    @classmethod
    def from_hparams(cls, params: Iterable[Tensor], hp: dict[str, Any]) -> BlockOptimizer:
        return cls(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])

    def init_state(self, param: Tensor) -> dict[str, Tensor]:
        names = ("square_avg", "momentum_buffer") if self.param_groups[0]["momentum"] > 0 \
            else ("square_avg",)
        return {"step": _cpu_step(), **_zeros(param, *names)}

    def fast_update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    states: list[dict[str, Tensor]]) -> None:
        alpha, lr = group["alpha"], group["lr"]
        square_avgs = [s["square_avg"] for s in states]
        _advance([s["step"] for s in states])
        if group["weight_decay"] != 0:
            grads = kernels.foreach_add(grads, params, alpha=group["weight_decay"])
        kernels.foreach_mul_(square_avgs, alpha)
        kernels.foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        avg = kernels.foreach_sqrt(square_avgs)
        kernels.foreach_add_(avg, group["eps"])
        if group["momentum"] > 0:
            bufs = [s["momentum_buffer"] for s in states]
            kernels.foreach_mul_(bufs, group["momentum"])
            kernels.foreach_addcdiv_(bufs, grads, avg)
            kernels.foreach_add_(params, bufs, alpha=-lr)
        else:
            kernels.foreach_addcdiv_(params, grads, avg, value=-lr)
