"""Populations (issue 16): K members trained in one lockstep against the same K trained one
after the other, in this process, on one torch thread.

For K in ``--members`` this builds K PPO (A2C, REINFORCE or DQN) tasks on CartPole-v1 that
differ in seed and lr (the task's CartPole defaults otherwise), trains them ``--epochs``
epochs solo (one after the other) and as one ``rltasks.population.Population``, checks that
every member ends with the bits of its solo run, and prints the aggregate env steps per
second of both and their ratio (the issue's targets: >= 3x at K = 16 for PPO, >= 5x for
DQN). The per-shape checks of ``nets.stacked_linear`` run in the population's first epoch,
inside the timing, as in a real run. A second population runs with its members' envs
stepped apart (``rltasks.envs.StepAsOne`` off): what stepping them as one vector env gains.

    .venv/bin/python bench/population.py [--algo ppo] [--members 1 4 16] [--epochs 3]
        [--same-lr]

``--population-only`` times the population alone (its first epoch untimed), for
``bench/same_time.sh``, which runs it for two revisions at once. ``--same-lr`` gives every
member one lr (they differ in seed only, as ``--seeds N`` trains
them), where Adam members update in one fused call (``optim.step_together``).

``--update-breakdown`` prints instead how a solo PPO CartPole update minibatch splits: its
whole time against that of its two networks' forward and backward alone (what stacking
cannot shrink below the stacked products' own cost), and ``torch.tanh`` of one 256x64 block
against ``torch.sigmoid``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import state_diffs  # noqa: E402  (the tests' state comparison)
from stacked import timed as median_seconds  # noqa: E402  (bench/stacked.py's timer)

import rltasks  # noqa: E402
from rltasks.envs import StepAsOne  # noqa: E402
from rltasks.population import Population  # noqa: E402


def members(algo: str, k: int, steps: int, same_lr: bool = False) -> list:
    return [rltasks.make_task(algo, env="CartPole-v1", seed=s, steps_per_epoch=steps)
            .init(lr=3e-4 * (1 + (0 if same_lr else s) / 4)) for s in range(k)]


def timed(algo: str, k: int, epochs: int, steps: int, same_lr: bool = False
          ) -> tuple[float, float, float, bool]:
    """(solo seconds, population seconds, population seconds with its members' envs stepped
    apart, whether every member of both populations equals its solo run)."""
    solos = members(algo, k, steps, same_lr)
    start = time.perf_counter()
    for task in solos:
        task.fit(epochs)
    solo = time.perf_counter() - start
    seconds, same = [], True
    for apart in (False, True):
        pop = Population(members(algo, k, steps, same_lr))
        start = time.perf_counter()
        with envs_apart(apart):
            pop.fit(epochs)
        seconds.append(time.perf_counter() - start)
        same = same and all(not state_diffs(a.state_dict(), b.state_dict())
                            for a, b in zip(solos, pop.members, strict=True))
        for task in pop.members:
            task.close()
    for task in solos:
        task.close()
    return solo, seconds[0], seconds[1], same


@contextlib.contextmanager
def envs_apart(apart: bool) -> Iterator[None]:
    """With ``apart``, ``StepAsOne`` steps nothing: each member's envs step alone, as
    before 2026-12-07 (what stepping them as one gains)."""
    real = StepAsOne.step
    if apart:
        StepAsOne.step = lambda self, actions: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        StepAsOne.step = real  # type: ignore[method-assign]


def population_only(algo: str, k: int, epochs: int, steps: int, same_lr: bool) -> None:
    """The population alone: its first epoch untimed (the per-shape checks, the stacked
    storage), then the aggregate env steps per second of the rest (what
    ``bench/same_time.sh`` compares between two revisions)."""
    pop = Population(members(algo, k, steps, same_lr))
    pop.fit(1)
    start = time.perf_counter()
    pop.fit(epochs)
    seconds = time.perf_counter() - start
    print(f"{algo} K = {k}, epochs 2-{epochs}: {k * (epochs - 1) * steps / seconds:,.0f} env "
          f"steps/s", flush=True)
    for task in pop.members:
        task.close()


def update_breakdown() -> None:
    task = rltasks.make_task("ppo", env="CartPole-v1", seed=0, steps_per_epoch=4096).init()
    task.fit(1)
    batch = task.collect(task.hp["n_steps"])
    minibatches = task.hp["update_epochs"] * max(1, len(batch["adv"]) // task.hp["batch_size"])
    whole = median_seconds(lambda: task.update(batch), 5) * 1e6 / minibatches
    x = torch.randn(task.hp["batch_size"], 4)

    def nets() -> None:
        (task.actor(x).sum() + task.critic(x).sum()).backward()

    alone = median_seconds(nets, 200) * 1e6
    block = torch.randn(256, 64)
    print(f"solo PPO CartPole update minibatch: {whole:,.0f} us; its actor and critic forward "
          f"and backward alone: {alone:,.0f} us ({alone / whole:.0%}); tanh of 256x64 "
          f"{median_seconds(lambda: torch.tanh(block), 200) * 1e6:.0f} us, sigmoid "
          f"{median_seconds(lambda: torch.sigmoid(block), 200) * 1e6:.0f} us")
    task.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", default="ppo", choices=("ppo", "a2c", "pg", "dqn"))
    parser.add_argument("--members", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=4096)
    parser.add_argument("--same-lr", action="store_true",
                        help="members differ in seed only, as --seeds trains them")
    parser.add_argument("--population-only", action="store_true",
                        help="time the population alone, its first epoch untimed")
    parser.add_argument("--update-breakdown", action="store_true",
                        help="time a solo PPO update minibatch's parts instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.update_breakdown:
        update_breakdown()
        return
    if args.population_only:
        for k in args.members:
            population_only(args.algo, k, args.epochs, args.steps_per_epoch, args.same_lr)
        return
    print(f"{args.algo} on CartPole-v1, {args.epochs} epochs of {args.steps_per_epoch} env "
          f"steps per member, the task's CartPole defaults, one torch thread, "
          f"{'one lr for all (seeds differ)' if args.same_lr else 'each member its own lr'}")
    print("| members | solo, one after the other (env steps/s) | population (env steps/s) "
          "| ratio | population, envs stepped apart | ratio | members == solo |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for k in args.members:
        solo, together, apart, same = timed(args.algo, k, args.epochs, args.steps_per_epoch,
                                            args.same_lr)
        steps = k * args.epochs * args.steps_per_epoch
        print(f"| {k} | {steps / solo:,.0f} | {steps / together:,.0f} | "
              f"{solo / together:.2f}x | {steps / apart:,.0f} | {solo / apart:.2f}x | "
              f"{'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
