#!/usr/bin/env python
"""Compare Orion's search algorithms on RL tasks: `python scripts/benchmark.py`.

Random search, TPE and ASHA (by default) each tune ``--space`` (default ``lr`` and ``gamma``)
of every ``--tasks`` task on ``--env`` for ``--max-trials`` trials, ``--repetitions`` times,
and Orion's AverageResult (best objective so far against trials) and AverageRank (each
algorithm's rank) assessments compare them. The objective is ``-return_mean`` after
``--epochs`` epochs; ASHA searches ``epochs`` as a fidelity, ``fidelity(1, EPOCHS, 2)``.

Writes the assessment figures to ``--out`` (default ``runs/benchmark``) as HTML (and PNG) and
keeps the benchmark in its own PickledDB, ``--db`` (default ``<out>/orion.pkl``), never the
user's Orion database. Rerunning the same command resumes: finished experiments are kept,
unfinished ones get their remaining trials; other settings under the same ``--name`` in the
same database are refused. A cheap run::

    python scripts/benchmark.py --epochs 2 --steps-per-epoch 512 --max-trials 4 --repetitions 1
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

ALGORITHMS = ("random", "tpe", "asha", "hyperband")


def algorithm(name: str, seed: int, max_trials: int) -> dict[str, Any]:
    """Orion configuration of algorithm ``name``: always seeded (Orion 0.2.7's Hyperband
    crashes without a seed; a seeded benchmark reruns the same), and TPE starts modelling
    after half the budget (its default 20 random points would leave nothing to compare)."""
    config: dict[str, Any] = {"seed": seed}
    if name == "tpe":
        config["n_initial_points"] = max(2, min(20, max_trials // 2))
    return {name: config}


def summary(bench: Any) -> str:
    """A table of each task and algorithm: experiments, trials, and the best return of each
    experiment averaged over the repetitions (assessments share experiments: counted once)."""
    rows: dict[tuple[str, str], list[tuple[int, float | None]]] = {}
    seen: set[str] = set()
    for study in bench.studies:
        for _, exp in study.get_experiments():
            if exp.name in seen:
                continue
            seen.add(exp.name)
            done = [t.objective.value for t in exp.fetch_trials_by_status("completed")
                    if t.objective is not None]
            algo = next(iter(exp.configuration["algorithm"]))
            rows.setdefault((study.task_name, algo), []).append(
                (len(exp.fetch_trials()), -min(done) if done else None))
    lines = [f"{'task':<24} {'algorithm':<10} {'experiments':>11} {'trials':>7} "
             f"{'best return (mean)':>19}"]
    for (task, algo), exps in rows.items():
        best = [b for _, b in exps if b is not None]
        mean = f"{sum(best) / len(best):.1f}" if best else "-"
        lines.append(f"{task:<24} {algo:<10} {len(exps):>11} {sum(n for n, _ in exps):>7} "
                     f"{mean:>19}")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["ppo", "dqn"], help="rltasks tasks")
    parser.add_argument("--env", default="CartPole-v1", help="gymnasium env id")
    parser.add_argument("--algorithms", nargs="+", default=["random", "tpe", "asha"],
                        choices=ALGORITHMS, help="Orion search algorithms to compare")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of a full trial")
    parser.add_argument("--steps-per-epoch", "--steps_per_epoch", dest="steps_per_epoch",
                        type=int, default=2048, help="env steps per epoch")
    parser.add_argument("--num-envs", "--num_envs", dest="num_envs", type=int, default=None,
                        help="parallel envs (default: the task's)")
    parser.add_argument("--max-trials", "--max_trials", dest="max_trials", type=int,
                        default=12, help="trials per experiment")
    parser.add_argument("--repetitions", type=int, default=2,
                        help="experiments per algorithm and task, averaged by the assessments")
    parser.add_argument("--eval-episodes", "--eval_episodes", dest="eval_episodes", type=int,
                        default=5, help="episodes of each trial's final evaluation")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the tasks and of the algorithms (repetition i: seed + i)")
    parser.add_argument("--space", nargs="+", default=None,
                        help="hyperparameters searched, with the tasks' priors; 'all' for the "
                             "whole space (default: lr gamma)")
    parser.add_argument("--name", default="rltasks", help="benchmark name in the database")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark"),
                        help="folder of the figures (and of the default database)")
    parser.add_argument("--db", type=Path, default=None,
                        help="PickledDB file of the benchmark (default: <out>/orion.pkl)")
    parser.add_argument("--format", nargs="+", default=["html", "png"], choices=["html", "png"],
                        help="figure formats (PNG through kaleido, else matplotlib)")
    parser.add_argument("--workers", type=int, default=1,
                        help="trials run in parallel (processes; Orion may then run a few "
                             "past --max-trials); 1: one after the other in this process")
    args = parser.parse_args(argv)
    for flag in ("epochs", "steps_per_epoch", "max_trials", "repetitions", "eval_episodes",
                 "workers"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from rltasks.orion.benchmark import RLBenchmarkTask, get_or_create_benchmark, save_figures

    with warnings.catch_warnings():  # orion warns about optional extras (profet)
        warnings.simplefilter("ignore")
        from orion.benchmark.assessment import AverageRank, AverageResult
        from orion.executor.base import executor_factory

    db = (args.db or args.out / "orion.pkl").absolute()
    storage = {"type": "legacy", "database": {"type": "pickleddb", "host": str(db)}}
    space: Any = None
    if args.space == ["all"]:
        space = "all"
    elif args.space:
        space = args.space
    executor = executor_factory.create("poolexecutor", n_workers=args.workers) \
        if args.workers > 1 else None
    try:
        tasks = [RLBenchmarkTask(task=task, env=args.env, epochs=args.epochs,
                                 max_trials=args.max_trials, steps_per_epoch=args.steps_per_epoch,
                                 num_envs=args.num_envs, seed=args.seed,
                                 eval_episodes=args.eval_episodes, space=space)
                 for task in args.tasks]
        for task in tasks:
            task.get_search_space()  # a bad --space name fails here, before any training
        db.parent.mkdir(parents=True, exist_ok=True)
        bench = get_or_create_benchmark(
            storage, args.name,
            algorithms=[algorithm(a, args.seed, args.max_trials) for a in args.algorithms],
            targets=[{"assess": [AverageResult(args.repetitions), AverageRank(args.repetitions)],
                      "task": tasks}],
            executor=executor, strict=True)
    except ValueError as err:
        print(f"benchmark: {err}", file=sys.stderr)
        return 2
    print(f"benchmark {args.name!r} in {db}: {', '.join(args.algorithms)} on "
          f"{', '.join(t.name for t in tasks)}", flush=True)
    bench.process(n_workers=args.workers)
    print(summary(bench))
    figures = bench.analysis()
    for fmt in args.format:
        try:
            written = save_figures(figures, args.out, [fmt])
        except ValueError as err:  # PNG without kaleido's Chrome nor matplotlib
            print(f"benchmark: no {fmt} figures: {err}", file=sys.stderr)
            continue
        for path in written:
            print(path)
    if executor is not None:
        executor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
