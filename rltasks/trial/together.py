"""``--seeds N`` as one population: the seeds of one configuration trained in this process.

Where the task can join a population (ppo, a2c, pg, dqn on vector observations:
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
from pathlib import Path
from typing import Any

from rltasks.population import CannotJoin, Population, check_members, joins
from rltasks.task import NonFiniteError
from rltasks.tasks import REGISTRY
from rltasks.trial.files import report_to_orion, seed_dir, write_results
from rltasks.trial.options import default_workdir
from rltasks.trial.preempt import Preempted, StopSignals
from rltasks.trial.prepare import Log, Prepared, finish, prepare, said_once, stderr_log
from rltasks.trial.seeds import SEED_STATISTICS, mean_results
from rltasks.trial.workdir import WorkdirLock


def joins_population(task_name: str, options: dict[str, Any]) -> bool:
    """Whether ``--seeds`` trains this task's seeds as one population (the env is checked
    when the members are built: an image env falls back to processes)."""
    return not options["seed_processes"] and joins(REGISTRY[task_name])


def run_together(task_name: str, options: dict[str, Any], hparams: dict[str, Any],
                 log: Log | None = None) -> dict[str, Any] | None:
    """Train seeds ``seed .. seed+N-1`` as one population (module docstring); their mean
    results, or None when the env cannot join (nothing trained: train them as processes)."""
    log = log or stderr_log
    workdir = default_workdir(task_name, options)
    seeds = [options["seed"] + i for i in range(options["seeds"])]
    each = [{**options, "seed": seed, "seeds": 1, "workdir": seed_dir(workdir, seed)}
            for seed in seeds]
    with StopSignals(log) as signals, contextlib.ExitStack() as locks:
        locks.enter_context(WorkdirLock(workdir, log=log))
        trials: list[Prepared] = []
        notes = said_once(log)  # the members' envs' notes, once for all
        try:
            for one in each:
                trials.append(prepare_locked(locks, task_name, one, hparams, notes, signals,
                                             label=f"{task_name} seed {one['seed']}"))
                check_members([trials[0].task])  # an image env: processes after one seed
        except CannotJoin as err:
            log(f"--seeds: {err}; one process per seed instead")
            _close(trials)
            return None
        except BaseException:
            _close(trials)
            raise
        outcomes = train_population(trials, each, signals, log, f"seeds {seeds}")
    failed = [k for k, outcome in enumerate(outcomes) if isinstance(outcome, BaseException)]
    if failed:
        first = outcomes[failed[0]]
        error = NonFiniteError if isinstance(first, NonFiniteError) else ValueError
        raise error(f"seed(s) {[seeds[k] for k in failed]} of --seeds {len(seeds)} failed "
                    f"({type(first).__name__}: {first}); the others trained on; see "
                    f"{seed_dir(workdir, seeds[failed[0]])}")
    results = {**mean_results(outcomes, task_name, options, workdir),
               "seeds_trained": "as one population"}
    write_results(workdir, results)
    report_to_orion(results, extra=SEED_STATISTICS)
    return results


def prepare_locked(locks: contextlib.ExitStack, task_name: str, options: dict[str, Any],
                   hparams: dict[str, Any], log: Log, signals: StopSignals,
                   label: str | None = None) -> Prepared:
    """``prepare`` a trial in ``options['workdir']``, whose lock ``locks`` then holds."""
    workdir = Path(options["workdir"])
    locks.enter_context(WorkdirLock(workdir, log=log))
    return prepare(task_name, options, hparams, log, workdir, signals, label=label)


def train_population(trials: list[Prepared], options: list[dict[str, Any]],
                     signals: StopSignals, log: Log, what: str
                     ) -> list[dict[str, Any] | BaseException]:
    """Fit prepared trials as one population to their ``epochs`` (one for all), then
    evaluate each and write its results: each trial's results, or the exception that ended
    it (the others train on). A signal stops every member at an epoch end (checkpointed)
    and raises ``Preempted`` (its message names them as ``what``: "seeds [0, 1]").
    Anything that ends the whole population propagates, every trial closed."""
    try:
        population = Population([t.task for t in trials])
        if signals.received is None:
            population.fit(options[0]["epochs"], epoch_end=signals.held)
    except BaseException:
        _close(trials)
        raise
    if signals.received is not None:
        _close(trials)
        epochs = sorted({m.epoch for m in population.members})
        raise Preempted(signals.received, f"{what} stopped at an epoch end "
                                          f"(epoch {', '.join(map(str, epochs))})")
    outcomes: list[dict[str, Any] | BaseException] = []
    for k, (trial, one) in enumerate(zip(trials, options, strict=True)):
        if k in population.errors:
            trial.close()
            outcomes.append(population.errors[k])
            continue
        try:
            outcomes.append(finish(trial, one, log))
        except Exception as err:  # its evaluation failed: the others still finish
            outcomes.append(err)
    return outcomes


def _close(trials: list[Prepared]) -> None:
    for trial in trials:
        trial.close()
