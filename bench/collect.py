"""Env collection: sync versus async (and native) vectorization, steps per second.

    python bench/collect.py                    # CartPole and a 1 ms-per-step env, 8 envs
    python bench/collect.py --num-envs 4 8 16 --busy-ms 0.2 1 5

Each row drives ``rltasks.envs.VecLoader`` (the loader every task uses) with random actions
and counts env steps per second, summed over the envs, after a warm-up; the median of
``--repeats`` timings. ``vs sync`` is the ratio to the sync loader on the same env and number
of envs, measured in the same process. Two envs:

- ``CartPole-v1``: a step costs microseconds, so whatever moves data between processes
  (``async``: pipes, shared memory, one round trip per step) dominates; gymnasium's
  numpy-vectorized CartPole (``native``) steps all envs in one call.
- ``BusyCartPole-v1``: CartPole wrapped to spend ``--busy-ms`` of CPU time per step, like a
  physics simulator; ``async`` runs the envs in parallel processes, up to the number of
  cores.

What to take from it: ``--vectorization async`` pays when a step costs more than the round
trip (tens of microseconds) and there are idle cores; on cheap envs keep ``auto``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import gymnasium as gym
import numpy as np

from rltasks.envs import VecLoader

BUSY_ID = "rltasks-bench/BusyCartPole-v1"


class BusyWrapper(gym.Wrapper):
    """Spend ``busy_ms`` of this thread's CPU time in every step (a stand-in for physics)."""

    def __init__(self, env: gym.Env, busy_ms: float) -> None:
        super().__init__(env)
        self.busy = busy_ms / 1000.0

    def step(self, action):
        result = self.env.step(action)
        end = time.thread_time() + self.busy
        while time.thread_time() < end:
            pass
        return result


def make_busy(busy_ms: float = 1.0, **kwargs) -> gym.Env:
    return BusyWrapper(gym.make("CartPole-v1", **kwargs), busy_ms)


def register() -> None:
    if BUSY_ID not in gym.registry:
        gym.register(BUSY_ID, entry_point=make_busy, max_episode_steps=500)


def steps_per_second(env_id: str, vectorization: str, num_envs: int, steps: int,
                     repeats: int, env_kwargs: dict | None = None) -> float:
    """Median env steps per second (summed over envs) of ``repeats`` timings."""
    loader = VecLoader(env_id, num_envs, vectorization, env_kwargs=env_kwargs)
    try:
        rng = np.random.default_rng(0)
        actions = rng.integers(0, 2, size=(steps, num_envs))
        loader.reset(0)
        for a in actions[: max(steps // 10, 5)]:  # warm-up: processes, caches, allocators
            loader.step(a)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for a in actions:
                loader.step(a)
            rates.append(steps * num_envs / (time.perf_counter() - start))
        return statistics.median(rates)
    finally:
        loader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[8])
    parser.add_argument("--busy-ms", type=float, nargs="+", default=[1.0],
                        help="CPU milliseconds per step of the expensive env")
    parser.add_argument("--steps", type=int, default=0,
                        help="vector steps per timing (default: about 1 s of sync work)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    register()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, gymnasium {gym.__version__}")
    print(f"{'env':<28} {'num_envs':>8} {'vectorization':>13} {'steps/s':>10} {'vs sync':>8}")
    cases = [("CartPole-v1", None, ["sync", "async", "native"])]
    cases += [(BUSY_ID, {"busy_ms": ms}, ["sync", "async"]) for ms in args.busy_ms]
    for env_id, kwargs, modes in cases:
        label = env_id.split("/")[-1] + (f" {kwargs['busy_ms']:g} ms" if kwargs else "")
        for num_envs in args.num_envs:
            steps = args.steps or (
                max(50, int(1000 / (kwargs["busy_ms"] * num_envs))) if kwargs else 5000)
            base = None
            for mode in modes:
                rate = steps_per_second(env_id, mode, num_envs, steps, args.repeats, kwargs)
                base = base or rate
                print(f"{label:<28} {num_envs:>8} {mode:>13} {rate:>10.0f} {rate / base:>7.2f}x",
                      flush=True)


if __name__ == "__main__":
    main()
