"""``--seeds N`` as one population: the seeds of one configuration trained in this process.

Where the task can join a population (ppo, a2c, pg on vector observations:
``rltasks.population``), each seed is prepared exactly as a solo trial in
``WORKDIR/seed-K`` (its lock, its resume from its own checkpoints, its observers: checkpoints,
``metrics.jsonl``, early stop, pre-emption), the seeds train together in lockstep, and each
is evaluated and writes its own ``results.json``; the trial reports their mean, as the
process path (``rltasks.trial.seeds``) does. Member k ends with the bits of seed k trained
alone, so a seed's working dir is a solo trial's: ``rltasks eval``, a solo rerun or a solo
resume work on it. ``--seed-processes`` (or a task that cannot join) trains one process per
seed instead.
"""

from __future__ import annotations

import contextlib
from typing import Any

from rltasks.population import CannotJoin, Population, check_members
from rltasks.task import NonFiniteError
from rltasks.tasks import REGISTRY
from rltasks.tasks.onpolicy import OnPolicyTask
from rltasks.trial.files import report_to_orion, write_results
from rltasks.trial.options import default_workdir
from rltasks.trial.preempt import Preempted, StopSignals
from rltasks.trial.prepare import Log, Prepared, finish, prepare, stderr_log
from rltasks.trial.seeds import SEED_STATISTICS, mean_results
from rltasks.trial.workdir import WorkdirLock


def joins_population(task_name: str, options: dict[str, Any]) -> bool:
    """Whether ``--seeds`` trains this task's seeds as one population (the env is checked
    when the members are built: an image env falls back to processes)."""
    return not options["seed_processes"] and issubclass(REGISTRY[task_name], OnPolicyTask)


def run_together(task_name: str, options: dict[str, Any], hparams: dict[str, Any],
                 log: Log | None = None) -> dict[str, Any] | None:
    """Train seeds ``seed .. seed+N-1`` as one population (module docstring); their mean
    results, or None when the env cannot join (nothing trained: train them as processes)."""
    log = log or stderr_log
    workdir = default_workdir(task_name, options)
    seeds = [options["seed"] + i for i in range(options["seeds"])]
    with StopSignals(log) as signals, contextlib.ExitStack() as locks:
        locks.enter_context(WorkdirLock(workdir, log=log))
        trials: list[Prepared] = []
        try:
            for seed in seeds:
                one = {**options, "seed": seed, "seeds": 1, "workdir": workdir / f"seed-{seed}"}
                locks.enter_context(WorkdirLock(one["workdir"], log=log))
                trials.append(prepare(task_name, one, hparams, log, one["workdir"], signals,
                                      label=f"{task_name} seed {seed}"))
                check_members([trials[0].task])  # an image env: processes after one seed
            population = Population([t.task for t in trials])
        except CannotJoin as err:
            log(f"--seeds: {err}; one process per seed instead")
            _close(trials)
            return None
        except BaseException:
            _close(trials)
            raise
        per_seed = _train(population, trials, seeds, options, signals, log)
    results = {**mean_results(per_seed, task_name, options, workdir),
               "seeds_trained": "as one population"}
    write_results(workdir, results)
    report_to_orion(results, extra=SEED_STATISTICS)
    return results


def _train(population: Population, trials: list[Prepared], seeds: list[int],
           options: dict[str, Any], signals: StopSignals, log: Log) -> list[dict[str, Any]]:
    """Fit the population, then evaluate each seed and write its results. A signal stops
    every seed at an epoch end (checkpointed); a failed seed leaves the others to finish and
    write their results, then raises, as the process path does."""
    try:
        if signals.received is None:
            population.fit(options["epochs"])
    except BaseException:
        _close(trials)
        raise
    if signals.received is not None:
        _close(trials)
        epochs = sorted({m.epoch for m in population.members})
        raise Preempted(signals.received, f"seeds {seeds} stopped at an epoch end (epoch "
                                          f"{', '.join(map(str, epochs))})")
    _close([trials[k] for k in population.errors])
    per_seed = [finish(trial, {**options, "seed": seed}, log)
                for k, (trial, seed) in enumerate(zip(trials, seeds, strict=True))
                if k not in population.errors]
    if population.errors:
        failed = sorted(seeds[k] for k in population.errors)
        first = population.errors[min(population.errors)]
        error = NonFiniteError if isinstance(first, NonFiniteError) else ValueError
        raise error(f"seed(s) {failed} of --seeds {len(seeds)} failed ({type(first).__name__}: "
                    f"{first}); the others trained on; see {trials[0].workdir.parent}"
                    f"/seed-{failed[0]}")
    return per_seed


def _close(trials: list[Prepared]) -> None:
    for trial in trials:
        trial.close()
