"""Optimizer and learning-rate schedule blocks, each knowing its own Orion space.

A task's space includes ``OPTIM_HPARAMS`` and ``SCHEDULE_HPARAMS``, so ``optimizer`` is an
ordinary categorical hyperparameter and an Orion hunt doubles as an optimizer finder.
Schedules are pure functions of training progress (env steps over the horizon), which the
task state holds, so a resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from rltasks.space import HP, choices


class Optimizer:
    """One group of parameters updated in place: torch.optim's surface, none of its machinery.

    Why not ``torch.optim``: in torch 2.13 building one imports ``torch._dynamo`` (~1 s that
    every Orion trial pays before its first env step) and each ``step()`` runs dynamo's graph
    break, profiler hooks and per-group bookkeeping, which triple the cost of a fused Adam step
    on small MLPs (``bench/optim_step.py``). This keeps what the tasks use: ``param_groups``
    (one dict: ``params``, ``lr`` and the settings, so ``set_lr`` works), ``zero_grad``,
    ``step`` and ``state_dict``/``load_state_dict`` in torch's layout (state keyed by
    parameter index), so checkpoints written with torch.optim still load. Parameters without
    a gradient are skipped and keep their state, as in torch.
    A subclass gives ``init_state`` (fresh state of one parameter) and ``update``.
    """

    def __init__(self, params: Iterable[Tensor], **settings: Any) -> None:
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self.param_groups: list[dict[str, Any]] = [{"params": params, **settings}]
        self.state: dict[int, dict[str, Tensor]] = {}

    def __repr__(self) -> str:
        settings = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in settings.items())})"

    def init_state(self, param: Tensor) -> dict[str, Tensor]:
        """The state of ``param`` before its first step, named as in torch.optim."""
        raise NotImplementedError

    def update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
               states: list[dict[str, Tensor]]) -> None:
        """Update ``params`` and their ``states`` in place (under ``no_grad``)."""
        raise NotImplementedError

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (or zero them in place), as torch.optim does."""
        grads = []
        for p in self.param_groups[0]["params"]:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                if p.grad.grad_fn is not None:
                    p.grad.detach_()
                else:
                    p.grad.requires_grad_(False)
                grads.append(p.grad)
        if grads:
            torch._foreach_zero_(grads)

    def step(self) -> None:
        """Update every parameter that has a gradient; the state starts at its first one."""
        group = self.param_groups[0]
        params, grads, states = [], [], []
        for i, p in enumerate(group["params"]):
            if p.grad is not None:
                params.append(p)
                grads.append(p.grad)
                state = self.state.get(i)
                if state is None:
                    state = self.state[i] = self.init_state(p)
                states.append(state)
        if params:
            with torch.no_grad():
                self.update(group, params, grads, states)

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (copies) in torch's layout: ``{"state": {index: {name: tensor}},
        "param_groups": [{settings..., "params": [0, 1, ...]}]}``."""
        group = self.param_groups[0]
        packed = {k: v for k, v in group.items() if k != "params"}
        packed["params"] = list(range(len(group["params"])))
        return {"state": {i: {k: v.clone() for k, v in self.state[i].items()}
                          for i in sorted(self.state) if self.state[i]},
                "param_groups": [packed]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict`` (ours or torch.optim's of the same algorithm), copying the
        tensors onto the parameters' device; the saved settings replace the current ones."""
        group = self.param_groups[0]
        params = group["params"]
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != 1 or len(saved_groups[0]["params"]) != len(params):
            raise ValueError(f"optimizer state has {[len(g['params']) for g in saved_groups]} "
                             f"parameters per group; this optimizer has [{len(params)}]")
        saved = saved_groups[0]
        position = {key: i for i, key in enumerate(saved["params"])}
        state: dict[int, dict[str, Tensor]] = {}
        for key, values in state_dict["state"].items():
            i = position[key]
            state[i] = self.init_state(params[i])
            if set(values) != set(state[i]):
                raise ValueError(f"optimizer state of parameter {i} holds {sorted(values)}; "
                                 f"{type(self).__name__} needs {sorted(state[i])}")
            for name, value in values.items():
                state[i][name].copy_(torch.as_tensor(value))  # old torch: int steps
        for name in (group.keys() & saved.keys()) - {"params"}:
            group[name] = tuple(saved[name]) if isinstance(group[name], tuple) else saved[name]
        self.state = state


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
        torch._foreach_add_(steps, _ONE, alpha=1.0)
    else:
        torch._foreach_add_(steps, 1)


