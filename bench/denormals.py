"""What flushing subnormal floats to zero (``rltasks.device.cpu_numerics``) buys on the CPU.

Each case trains its task for the case's epochs at its defaults from the same seed twice, once with
subnormals kept (the IEEE default, as plain torch computes) and once flushed (as rltasks
trains), in alternating rounds; the median fit time of each is reported, and the ratio kept /
flushed (> 1: flushing is faster). A ReLU unit that stays off leaves its gradients at exactly
zero, and Adam's second moment of an old squared gradient, ``beta2 ** t * g**2``, falls below
1.2e-38 as training goes on: the longer the run, the larger the gain.

    .venv/bin/python bench/denormals.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from collections.abc import Iterator

import torch

import rltasks
import rltasks.task

#: (task, env, epochs, loader arguments)
CASES = [("dqn", "CartPole-v1", 2, {"steps_per_epoch": 10_000}),
         ("sac", "Pendulum-v1", 3, {"steps_per_epoch": 2_000}),
         ("td3", "Pendulum-v1", 3, {"steps_per_epoch": 2_000}),
         ("ppo", "CartPole-v1", 4, {})]


@contextlib.contextmanager
def numerics(flush: bool) -> Iterator[None]:
    """``rltasks.device.cpu_numerics`` with subnormals flushed or kept."""
    torch.set_flush_denormal(flush)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def fit_seconds(name: str, env: str, epochs: int, loader: dict,
                flush: bool) -> tuple[float, int]:
    """Wall time and env steps of ``fit(epochs)`` with subnormals flushed or kept."""
    task = rltasks.make_task(name, env, seed=0, **loader)
    task.init()
    keep = rltasks.task.cpu_numerics
    rltasks.task.cpu_numerics = lambda: numerics(flush)
    try:
        start = time.perf_counter()
        task.fit(epochs)
        return time.perf_counter() - start, task.env_steps
    finally:
        rltasks.task.cpu_numerics = keep
        task.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"1 thread, median of {args.rounds} rounds")
    print(f"{'task':<5} {'env':<13} {'steps':>7} {'kept s':>8} {'flushed s':>10} "
          f"{'kept/flushed':>13}")
    for name, env, epochs, loader in CASES:
        kept, flushed = [], []
        for _ in range(args.rounds):
            seconds, steps = fit_seconds(name, env, epochs, loader, False)
            kept.append(seconds)
            flushed.append(fit_seconds(name, env, epochs, loader, True)[0])
        k, f = statistics.median(kept), statistics.median(flushed)
        print(f"{name:<5} {env:<13} {steps:7d} {k:8.1f} {f:10.1f} {k / f:13.2f}")


if __name__ == "__main__":
    main()
