"""The optimizer base: torch.optim's surface (``param_groups``, ``zero_grad``, ``step``,
``state_dict``/``load_state_dict`` in torch's layout) for one group of parameters.

The algorithms (``rltasks.optim.optimizers``) give the state of a parameter and the update.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from rltasks.optim import kernels


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
            kernels.zero_(grads)

    def step(self) -> None:
        """Update every parameter that has a gradient; the state starts at its first one."""
        params, grads, states = self.with_grads()
        if params:
            with torch.no_grad():
                self.update(self.param_groups[0], params, grads, states)

    def with_grads(self) -> tuple[list[Tensor], list[Tensor], list[dict[str, Tensor]]]:
        """(the parameters that have a gradient, their gradients, their states: a state
        starts at its parameter's first gradient)."""
        params, grads, states = [], [], []
        for i, p in enumerate(self.param_groups[0]["params"]):
            if p.grad is not None:
                params.append(p)
                grads.append(p.grad)
                state = self.state.get(i)
                if state is None:
                    state = self.state[i] = self.init_state(p)
                states.append(state)
        return params, grads, states

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
            if key not in position or not isinstance(values, dict):
                raise ValueError(f"optimizer state of parameter {key!r} is not one of this "
                                 f"optimizer's {len(params)} parameters")
            i = position[key]
            state[i] = self.init_state(params[i])
            if set(values) != set(state[i]):
                raise ValueError(f"optimizer state of parameter {i} holds {sorted(values)}; "
                                 f"{type(self).__name__} needs {sorted(state[i])}")
            for name, value in values.items():
                value = torch.as_tensor(value)  # old torch: int steps
                if value.shape != state[i][name].shape:  # copy_ would broadcast it
                    raise ValueError(f"optimizer state {name} of parameter {i} has shape "
                                     f"{list(value.shape)}, not {list(state[i][name].shape)}")
                state[i][name].copy_(value)
        for name in (group.keys() & saved.keys()) - {"params"}:
            _check_setting(name, group[name], saved[name])
            group[name] = tuple(saved[name]) if isinstance(group[name], tuple) else saved[name]
        self.state = state


def _check_setting(name: str, ours: Any, saved: Any) -> None:
    """A one-line ``ValueError`` when a saved setting is not of the kind of ours (a number,
    a pair of numbers), before it replaces ours."""
    number = (int, float)
    if isinstance(ours, tuple):
        fits = (isinstance(saved, list | tuple) and len(saved) == len(ours)
                and all(isinstance(v, number) for v in saved))
    elif isinstance(ours, number):
        fits = isinstance(saved, number)
    else:
        fits = True
    if not fits:
        raise ValueError(f"optimizer setting {name}={saved!r:.60} is not like this "
                         f"optimizer's {ours!r}")