class Adam(Optimizer):
    """Adam with coupled L2 weight decay, through the fused kernel ``torch.optim.Adam(
    fused=True)`` calls: one C++ pass over all parameters (~1.8x the for-loop on CPU)."""

    decoupled = False

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def init_state(self, param: Tensor) -> dict[str, Tensor]:
        # the fused kernel wants float32 steps on the parameter's device
        return {"step": torch.zeros((), dtype=torch.float32, device=param.device),
                **_zeros(param, "exp_avg", "exp_avg_sq")}

    def update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
               states: list[dict[str, Tensor]]) -> None:
        steps = [s["step"] for s in states]
        _advance(steps)  # the kernel reads the step but does not advance it
        kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
               [], steps, lr=group["lr"], beta1=beta1, beta2=beta2,
               weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False,
               maximize=False)


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay``), fused kernel."""

    decoupled = True

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class Adamax(Optimizer):
    """Adamax (Adam with an infinity norm), coupled L2; the math of torch's foreach version."""

    def __init__(self, params: Iterable[Tensor], lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def init_state(self, param: Tensor) -> dict[str, Tensor]:
        return {"step": _cpu_step(), **_zeros(param, "exp_avg", "exp_inf")}

    def update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
               states: list[dict[str, Tensor]]) -> None:
        beta1, beta2 = group["betas"]
        steps = [s["step"] for s in states]
        exp_avgs, exp_infs = [s["exp_avg"] for s in states], [s["exp_inf"] for s in states]
        _advance(steps)
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_infs, beta2)
        norms = torch._foreach_abs(grads)
        torch._foreach_add_(norms, group["eps"])
        torch._foreach_maximum_(exp_infs, norms)
        rates = [-group["lr"] / (1 - beta1 ** step.item()) for step in steps]
        torch._foreach_addcdiv_(params, exp_avgs, exp_infs, rates)


class SGD(Optimizer):
    """SGD with heavy-ball momentum (dampening 0, no Nesterov) and coupled L2, foreach ops.

    The momentum buffer starts at zero, so its first update ``0 * m + g`` is exactly torch's
    ``buf = g.clone()``; without momentum there is no state, as in torch."""

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def init_state(self, param: Tensor) -> dict[str, Tensor]:
        return _zeros(param, "momentum_buffer") if self.param_groups[0]["momentum"] else {}

    def update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
               states: list[dict[str, Tensor]]) -> None:
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        if group["momentum"] != 0:
            bufs = [s["momentum_buffer"] for s in states]
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
            grads = bufs
        torch._foreach_add_(params, grads, alpha=-group["lr"])


class RMSprop(Optimizer):
    """RMSprop (not centered) with heavy-ball momentum and coupled L2; the math of torch's
    foreach version. Defaults alpha 0.99 and eps 1e-5 as in the A2C paper and SB3."""

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-5, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                         weight_decay=weight_decay)

    def init_state(self, param: Tensor) -> dict[str, Tensor]:
        names = ("square_avg", "momentum_buffer") if self.param_groups[0]["momentum"] > 0 \
            else ("square_avg",)
        return {"step": _cpu_step(), **_zeros(param, *names)}

    def update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
               states: list[dict[str, Tensor]]) -> None:
        alpha, lr = group["alpha"], group["lr"]
        square_avgs = [s["square_avg"] for s in states]
        _advance([s["step"] for s in states])
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        torch._foreach_mul_(square_avgs, alpha)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        avg = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avg, group["eps"])
        if group["momentum"] > 0:
            bufs = [s["momentum_buffer"] for s in states]
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_addcdiv_(bufs, grads, avg)
            torch._foreach_add_(params, bufs, alpha=-lr)
        else:
            torch._foreach_addcdiv_(params, grads, avg, value=-lr)


def _adam_like(cls: type[Adam]) -> Callable[..., Optimizer]:
    def build(params: Iterable[Tensor], hp: dict[str, Any]) -> Optimizer:
        return cls(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["adam_eps"],
                   weight_decay=hp["weight_decay"])
    return build


def _adamax(params: Iterable[Tensor], hp: dict[str, Any]) -> Optimizer:
    return Adamax(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["adam_eps"],
                  weight_decay=hp["weight_decay"])


def _sgd(params: Iterable[Tensor], hp: dict[str, Any]) -> Optimizer:
    return SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])


def _rmsprop(params: Iterable[Tensor], hp: dict[str, Any]) -> Optimizer:
    return RMSprop(params, lr=hp["lr"], momentum=hp["momentum"],
                   weight_decay=hp["weight_decay"])


#: name -> builder(params, hparams) -> optimizer
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "adam": _adam_like(Adam),
    "adamw": _adam_like(AdamW),
    "adamax": _adamax,
    "sgd": _sgd,
    "rmsprop": _rmsprop,
}

