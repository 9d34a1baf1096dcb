"""What every lockstep shares: the members of one epoch, each called in turn, those that
failed (one member's failure takes it out of the lockstep, not the others), and the end of a
gradient step (clipping, the optimizer step) for all of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rltasks.failpoints import failpoint
from rltasks.optim import step_together


class Members:
    """The members of one lockstep epoch and the exceptions of those that failed, by index."""

    def __init__(self, members: list[Any]) -> None:
        self.members = members
        self.failed: dict[int, BaseException] = {}

    def each(self, call: Callable[[int, Any], Any], only: Any = None) -> dict[int, Any]:
        """``call(k, member)`` for every member still in (of ``only``'s indices, when
        given), by index; one that raises is out."""
        out = {}
        for k, m in enumerate(self.members):
            if k in self.failed or (only is not None and k not in only):
                continue
            try:
                out[k] = call(k, m)
            except Exception as err:  # one member's failure must not stop the others
                self.failed[k] = err
        return out

    def results(self, rows: dict[int, Any]) -> list[Any]:
        """Each member's row, or the exception that took it out."""
        return [self.failed.get(k, rows.get(k)) for k in range(len(self.members))]

    def clip_and_step(self, name: str = "opt", only: Any = None) -> None:
        """Every member's ``clip_and_step(name, clip=m.params)`` (members still in, of
        ``only``'s indices when given), with the clipping computed together:
        ``clip_grad_norm_``'s steps (each gradient's norm, their norm, the clamped coefficient
        ``max_grad_norm / (norm + 1e-6)``, the scaling) on all members' gradients at once, the
        same bits as member by member (``tests/test_population.py``); then each member's
        finiteness check, and the optimizer steps of those that pass, taken together
        (``optim.step_together``: the same bits as each member's ``step_optimizer``)."""
        ks = [k for k in range(len(self.members))
              if k not in self.failed and (only is None or k in only)]
        grads = [[p.grad for p in self.members[k].params if p.grad is not None] for k in ks]
        layout = {tuple((g.shape, g.dtype, g.device) for g in gs) for gs in grads}
        kinds = {(g.dtype, g.device) for gs in grads for g in gs}
        if len(ks) < 2 or len(layout) != 1 or len(kinds) != 1 or not grads[0]:
            self.each(lambda k, m: m.clip_and_step(name, clip=m.params), only=ks)
            return
        flat = [g for gs in grads for g in gs]  # member by member, in each one's order
        with torch.no_grad():
            norms = torch.stack(torch._foreach_norm(flat)).view(len(ks), len(grads[0]))
            total = torch.linalg.vector_norm(norms, 2.0, dim=1)
            limit = torch.tensor([float(self.members[k].hp["max_grad_norm"]) for k in ks],
                                 dtype=total.dtype)
            coef = torch.clamp((total + 1e-6).reciprocal() * limit, max=1.0)
            # each gradient times its member's coefficient: one rounded product per element
            # (a float32 coefficient read as a Python float is the same number)
            torch._foreach_mul_(flat, [c for c in coef.tolist() for _ in grads[0]])
        norm = dict(zip(ks, total.unbind(), strict=True))
        finite = dict(zip(ks, torch.isfinite(total).tolist(), strict=True))

        def check(k: int, m: Any) -> Any:
            if not finite[k]:
                m.check_grad_norm(norm[k])  # raises, as the member's own check would
            failpoint("update")  # as the member's own ``step_optimizer`` reaches it
            return m.optimizers[name]

        step_together(self.each(check, only=norm).values())
