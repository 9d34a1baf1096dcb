"""Where a task computes: ``resolve_device`` checks a ``device`` spec, ``to_cpu`` brings state back.

Every task goes through these two, so a GPU machine runs the code path the CPU tests run:
``Task.__init__`` resolves ``make_task(..., device=...)`` with ``resolve_device`` ("cpu",
"cuda", "cuda:N", "mps" or "auto"; an unavailable or unknown device is a one-line
``ValueError`` that names the fix), and ``Task.state_dict`` passes its tensors through
``to_cpu``, so a checkpoint is the same whatever device wrote it and loads on any other.

Random numbers are drawn from the task's CPU ``torch.Generator`` and then moved to the device:
CUDA's generators give other streams (and a CPU generator cannot draw on CUDA), so a run draws
the same random numbers on every device and the generator's state checkpoints as it always
has. The results of the arithmetic still differ between devices in the last bits (other
kernels, other summation orders): runs are bit-identical on one device, not across devices.

On the CPU a task computes with subnormal floats flushed to zero (``cpu_numerics``, around
``fit`` and ``evaluate``, the thread's setting restored after): Adam's second moments of the
gradients a ReLU network leaves at zero decay into the subnormal range, where x86 arithmetic is
~10-100x slower; a DQN gradient step on CartPole took 2x as long for it (profiled), and its
training 1.2-1.5x as long (``bench/denormals.py``).
GPUs and XLA flush them by default.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch

#: below float32's smallest normal number (1.18e-38): zero when subnormals are flushed
_SUBNORMAL = 1e-39

#: the device specs ``resolve_device`` takes, for its messages
SPECS = "'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"


def flushing_subnormals() -> bool:
    """Whether this thread's CPU arithmetic flushes subnormal floats to zero now."""
    return (torch.tensor([_SUBNORMAL]) * 1.0).item() == 0.0


@contextlib.contextmanager
def cpu_numerics() -> Iterator[None]:
    """Within: subnormal floats flushed to zero on this thread's CPU arithmetic (torch's and
    numpy's); after: the thread's previous setting, so that nothing outside a task (numpy
    code, hypothesis, the user's own) computes differently for having trained one. ``fit``
    and ``evaluate`` run within it, so a run computes the same numbers whichever thread
    trains it (bit-identical resume)."""
    before = flushing_subnormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def resolve_device(spec: str | torch.device) -> torch.device:
    """The torch device of ``spec``, checked to exist on this machine.

    "auto" is CUDA if available, else MPS if available, else the CPU. "cuda" is the current
    CUDA device with its index ("cuda:0"), as tensors report theirs, so that ``tensor.device
    == task.device`` holds; likewise "mps" is "mps:0" and any CPU is "cpu". An unknown spec
    ("tpu"), an unsupported device type or an unavailable device raises a one-line
    ``ValueError`` naming it and what to use instead.
    """
    if isinstance(spec, str):
        spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return resolve_device("cuda")
        return resolve_device("mps") if torch.backends.mps.is_available() else torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={spec!r} is not a device: use {SPECS}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        return _cuda(spec, device.index)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device={spec!r} is not available on this machine "
                             f"(torch.backends.mps.is_available() is False); "
                             f"use device='cpu' or 'auto'")
        if device.index not in (None, 0):
            raise ValueError(f"device={spec!r} is not available on this machine (it has one "
                             f"MPS device, mps:0); use device='mps', 'cpu' or 'auto'")
        return torch.device("mps", 0)
    raise ValueError(f"device={spec!r}: rltasks runs on {SPECS}, not on {device.type}")


def _cuda(spec: str | torch.device, index: int | None) -> torch.device:
    """CUDA device ``index`` (None: the current one), or the one-line error saying why not."""
    if not torch.cuda.is_available():
        build = "" if torch.backends.cuda.is_built() else f", torch {torch.__version__} has no CUDA"
        raise ValueError(f"device={spec!r} is not available on this machine "
                         f"(torch.cuda.is_available() is False{build}); "
                         f"use device='cpu' or 'auto'")
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        names = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise ValueError(f"device={spec!r} is not available on this machine (it has {count} "
                         f"CUDA device{'s' if count > 1 else ''}: {names}); "
                         f"use device='cuda', 'cuda:N' with N < {count}, 'cpu' or 'auto'")
    return torch.device("cuda", torch.cuda.current_device() if index is None else index)


def to_cpu(tree: Any) -> Any:
    """``tree`` (nested dicts, lists and tuples) with every tensor off the CPU copied to it.

    A container that holds no such tensor is returned as it is, itself: on the CPU a state
    is not copied or rebuilt (an ``OrderedDict``'s ``_metadata`` included), so a CPU run's
    checkpoints stay what they were. A rebuilt dict keeps its type and attributes."""
    if isinstance(tree, torch.Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        moved = {key: to_cpu(value) for key, value in tree.items()}
        if all(moved[key] is value for key, value in tree.items()):
            return tree
        out = copy.copy(tree)
        out.update(moved)
        return out
    if isinstance(tree, (list, tuple)):
        items = [to_cpu(value) for value in tree]
        if all(a is b for a, b in zip(items, tree, strict=True)):
            return tree
        return type(tree)(items)
    return tree
