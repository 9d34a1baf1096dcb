"""Cost of one optimizer step: ``rltasks.optim`` against ``torch.optim``, in the same run.

The parameter set is PPO's on CartPole: a 2x64 tanh MLP actor (4 -> 64 -> 64 -> 2) and
critic (4 -> 64 -> 64 -> 1), 12 tensors, 4.8k floats, one torch thread (as rltasks runs).
Two figures per optimizer, in microseconds:

- **step**: ``opt.step()`` alone, gradients set once and left in place;
- **update**: one PPO-sized minibatch update as the tasks do it: ``zero_grad()``, forward
  of a 256-row batch through both MLPs, ``backward``, ``clip_grad_norm_(0.5)``, ``step()``.

Baselines: ``torch.optim.Adam(fused=True)`` (what rltasks used before) and the default
``torch.optim.Adam`` (the per-tensor for-loop on CPU), then each other optimizer against its
``torch.optim`` counterpart with the same settings. Implementations are timed in interleaved
rounds; the median round is reported and ratios are torch / ours (> 1: ours is faster).

    .venv/bin/python bench/optim_step.py [--steps 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from rltasks import optim

BATCH = 256


def mlp(out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, out))


def actor_critic() -> nn.ModuleDict:
    torch.manual_seed(0)
    return nn.ModuleDict({"actor": mlp(2), "critic": mlp(1)})


# label -> (ours or torch, builder(params)); rows are (ours, baselines...)
ADAM = {"lr": 3e-4, "eps": 1e-5}
ROWS: list[tuple[str, list[tuple[str, Callable]]]] = [
    ("adam", [("rltasks Adam (fused kernel)", lambda p: optim.Adam(p, **ADAM)),
              ("torch Adam(fused=True)", lambda p: torch.optim.Adam(p, **ADAM, fused=True)),
              ("torch Adam (default)", lambda p: torch.optim.Adam(p, **ADAM))]),
    ("adamw", [("rltasks AdamW", lambda p: optim.AdamW(p, **ADAM)),
               ("torch AdamW(fused=True)", lambda p: torch.optim.AdamW(p, **ADAM, fused=True))]),
    ("adamax", [("rltasks Adamax", lambda p: optim.Adamax(p, **ADAM)),
                ("torch Adamax (default)", lambda p: torch.optim.Adamax(p, **ADAM))]),
    ("sgd", [("rltasks SGD", lambda p: optim.SGD(p, lr=1e-3, momentum=0.9)),
             ("torch SGD (default)", lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9))]),
    ("rmsprop", [("rltasks RMSprop", lambda p: optim.RMSprop(p, lr=7e-4, eps=1e-5)),
                 ("torch RMSprop (default)",
                  lambda p: torch.optim.RMSprop(p, lr=7e-4, alpha=0.99, eps=1e-5))]),
]


def step_timer(build: Callable, steps: int) -> Callable[[], float]:
    """A callable timing ``steps`` bare ``step()`` calls, in microseconds per step."""
    net = actor_critic()
    params = list(net.parameters())
    gen = torch.Generator().manual_seed(1)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    opt = build(params)
    opt.step()  # state allocation and lazy imports happen outside the clock

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            opt.step()
        return (time.perf_counter() - start) / steps * 1e6
    return run


def update_timer(build: Callable, steps: int) -> Callable[[], float]:
    """A callable timing ``steps`` full minibatch updates, in microseconds per update."""
    net = actor_critic()
    params = list(net.parameters())
    gen = torch.Generator().manual_seed(1)
    obs, target = torch.randn(BATCH, 4, generator=gen), torch.randn(BATCH, generator=gen)
    opt = build(params)

    def update() -> None:
        opt.zero_grad(set_to_none=True)
        logits = net["actor"](obs)
        value = net["critic"](obs).squeeze(1)
        loss = -logits.log_softmax(1)[:, 0].mean() + 0.5 * ((value - target) ** 2).mean()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()

    update()

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            update()
        return (time.perf_counter() - start) / steps * 1e6
    return run


def measure(timers: list[Callable[[], float]], rounds: int) -> list[float]:
    """Median over interleaved rounds of each timer."""
    samples: list[list[float]] = [[] for _ in timers]
    for _ in range(rounds):
        for timer, sample in zip(timers, samples, strict=True):
            sample.append(timer())
    return [statistics.median(s) for s in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("RLTASKS_THREADS", "1")))
    print(f"optimizer step on a 2x64 MLP actor+critic (12 tensors), {args.rounds} rounds of "
          f"{args.steps} steps, median round")
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, python "
          f"{platform.python_version()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch thread(s), load average {os.getloadavg()[0]:.2f}")
    print()
    print("| optimizer | implementation | step µs | torch/ours | update µs | torch/ours |")
    print("|---|---|---:|---:|---:|---:|")
    for name, impls in ROWS:
        steps = measure([step_timer(b, args.steps) for _, b in impls], args.rounds)
        updates = measure([update_timer(b, args.steps // 4) for _, b in impls], args.rounds)
        for (label, _), step_us, update_us in zip(impls, steps, updates, strict=True):
            ratio = "" if label.startswith("rltasks") else f"{step_us / steps[0]:.2f}x"
            uratio = "" if label.startswith("rltasks") else f"{update_us / updates[0]:.2f}x"
            print(f"| {name} | {label} | {step_us:.1f} | {ratio} | {update_us:.0f} | {uratio} |")


if __name__ == "__main__":
    main()
