"""The private torch kernels the optimizers call, and whether this torch has them.

The fast path of every optimizer (``rltasks.optim.optimizers``) and ``zero_grad`` run
``torch._foreach_*`` and ``torch._fused_adam(w)_``: one C++ pass over all the parameters,
without torch.optim's machinery. They are private, so a future torch may drop or rename one.
Every call goes through this module: ``NAMES`` lists them, ``MISSING`` (checked at import)
holds those this torch lacks, and an optimizer whose ``KERNELS`` are not all
``available`` steps through the ``torch.optim`` class of the same algorithm instead
(``rltasks.optim.fallback``). Each kernel is here under its name without the leading
underscore (``kernels.foreach_add_`` is ``torch._foreach_add_``): the same function, so the
fast path computes what it did when it called torch directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

#: every private torch function the optimizers call
NAMES: tuple[str, ...] = (
    "_foreach_zero_", "_foreach_add", "_foreach_add_", "_foreach_mul_", "_foreach_lerp_",
    "_foreach_abs", "_foreach_maximum_", "_foreach_addcdiv_", "_foreach_addcmul_",
    "_foreach_sqrt", "_fused_adam_", "_fused_adamw_",
)


def missing(module: ModuleType | Any = torch) -> frozenset[str]:
    """The kernels of ``NAMES`` that ``module`` (torch) does not have as functions."""
    return frozenset(name for name in NAMES if not callable(getattr(module, name, None)))


#: the kernels this torch lacks; an optimizer that needs one falls back to torch.optim
MISSING: frozenset[str] = missing()


def available(names: Iterable[str]) -> bool:
    """Whether this torch has every kernel of ``names`` (read at each call, so a test can
    make ``MISSING`` pretend a kernel is gone)."""
    return MISSING.isdisjoint(names)


def kernel(name: str, module: ModuleType | Any = torch) -> Callable[..., Any]:
    """``module.<name>`` itself, or where it is missing a function that says so when called
    (an optimizer checks ``available`` first, so only a wrong ``KERNELS`` can reach it)."""
    found = getattr(module, name, None)
    if callable(found):
        return found

    def absent(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"torch {torch.__version__} has no torch.{name}: the optimizer "
                           f"calling it must list it in its KERNELS to fall back to torch.optim")
    return absent


foreach_zero_ = kernel("_foreach_zero_")
foreach_add = kernel("_foreach_add")
foreach_add_ = kernel("_foreach_add_")
foreach_mul_ = kernel("_foreach_mul_")
foreach_lerp_ = kernel("_foreach_lerp_")
foreach_abs = kernel("_foreach_abs")
foreach_maximum_ = kernel("_foreach_maximum_")
foreach_addcdiv_ = kernel("_foreach_addcdiv_")
foreach_addcmul_ = kernel("_foreach_addcmul_")
foreach_sqrt = kernel("_foreach_sqrt")
fused_adam_ = kernel("_fused_adam_")
fused_adamw_ = kernel("_fused_adamw_")


def zero_(tensors: list[Tensor]) -> None:
    """Zero ``tensors`` in place: one foreach call, or a loop on a torch without it."""
    if available(("_foreach_zero_",)):
        foreach_zero_(tensors)
    else:
        for tensor in tensors:
            tensor.zero_()