#: The optimizer block's hyperparameters. Those a chosen optimizer does not use are ignored,
#: and not recorded as the run's hyperparameters (``Task.hparams``).
OPTIM_HPARAMS: dict[str, HP] = {
    "optimizer": HP("adam", choices(*OPTIMIZERS), kind=str, choices=tuple(OPTIMIZERS),
                    help="optimizer family"),
    "lr": HP(3e-4, "loguniform(1e-5, 1e-2)", low=0.0, high=10.0, low_open=True,
             help="initial learning rate"),
    "momentum": HP(0.9, "uniform(0.0, 0.99)", low=0.0, high=1.0, high_open=True,
                   help="momentum of sgd and rmsprop"),
    "beta1": HP(0.9, "uniform(0.8, 0.99)", low=0.0, high=1.0, high_open=True,
                help="first-moment decay of adam, adamw and adamax"),
    "beta2": HP(0.999, "uniform(0.9, 0.9999)", low=0.0, high=1.0, high_open=True,
                help="second-moment decay of adam, adamw and adamax"),
    "weight_decay": HP(0.0, "uniform(0.0, 0.001)", low=0.0, high=1.0,
                       help="L2 penalty (decoupled for adamw)"),
}

#: The block hyperparameters each optimizer reads besides ``lr``: its own. An optimizer
#: finder hunts them as ``<optimizer>.<name>`` (``sgd.momentum``), see ``optimizer_space``.
OPTIMIZER_HPARAMS: dict[str, tuple[str, ...]] = {
    "adam": ("beta1", "beta2", "weight_decay"),
    "adamw": ("beta1", "beta2", "weight_decay"),
    "adamax": ("beta1", "beta2", "weight_decay"),
    "sgd": ("momentum", "weight_decay"),
    "rmsprop": ("momentum", "weight_decay"),
}

#: Those hyperparameters as an optimizer finder names them: ``adam.beta1``, ``sgd.momentum``...
NAMESPACED_OPTIM_HPARAMS: tuple[str, ...] = tuple(
    f"{name}.{key}" for name, keys in OPTIMIZER_HPARAMS.items() for key in keys)

#: Fixed (not hunted) optimizer constants; a task may override them as hparams.
OPTIM_CONSTANTS: dict[str, Any] = {"adam_eps": 1e-5}

#: Orion priors of the optimizers' own hyperparameters where they differ from the flat ones:
#: adamw's decoupled decay is typically 100x coupled L2.
_OWN_PRIORS: dict[str, str] = {"adamw.weight_decay": "loguniform(1e-4, 0.1)"}


def unused_hparams(optimizer: str) -> set[str]:
    """The optimizer block's hyperparameters that ``optimizer`` ignores."""
    own = {k for keys in OPTIMIZER_HPARAMS.values() for k in keys}
    return own - set(OPTIMIZER_HPARAMS[optimizer])


def optimizer_space() -> dict[str, str]:
    """The optimizer finder's Orion space: the family, ``lr``, and each optimizer's own
    hyperparameters namespaced by it (``adam.beta1``, ``sgd.momentum``), which apply only to
    the trials of that optimizer (``rltasks.space.namespaced``)."""
    space = {"optimizer": OPTIM_HPARAMS["optimizer"].prior, "lr": OPTIM_HPARAMS["lr"].prior}
    for flag in NAMESPACED_OPTIM_HPARAMS:
        space[flag] = _OWN_PRIORS.get(flag, OPTIM_HPARAMS[flag.partition(".")[2]].prior)
    return space


def make_optimizer(params: Iterable[Tensor], hp: dict[str, Any]) -> Optimizer:
    """Build the optimizer named by ``hp['optimizer']`` with the block's hyperparameters."""
    name = hp["optimizer"]
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, {**OPTIM_CONSTANTS, **hp})


def _constant(progress: float) -> float:
    return 1.0


def _linear(progress: float) -> float:
    return max(0.0, 1.0 - progress)


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _exponential(progress: float) -> float:
    # decays to 1% of the initial value at the end of the horizon
    return 0.01 ** min(progress, 1.0)


#: name -> multiplier(progress in [0, 1]) applied to an initial value
SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": _constant,
    "linear": _linear,
    "cosine": _cosine,
    "exponential": _exponential,
}

SCHEDULE_HPARAMS: dict[str, HP] = {
    "lr_schedule": HP("constant", choices(*SCHEDULES), kind=str, choices=tuple(SCHEDULES),
                      help="learning-rate schedule over the horizon"),
}


def scheduled(initial: float, schedule: str, progress: float) -> float:
    """Value of a scheduled quantity at ``progress`` (env steps done / horizon steps)."""
    return initial * SCHEDULES[schedule](progress)


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
