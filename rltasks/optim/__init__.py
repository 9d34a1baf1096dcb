"""Optimizer and learning-rate schedule blocks, each knowing its own Orion space.

A task's space includes ``OPTIM_HPARAMS`` and ``SCHEDULE_HPARAMS``, so ``optimizer`` is an
ordinary categorical hyperparameter and an Orion hunt doubles as an optimizer finder.
Schedules are pure functions of training progress (env steps over the horizon), which the
task state holds, so a resumed run continues the schedule where it stopped.

The modules: ``base`` (the ``Optimizer`` surface: torch.optim's, in torch's state layout),
``optimizers`` (the algorithms and their declarations), ``kernels`` (the private torch
kernels they call) and ``fallback`` (torch.optim in their place on a torch without one),
``schedules``. Here: the registry, and every table derived from it.

Adding an optimizer: write its class in ``optimizers.py`` (a ``BlockOptimizer`` declaring
``name``, ``HPARAMS``, ``from_hparams``...) and add it to ``REGISTRY``; the ``optimizer``
choices, the task hyperparameters, the optimizer finder's space, ``unused_hparams`` and
``make_optimizer`` follow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from torch import Tensor

from rltasks.hparams import HP, choices
from rltasks.optim.base import Optimizer
from rltasks.optim.optimizers import (
    LR,
    SGD,
    SHARED_HPARAMS,
    Adam,
    Adamax,
    AdamW,
    BlockOptimizer,
    RMSprop,
    step_together,
)
from rltasks.optim.schedules import SCHEDULE_HPARAMS, SCHEDULES, scheduled

__all__ = [
    "NAMESPACED_OPTIM_HPARAMS", "OPTIMIZERS", "OPTIMIZER_HPARAMS", "OPTIM_CONSTANTS",
    "OPTIM_HPARAMS", "REGISTRY", "SCHEDULES", "SCHEDULE_HPARAMS", "SGD", "Adam", "AdamW",
    "Adamax", "BlockOptimizer", "Optimizer", "RMSprop", "derive", "make_optimizer",
    "optimizer_space", "scheduled", "set_lr", "step_together", "unused_hparams",
]

#: The optimizers, in the order of the ``optimizer`` choices; the first is the default.
REGISTRY: tuple[type[BlockOptimizer], ...] = (Adam, AdamW, Adamax, SGD, RMSprop)


def _flat_hparams(classes: Sequence[type[BlockOptimizer]]) -> dict[str, HP]:
    """``optimizer``, ``lr``, then every hyperparameter an optimizer reads, once: the shared
    ones in ``SHARED_HPARAMS``' order, then the others by their first declaration. A class
    may declare one with its own prior (how it is hunted), nothing else of its own."""
    names = [cls.name for cls in classes]
    block = {"optimizer": HP(names[0], choices(*names), kind=str, choices=tuple(names),
                             help="optimizer family"),
             "lr": LR}
    read = {key for cls in classes for key in cls.HPARAMS}
    block.update({key: spec for key, spec in SHARED_HPARAMS.items() if key in read})
    for cls in classes:
        for key, spec in cls.HPARAMS.items():
            flat = block.setdefault(key, spec)
            if dataclasses.replace(spec, prior=flat.prior) != flat:
                raise TypeError(f"{cls.__name__}.HPARAMS[{key!r}] = {spec} differs from the "
                                f"block's {key} = {flat} in more than its prior")
    return block


def _constants(classes: Sequence[type[BlockOptimizer]]) -> dict[str, Any]:
    constants: dict[str, Any] = {}
    for cls in classes:
        for key, value in cls.CONSTANTS.items():
            if constants.setdefault(key, value) != value:
                raise TypeError(f"{cls.__name__}.CONSTANTS[{key!r}] = {value!r}, another "
                                f"optimizer's is {constants[key]!r}")
    return constants


def derive(classes: Sequence[type[BlockOptimizer]]) -> dict[str, Any]:
    """Every table of the block, derived from the optimizer ``classes``, by the name this
    module exports it under (a test derives them for a registry with one more optimizer)."""
    own = {cls.name: tuple(cls.HPARAMS) for cls in classes}
    if len(own) != len(classes):
        raise TypeError(f"two optimizers share a name: {[cls.name for cls in classes]}")
    return {
        "OPTIMIZERS": {cls.name: cls for cls in classes},
        "OPTIM_HPARAMS": _flat_hparams(classes),
        "OPTIMIZER_HPARAMS": own,
        "NAMESPACED_OPTIM_HPARAMS": tuple(f"{name}.{key}" for name, keys in own.items()
                                          for key in keys),
        "OPTIM_CONSTANTS": _constants(classes),
    }


_DERIVED = derive(REGISTRY)

#: name -> optimizer class; ``make_optimizer`` builds one with its ``from_hparams``
OPTIMIZERS: dict[str, type[BlockOptimizer]] = _DERIVED["OPTIMIZERS"]

#: The optimizer block's hyperparameters. Those a chosen optimizer does not use are ignored,
#: and not recorded as the run's hyperparameters (``Task.hparams``).
OPTIM_HPARAMS: dict[str, HP] = _DERIVED["OPTIM_HPARAMS"]

#: The block hyperparameters each optimizer reads besides ``lr``: its own. An optimizer
#: finder hunts them as ``<optimizer>.<name>`` (``sgd.momentum``), see ``optimizer_space``.
OPTIMIZER_HPARAMS: dict[str, tuple[str, ...]] = _DERIVED["OPTIMIZER_HPARAMS"]

#: Those hyperparameters as an optimizer finder names them: ``adam.beta1``, ``sgd.momentum``...
NAMESPACED_OPTIM_HPARAMS: tuple[str, ...] = _DERIVED["NAMESPACED_OPTIM_HPARAMS"]

#: Fixed (not hunted) optimizer constants; a task may override them as hparams.
OPTIM_CONSTANTS: dict[str, Any] = _DERIVED["OPTIM_CONSTANTS"]


def unused_hparams(optimizer: str) -> set[str]:
    """The optimizer block's hyperparameters that ``optimizer`` ignores."""
    own = {k for keys in OPTIMIZER_HPARAMS.values() for k in keys}
    return own - set(OPTIMIZER_HPARAMS[optimizer])


def optimizer_space() -> dict[str, str]:
    """The optimizer finder's Orion space: the family, ``lr``, and each optimizer's own
    hyperparameters namespaced by it (``adam.beta1``, ``sgd.momentum``) with the prior it
    declares, which apply only to the trials of that optimizer
    (``rltasks.hparams.namespaced``)."""
    space = {"optimizer": OPTIM_HPARAMS["optimizer"].prior, "lr": OPTIM_HPARAMS["lr"].prior}
    for name, cls in OPTIMIZERS.items():
        space.update({f"{name}.{key}": spec.prior for key, spec in cls.HPARAMS.items()})
    return space


def make_optimizer(params: Iterable[Tensor], hp: dict[str, Any]) -> Optimizer:
    """Build the optimizer named by ``hp['optimizer']`` with the block's hyperparameters."""
    name = hp["optimizer"]
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name].from_hparams(params, {**OPTIM_CONSTANTS, **hp})


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
