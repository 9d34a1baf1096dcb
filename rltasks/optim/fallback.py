"""The checked fallback: an optimizer's update by torch.optim, where a private kernel is gone.

On a torch that lacks one of the private kernels an optimizer's fast path calls
(``rltasks.optim.kernels.MISSING``), the optimizer keeps its own bookkeeping (settings,
state keyed by parameter index, ``state_dict``) and only its update runs through the public
``torch.optim`` class of the same algorithm, built with ``foreach=False`` (the per-tensor
loop, which calls no private kernel). torch.optim's state names are ours, so that class
steps on our very state tensors: checkpoints are the same on both paths and load across
them. Not the default: building a torch.optim optimizer imports ``torch._dynamo`` (~1 s per
trial) and its ``step()`` overhead triples a small fused Adam step (``bench/optim_step.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class TorchOptim:
    """``torch_class`` (``torch.optim.Adam``...) over the parameters of our ``group``."""

    def __init__(self, torch_class: type[torch.optim.Optimizer], group: dict[str, Any]) -> None:
        self.optimizer = torch_class(group["params"], foreach=False, **_settings(group))

    def step(self, group: dict[str, Any], params: list[Tensor],
             states: list[dict[str, Tensor]]) -> None:
        """Update ``params`` (those with a gradient) and their ``states`` in place, with the
        settings of ``group`` now (``set_lr`` and ``load_state_dict`` change them)."""
        self.optimizer.param_groups[0].update(_settings(group))
        # our state dicts themselves: torch.optim finds them filled and updates them in place
        self.optimizer.state.clear()
        self.optimizer.state.update(zip(params, states, strict=True))
        self.optimizer.step()


def _settings(group: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in group.items() if key != "params"}
