"""Stacked members: can K networks in one set of stacked tensors reproduce K solo networks
bit for bit, and how much faster are they? (The question the populations issue turns on.)

A population trains K members of one task together: each layer's weights become one tensor
``[K, out, in]`` and one batched matrix product (``torch.baddbmm``) serves every member.
Member k can end exactly where the same trial run alone ends only if every kernel gives
member k's slice the bits the solo ``nn.Linear`` gives it. This bench builds K solo MLPs
(``rltasks.nets.mlp``, 4 -> 64 -> 64 -> 2, tanh, the PPO CartPole actor) and their stacked
copy, runs a forward and a backward of a squared loss on every member's own batch, and
prints which results are bit-identical to the solo ones:

- the forward, with the stacked weights laid out ``[K, in, out]`` (the natural ``bmm``
  layout) and ``[K, out, in]`` (``nn.Linear``'s own, used through a transposed view);
- the gradients of autograd's ``baddbmm`` backward, and of ``rltasks.nets.StackedLinear``, whose
  backward computes what ``nn.Linear``'s does in the same order (``grad_out @ W``,
  ``grad_out^T @ x``, ``grad_out.sum(0)``) member by member in one ``bmm`` each;
- each member's global gradient norm (``clip_grad_norm_``'s, over the layers in order);

then times one forward and backward of the stacked MLP for K members against K solo
passes (one torch thread, ``--repeats`` runs, the median), at the batch sizes of a PPO
rollout forward (8) and minibatch update (256).

    .venv/bin/python bench/stacked.py [--members 1 4 16 64] [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from rltasks.nets import StackedLinear, mlp


def stacked_forward(x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]],
                    mode: str) -> torch.Tensor:
    """The stacked MLP: ``mode`` "in_out" (W [K, in, out], autograd's bmm), "out_in"
    (W [K, out, in] through a transposed view, autograd's bmm) or "mirror" (StackedLinear)."""
    h = x
    for i, (w, b) in enumerate(layers):
        if mode == "in_out":
            h = torch.baddbmm(b, h, w)
        elif mode == "out_in":
            h = torch.baddbmm(b, h, w.transpose(1, 2))
        else:
            h = StackedLinear.apply(h, w, b)
        if i < len(layers) - 1:
            h = torch.tanh(h)
    return h


def stack(solos: list[nn.Sequential], mode: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    linears = [[m for m in s if isinstance(m, nn.Linear)] for s in solos]
    out = []
    for layer in zip(*linears, strict=True):
        w = torch.stack([lin.weight.detach() for lin in layer])
        w = w.transpose(1, 2).contiguous() if mode == "in_out" else w
        b = torch.stack([lin.bias.detach()[None] for lin in layer])
        out.append((w.requires_grad_(), b.requires_grad_()))
    return out


def exactness(k_members: int, batch: int, seed: int = 0) -> dict[str, bool]:
    """Which stacked results equal the solo ones bit for bit, for each layout."""
    torch.manual_seed(seed)
    solos = [mlp(4, [64, 64], 2) for _ in range(k_members)]
    x, target = torch.randn(k_members, batch, 4), torch.randn(k_members, batch, 2)
    solo_out, solo_grads, solo_norms = [], [], []
    for k, s in enumerate(solos):
        out = s(x[k])
        ((out - target[k]) ** 2).mean().backward()
        solo_out.append(out.detach())
        solo_grads.append([p.grad for p in s.parameters()])
        solo_norms.append(nn.utils.clip_grad_norm_(s.parameters(), float("inf")))
    result = {}
    for mode in ("in_out", "out_in", "mirror"):
        layers = stack(solos, mode)
        out = stacked_forward(x, layers, mode)
        ((out - target) ** 2).mean(dim=(1, 2)).sum().backward()
        grads = [[t for w, b in layers
                  for t in ((w.grad[k].T if mode == "in_out" else w.grad[k]), b.grad[k, 0])]
                 for k in range(k_members)]
        norms = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(t.grad.flatten(1), dim=1)
             for w, b in layers for t in (w, b)], 1), dim=1)
        result[f"{mode}: forward"] = all(torch.equal(out[k].detach(), solo_out[k])
                                         for k in range(k_members))
        result[f"{mode}: gradients"] = all(
            torch.equal(a, b) for k in range(k_members)
            for a, b in zip(grads[k], solo_grads[k], strict=True))
        result[f"{mode}: grad norms"] = all(torch.equal(norms[k], solo_norms[k])
                                            for k in range(k_members))
    return result


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs (after 10 warm-up runs)."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(k_members: int, batch: int, repeats: int) -> tuple[float, float]:
    """(K solo passes, one stacked pass) in seconds: forward and backward of the loss."""
    solos = [mlp(4, [64, 64], 2) for _ in range(k_members)]
    layers = stack(solos, "mirror")
    x, target = torch.randn(k_members, batch, 4), torch.randn(k_members, batch, 2)

    def solo() -> None:
        for k, s in enumerate(solos):
            ((s(x[k]) - target[k]) ** 2).mean().backward()

    def stacked() -> None:
        ((stacked_forward(x, layers, "mirror") - target) ** 2).mean(dim=(1, 2)).sum().backward()

    return timed(solo, repeats), timed(stacked, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for i, (k, batch) in enumerate((k, b) for k in (2, 3, 16) for b in (8, 256)):
        row = exactness(k, batch)
        if not i:
            print("| K | batch | " + " | ".join(row) + " |\n| ---: | ---: |"
                  + " --- |" * len(row))
        print(f"| {k} | {batch} | " + " | ".join("yes" if v else "NO" for v in row.values())
              + " |", flush=True)
    print("\n| K | batch | K solo forward+backward, us | stacked, us | speed-up |\n"
          "| ---: | ---: | ---: | ---: | ---: |")
    for k in args.members:
        for batch in (8, 256):
            solo, stacked = speed(k, batch, args.repeats)
            print(f"| {k} | {batch} | {solo * 1e6:.0f} | {stacked * 1e6:.0f} | "
                  f"{solo / stacked:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
