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
        limits = [float(self.members[k].hp["max_grad_norm"]) for k in ks]
        total = clip_together(grads, ks, len(self.members), limits)
        norm = dict(zip(ks, total.unbind(), strict=True))
        finite = dict(zip(ks, torch.isfinite(total).tolist(), strict=True))

        def check(k: int, m: Any) -> Any:
            if not finite[k]:
                m.check_grad_norm(norm[k])  # raises, as the member's own check would
            failpoint("update")  # as the member's own ``step_optimizer`` reaches it
            return m.optimizers[name]

        step_together(self.each(check, only=norm).values())


@torch.no_grad()
def clip_together(grads: list[list[torch.Tensor]], ks: list[int], size: int,
                  limits: list[float]) -> torch.Tensor:
    """``clip_grad_norm_`` of each member's gradients (``grads[i]``: member ``ks[i]``'s, one
    layout for all) to its limit, all at once; each member's total norm. A parameter's
    gradients that are the rows of one stacked gradient (a ``StackedMLP``'s, handed out by
    ``scatter_grads``) are measured and scaled as one tensor where that gives each row the
    norm its own tensor has (checked once per shape: ``_rowwise_norm_is_exact``), through
    ``torch._foreach_norm`` otherwise; the scaling is one rounded product per element
    either way (a float32 coefficient read as a Python float is the same number)."""
    columns = [list(column) for column in zip(*grads, strict=True)]
    rows = [_rows(column, ks, size) for column in columns]
    pick = torch.tensor(ks)
    norms = torch.stack([
        torch.linalg.vector_norm(r, 2.0, dim=1)[pick] if r is not None
        and _rowwise_norm_is_exact(r) else torch.stack(torch._foreach_norm(column))
        for r, column in zip(rows, columns, strict=True)], dim=1)
    total = torch.linalg.vector_norm(norms, 2.0, dim=1)
    coef = torch.clamp((total + 1e-6).reciprocal() * torch.tensor(limits, dtype=total.dtype),
                       max=1.0)
    if all(r is not None for r in rows):  # every member's row scaled, by 1 if not in ks
        scale = torch.ones(size, 1, dtype=coef.dtype)
        scale[pick, 0] = coef
        for r in rows:
            r.mul_(scale)  # type: ignore[union-attr]
    else:
        torch._foreach_mul_([g for gs in grads for g in gs],
                            [c for c in coef.tolist() for _ in grads[0]])
    return total


def _rows(column: list[torch.Tensor], ks: list[int], size: int) -> torch.Tensor | None:
    """The ``[size, n]`` tensor whose row ``ks[i]`` is ``column[i]`` (contiguous), where the
    column's tensors are rows of one contiguous stacked gradient; None otherwise."""
    base, n = column[0]._base, column[0].numel()
    if (base is None or not base.is_contiguous() or base.numel() != size * n
            or not column[0].is_contiguous()):
        return None
    step, start = n * base.element_size(), base.data_ptr()
    if any(g._base is not base or not g.is_contiguous() or g.data_ptr() != start + k * step
           for k, g in zip(ks, column, strict=True)):
        return None
    return base.view(size, n)


#: (rows, row length, dtype, device) -> whether ``vector_norm(rows, dim=1)`` gives each row
#: the bits of the row's own tensor's norm
_ROWWISE_EXACT: dict[tuple, bool] = {}


def _rowwise_norm_is_exact(rows: torch.Tensor, draws: int = 4) -> bool:
    """Whether the 2-norms of ``rows``' rows taken as one reduction equal, bit for bit, each
    row's norm taken alone (a copy of it, as a solo run's gradient is its own allocation),
    on random values spanning many orders of magnitude, ``draws`` times."""
    key = (*rows.shape, rows.dtype, rows.device)
    if key not in _ROWWISE_EXACT:
        gen, exact = torch.Generator().manual_seed(0), True
        for _ in range(draws):
            scale = torch.exp(3 * torch.randn(rows.shape, generator=gen, dtype=rows.dtype))
            x = (torch.randn(rows.shape, generator=gen, dtype=rows.dtype) * scale).to(
                rows.device)
            alone = torch.stack([torch.linalg.vector_norm(row.clone(), 2.0) for row in x])
            exact = exact and torch.equal(torch.linalg.vector_norm(x, 2.0, dim=1), alone)
        _ROWWISE_EXACT[key] = exact
    return _ROWWISE_EXACT[key]
