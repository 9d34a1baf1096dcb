"""Orion benchmark suites of RL tasks: any (task, env, epochs) as an Orion benchmark problem.

An :class:`RLBenchmarkTask` is an ``orion.benchmark.task.base.BenchmarkTask``: Orion's
assessments (``AverageResult``, ``AverageRank``, ...) compare search algorithms on it the way
they do on ``RosenBrock`` or ``Branin``::

    from orion.benchmark.assessment import AverageRank, AverageResult
    from rltasks.orion.benchmark import RLBenchmarkTask, get_or_create_benchmark

    storage = {"type": "legacy", "database": {"type": "pickleddb", "host": "bench.pkl"}}
    ppo = RLBenchmarkTask(task="ppo", env="CartPole-v1", epochs=8, max_trials=20)
    dqn = RLBenchmarkTask(task="dqn", env="CartPole-v1", epochs=8, max_trials=20)
    bench = get_or_create_benchmark(
        storage, "cartpole",
        algorithms=[{"random": {"seed": 1}}, {"tpe": {"seed": 1}}, {"asha": {"seed": 1}}],
        targets=[{"assess": [AverageResult(3), AverageRank(3)], "task": [ppo, dqn]}])
    bench.process()
    figures = bench.analysis()   # {"AverageResult": {"ppo_CartPole_v1": {"regrets": fig}}, ...}
    save_figures(figures, "runs/benchmark")

    again = get_or_create_benchmark(storage, "cartpole")   # another process: same benchmark

``RLBenchmarkTask`` also works with Orion's own ``benchmark_client.get_or_create_benchmark``
for one target (and reloads there in the process that defined the tasks); this module's
``get_or_create_benchmark`` is the one that keeps several targets and reloads anywhere.

A trial trains the task in-process through the public API (``rltasks.make_task``, ``init``,
``fit``, ``evaluate``) and reports ``-return_mean`` as the objective to minimise.

Orion 0.2.7 (its last release) loses parts of a benchmark of several RL tasks. Each workaround
below is applied from this module only, by subclassing; nothing of Orion is modified in place:

(a) Only the last target is stored, and only the last one is rebuilt:
    ``Benchmark.configuration`` (orion/benchmark/__init__.py:288) appends to the target list
    after its loop instead of inside it, and so does ``_resolve_db_config``
    (orion/benchmark/benchmark_client.py:136). Fixed by :class:`RLBenchmark.configuration` and
    this module's :func:`get_or_create_benchmark`, which store and rebuild every target.
(b) Tasks (and assessments) of the same class in one target overwrite each other: a target's
    tasks are stored as one dict keyed by the class name (``BenchmarkTask.configuration``,
    orion/benchmark/task/base.py:61, assessment/base.py:65 for assessments;
    ``Benchmark.configuration``, __init__.py:277-286), a study and its experiments are named
    after the class (``Study.__init__``, __init__.py:361-362; ``setup_experiments``,
    :387-397), and ``analysis()`` keys the figures by it (:171). Two
    tasks of one class then share experiments (Orion even branches them on the space conflict)
    and only one survives in the database. Fixed by giving every RL benchmark problem its own
    class, named after it (``ppo_CartPole_v1``; ``label=`` to choose): ``RLBenchmarkTask(...)``
    returns an instance of that subclass, created deterministically from the name, so the
    configuration key, the experiment names and the figure keys are unique and a fresh process
    rebuilds the class from the stored configuration. Duplicate names are refused (ValueError)
    instead of silently dropped.
(c) Orion's factories find a stored class by ``__name__`` (orion/core/utils/__init__.py:65)
    among the subclasses *already defined*, so a class created at run time is unknown to a new
    process: :func:`get_or_create_benchmark` creates the named classes before rebuilding.
(d) Repetitions of a seeded algorithm are identical copies: ``Study.setup_experiments``
    (__init__.py:379-410) gives every repetition the same algorithm configuration, and a seed
    is what makes a benchmark rerun the same (Hyperband even crashes without one: it builds
    its rng only for a seed, orion/algo/hyperband/hyperband.py:222, then reads it when its
    state is saved). :class:`RLStudy` adds the repetition index to an algorithm's ``seed`` so
    repetitions sample differently (repetition 0 keeps the given seed); an unseeded Hyperband
    is refused with a ValueError.
(e) ``get_or_create_benchmark`` never sets the benchmark's ``id`` (benchmark_client.py:62-76);
    this module's does.
(f) Not a bug but a cost that matters when a trial is an RL training: every assessment runs
    its own experiments (the name holds the assessment, __init__.py:387-397), so AverageResult
    and AverageRank of one task train every trial twice. :class:`RLStudy` names them without
    the assessment, so assessments share them, unless the assessment brings its own executors
    (ParallelAssessment). Repetition ``i`` of algorithm ``j`` is the same experiment for every
    such assessment of the task.
(g) Orion's client rebuilds a task with ``_get_task(name, **params)``
    (benchmark_client.py:106): a task parameter called ``name`` collides with it (TypeError),
    hence ``label=`` for the problem's name.
(h) An algorithm that cannot search a task's space (ASHA or Hyperband without a fidelity, an
    unknown hyperparameter) fails in Orion only after the benchmark is stored, and then on
    every reload; :func:`get_or_create_benchmark` tries each algorithm on each space first.
"""

from __future__ import annotations

import copy
import datetime
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import rltasks
from rltasks.hparams import flatten

with warnings.catch_warnings():  # orion warns about optional extras (profet) and pkg_resources
    warnings.simplefilter("ignore")
    from orion.algo.base import algo_factory
    from orion.benchmark import Benchmark, Study
    from orion.benchmark.assessment.base import BenchmarkAssessment, bench_assessment_factory
    from orion.benchmark.task.base import BenchmarkTask, bench_task_factory
    from orion.client import create_experiment
    from orion.core.io.database import DuplicateKeyError
    from orion.core.io.space_builder import SpaceBuilder
    from orion.executor.base import BaseExecutor, executor_factory
    from orion.storage.base import BaseStorageProtocol, setup_storage

__all__ = ["DEFAULT_SPACE", "RLBenchmark", "RLBenchmarkTask", "RLStudy", "get_or_create_benchmark",
           "save_figures", "task_class"]

log = logging.getLogger(__name__)

DEFAULT_SPACE: tuple[str, ...] = ("lr", "gamma")
"""Hyperparameters searched when ``space`` is not given, with the task's own priors: the two
every task has and that matter most. A benchmark compares search algorithms; a few dimensions
keep a budget of tens of trials meaningful. ``space="all"`` searches every hyperparameter
(``get_space(scope="all")``)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CLASSES: dict[str, type[RLBenchmarkTask]] = {}  # lower-case name -> class (keeps them alive)


def default_name(task: str, env: str) -> str:
    """The benchmark-problem name of ``task`` on ``env``: ``ppo_CartPole_v1``. Only letters,
    digits and underscores, so it is a class name and a database key everywhere."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{task}_{env}")


def task_class(name: str) -> type[RLBenchmarkTask]:
    """The subclass of :class:`RLBenchmarkTask` named ``name``, created on first use.

    Orion keys a task's configuration, its experiments and its figures by the class name
    (workaround (b) in the module docstring), so each benchmark problem has its own class. The
    same name always gives the same class; a name that differs only in case from another, or
    that is an Orion task's (``Branin``), is refused: Orion's factory looks names up
    case-insensitively.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"benchmark task name {name!r} must be letters, digits and underscores, "
                         f"not starting with a digit (e.g. 'ppo_CartPole_v1')")
    known = _CLASSES.get(name.lower())
    if known is not None:
        if known.__name__ != name:
            raise ValueError(f"benchmark task name {name!r} clashes with {known.__name__!r}: "
                             f"Orion looks classes up case-insensitively")
        return known
    others = {cls.__name__.lower(): cls for cls in bench_task_factory.get_classes().values()}
    if name.lower() in others:
        raise ValueError(f"benchmark task name {name!r} is taken by "
                         f"{others[name.lower()].__module__}.{others[name.lower()].__name__}")
    cls = type(name, (RLBenchmarkTask,), {
        "__module__": __name__, "__qualname__": name,
        "__doc__": f"RL benchmark problem {name!r} (see rltasks.orion.benchmark.RLBenchmarkTask)."})
    _CLASSES[name.lower()] = cls
    return cls


class RLBenchmarkTask(BenchmarkTask):
    """Train rltasks task ``task`` on gymnasium env ``env`` for ``epochs`` epochs: one Orion
    benchmark problem, whose objective is ``-return_mean`` of the final evaluation.

    - ``max_trials``: trials per experiment (Orion's budget for every algorithm).
    - ``steps_per_epoch``, ``num_envs``, ``seed``: ``rltasks.make_task`` arguments (None: the
      task's defaults). Every trial starts from the same seed, so two trials differ only by
      their hyperparameters.
    - ``eval_episodes``: episodes of the final deterministic evaluation.
    - ``space``: what is searched. None: :data:`DEFAULT_SPACE` (``lr`` and ``gamma``) with the
      task's priors; ``"all"``: every hyperparameter (``get_space(scope="all")``); a sequence
      of names (any of those): those, with the
      task's priors; a mapping name -> Orion prior string (``{"lr": "loguniform(1e-4, 1e-2)"}``),
      where a None prior means the task's own.
    - ``fixed``: hyperparameters fixed for every trial (passed to ``make_task``, so they leave
      the task's space; e.g. ``{"update_epochs": 2}``).
    - ``fidelity_base``: unless ``epochs`` is in ``space`` or this is None, the space gets
      ``epochs: fidelity(1, epochs, fidelity_base)``, which Hyperband and ASHA need; other
      algorithms always train the full ``epochs``. Left out when ``epochs`` is 1.
    - ``label``: the problem's name (class name, experiment names, figure keys); default
      ``<task>_<env>`` with non-word characters as '_'. Two problems of one benchmark need
      different labels. (Not ``name``: Orion's client rebuilds a task with
      ``_get_task(name, **params)``, benchmark_client.py:106, and a ``name`` parameter would
      collide with its own.)

    ``RLBenchmarkTask(...)`` returns an instance of ``task_class(label)``, a subclass (see the
    module docstring, workaround (b)). ``configuration`` holds every argument, so
    ``task_class(key)(**params)`` rebuilds the same problem.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> RLBenchmarkTask:
        # no arguments when unpickled (Orion's process executors send the task to workers)
        if cls is RLBenchmarkTask:
            task = args[0] if args else kwargs.get("task")
            env = args[1] if len(args) > 1 else kwargs.get("env")
            label = kwargs.get("label")
            if label is None and not (isinstance(task, str) and isinstance(env, str)):
                raise ValueError(f"RLBenchmarkTask needs task and env names, not {task!r} "
                                 f"and {env!r}")
            cls = task_class(label if label is not None else default_name(task, env))
        return super().__new__(cls)

    def __init__(self, task: str, env: str, epochs: int, max_trials: int, *,
                 steps_per_epoch: int | None = None, num_envs: int | None = None, seed: int = 0,
                 eval_episodes: int = 10, space: Mapping[str, str | None] | Sequence[str] | None
                 = None, fixed: Mapping[str, Any] | None = None, fidelity_base: int | None = 2,
                 label: str | None = None) -> None:
        if task not in rltasks.known_tasks():
            raise ValueError(f"unknown task {task!r}: choose one of {rltasks.known_tasks()}")
        label = label if label is not None else default_name(task, env)
        if type(self).__name__ != label:
            raise ValueError(f"benchmark task {label!r} built with class "
                             f"{type(self).__name__!r}; use RLBenchmarkTask(..., label={label!r})")
        for what, value, low in (("epochs", epochs, 1), ("max_trials", max_trials, 1),
                                 ("eval_episodes", eval_episodes, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{what} must be an integer >= {low}, not {value!r}")
        if fidelity_base is not None and (not isinstance(fidelity_base, int)
                                          or fidelity_base < 2):
            raise ValueError(f"fidelity_base must be an integer >= 2 or None, "
                             f"not {fidelity_base!r}")
        if space is None or space == "all":
            stored: dict[str, str | None] | str | None = space
        elif isinstance(space, Mapping):
            stored = {str(k): v for k, v in space.items()}
        elif isinstance(space, Sequence) and not isinstance(space, str):
            stored = {str(k): None for k in space}
        else:
            raise ValueError(f"space must be None, 'all', a list of names or a mapping "
                             f"name -> prior, not {space!r}")
        super().__init__(max_trials, task=task, env=env, epochs=epochs,
                         steps_per_epoch=steps_per_epoch, num_envs=num_envs, seed=seed,
                         eval_episodes=eval_episodes, space=stored,
                         fixed=dict(fixed) if fixed else None, fidelity_base=fidelity_base,
                         label=label)
        self.task = task
        self.env = env
        self.epochs = epochs
        self._space: dict[str, str] | None = None

    @property
    def name(self) -> str:
        """The problem's label: its class name, in its experiments' names and figure keys."""
        return type(self).__name__

    def make(self) -> Any:
        """A new ``rltasks`` task with this problem's fixed arguments (not yet ``init``-ed);
        its horizon is the problem's ``epochs``, so a trial that draws a non-constant lr or
        clip schedule runs it over the whole budget at every fidelity."""
        params = self._param_names
        kwargs = {k: params[k] for k in ("steps_per_epoch", "num_envs") if params[k] is not None}
        return rltasks.make_task(self.task, env=self.env, seed=params["seed"], **kwargs,
                                 horizon=self.epochs, **(params["fixed"] or {}))

    def get_search_space(self) -> dict[str, str]:
        """Orion priors of the searched hyperparameters, plus the ``epochs`` fidelity.

        Names are checked against the task's own space: an unknown or fixed one raises
        ValueError naming the valid ones. Built once (it makes the task to ask it).
        """
        if self._space is None:
            task = self.make()
            try:
                own = task.get_space(scope="all")
            finally:
                task.close()
            wanted = self._param_names["space"]
            if wanted is None:
                wanted = {k: None for k in DEFAULT_SPACE if k in own}
            elif wanted == "all":
                wanted = dict.fromkeys(own)
            unknown = sorted(k for k in wanted if k != "epochs" and k not in own)
            if unknown:
                fixed = sorted(set(unknown) & set(self._param_names["fixed"] or ()))
                why = f" ({fixed} fixed by `fixed`)" if fixed else ""
                raise ValueError(f"unknown hyperparameter(s) {unknown} in the space of "
                                 f"{self.name!r}{why}; valid: {sorted(own)}")
            space = {k: prior if prior is not None else own[k] for k, prior in wanted.items()
                     if k != "epochs" or prior is not None}
            base = self._param_names["fidelity_base"]
            if "epochs" not in space and base is not None and self.epochs > 1:
                space["epochs"] = f"fidelity(1, {self.epochs}, {base})"
            self._space = space
        return dict(self._space)

    def call(self, **params: Any) -> list[dict[str, Any]]:
        """One trial: make the task, ``init(**params)``, fit, evaluate, close.

        ``epochs`` (the fidelity) overrides the problem's epochs. Returns Orion results: the
        objective ``-return_mean``, and ``return_mean``, ``return_std`` and ``env_steps`` as
        statistics.
        """
        hparams = flatten(params)  # Orion nests dotted names (sgd.momentum) and adds '/'
        epochs = int(round(float(hparams.pop("epochs", self.epochs))))
        task = self.make()
        try:
            task.init(**hparams)
            task.fit(epochs)
            result = task.evaluate(self._param_names["eval_episodes"])
            env_steps = int(task.env_steps)
        finally:
            task.close()
        mean = float(result["return_mean"])
        return [{"name": "objective", "type": "objective", "value": -mean},
                {"name": "return_mean", "type": "statistic", "value": mean},
                {"name": "return_std", "type": "statistic", "value": float(result["return_std"])},
                {"name": "env_steps", "type": "statistic", "value": env_steps}]

    def __repr__(self) -> str:
        return (f"RLBenchmarkTask(task={self.task!r}, env={self.env!r}, epochs={self.epochs}, "
                f"max_trials={self.max_trials}, label={self.name!r})")


def _key(obj: Any) -> str:
    """The key Orion stores a task or an assessment under (its class name)."""
    return next(iter(obj.configuration))


class RLStudy(Study):
    """Orion's ``Study`` (one assessment and one task, an experiment per algorithm and
    repetition) whose repetitions of a seeded algorithm differ: repetition ``i`` runs with
    ``seed + i`` (workaround (d) in the module docstring).

    Its experiments are shared by the assessments that run them alike (workaround (f)): Orion
    names them ``<benchmark>_<assessment>_<task>_<repetition>_<algorithm index>``, so
    AverageResult and AverageRank of one task train every trial twice. An assessment that runs
    experiments its own way (its own executor per repetition, as ParallelAssessment) keeps
    Orion's name; the others use ``<benchmark>_<task>_<repetition>_<algorithm index>``.
    """

    @property
    def shares_experiments(self) -> bool:
        """Whether this study's experiments are those of every assessment of its task: true
        unless the assessment brings its own executors."""
        own = type(self.assessment).get_executor
        return own is BenchmarkAssessment.get_executor

    def setup_experiments(self) -> None:
        max_trials = self.task.max_trials
        space = self.task.get_search_space()
        for repetition in range(self.assessment.repetitions):
            for index, algorithm in enumerate(self.algorithms):
                if algorithm.is_deterministic and repetition > 0:
                    continue  # one experiment for a deterministic algorithm, as Orion does
                config = algorithm.experiment_algorithm
                if isinstance(config, dict) and repetition > 0:
                    config = copy.deepcopy(config)
                    params = config[algorithm.name]
                    if isinstance(params.get("seed"), int):
                        params["seed"] += repetition
                parts = [self.benchmark.name, self.task_name, str(repetition), str(index)]
                if not self.shares_experiments:
                    parts.insert(1, self.assess_name)
                name = "_".join(parts)
                executor = (self.assessment.get_executor(repetition)
                            or self.benchmark.executor)
                experiment = create_experiment(name, space=space, algorithm=config,
                                               max_trials=max_trials,
                                               storage=self.benchmark.storage, executor=executor)
                self.experiments_info.append((repetition, experiment))


class RLBenchmark(Benchmark):
    """Orion's ``Benchmark`` that stores every target (workaround (a)), refuses what Orion
    would silently lose (two tasks or two assessments of one name in a target, or one
    (assessment, task) pair twice) and builds :class:`RLStudy` studies.

    Build it with :func:`get_or_create_benchmark`, which also stores it and reloads it.
    """

    def __init__(self, storage: BaseStorageProtocol, name: str, algorithms: list[Any],
                 targets: list[dict[str, list[Any]]],
                 executor: BaseExecutor | None = None) -> None:
        super().__init__(storage, name, algorithms, targets, executor)
        _check(algorithms, targets)

    def setup_studies(self) -> None:
        """One :class:`RLStudy` per (assessment, task) of every target."""
        for target in self.targets:
            for assess in target["assess"]:
                for task in target["task"]:
                    self.studies.append(RLStudy(self, self.algorithms, assess, task))

    @property
    def configuration(self) -> dict[str, Any]:
        """What the database holds: name, algorithms and *every* target, each as
        ``{"assess": {class name: params}, "task": {class name: params}}`` (Orion's layout)."""
        targets = [{part: {_key(obj): obj.configuration[_key(obj)] for obj in target[part]}
                    for part in ("assess", "task")} for target in self.targets]
        config: dict[str, Any] = {"name": self.name, "algorithms": self.algorithms,
                                  "targets": targets}
        if self.id is not None:
            config["_id"] = self.id
        return copy.deepcopy(config)


def _check(algorithms: Any, targets: Any) -> None:
    """ValueError for what Orion's benchmark would lose or crash on later."""
    if not isinstance(algorithms, list) or not algorithms:
        raise ValueError(f"algorithms must be a non-empty list, not {algorithms!r}")
    known = sorted(algo_factory.get_classes())
    for algo in algorithms:
        name = algo
        if isinstance(algo, dict) and len(algo) == 1:
            name = next(iter(algo))
        if not isinstance(name, str) or name.lower() not in known:
            raise ValueError(f"algorithm {algo!r}: give a name or {{name: {{config}}}}, "
                             f"name one of {known}")
        seed = algo[name].get("seed") if isinstance(algo, dict) \
            and isinstance(algo[name], dict) else None
        if name.lower() == "hyperband" and not isinstance(seed, int):
            raise ValueError("Orion 0.2.7's Hyperband crashes without a seed (it never builds "
                             "its rng, hyperband.py:222): give {'hyperband': {'seed': 1}}")
    if not isinstance(targets, list) or not targets:
        raise ValueError(f"targets must be a non-empty list of {{'assess': [...], "
                         f"'task': [...]}}, not {targets!r}")
    pairs: dict[tuple[str, str], int] = {}
    tasks: dict[str, Any] = {}
    for i, target in enumerate(targets):
        if not isinstance(target, dict) or set(target) != {"assess", "task"} \
                or not target["assess"] or not target["task"]:
            raise ValueError(f"target {i} must be {{'assess': [assessments], 'task': [tasks]}}, "
                             f"both non-empty, not {target!r}")
        for part in ("assess", "task"):
            keys = [_key(obj) for obj in target[part]]
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                hint = " (give RLBenchmarkTask a distinct label=...)" if part == "task" else ""
                raise ValueError(f"target {i} has two {part} entries named {twice}: Orion keys "
                                 f"them by class name and would keep one{hint}")
        for task in target["task"]:
            config = tasks.setdefault(_key(task), task.configuration)
            if config != task.configuration:
                raise ValueError(f"two different tasks are named {_key(task)!r}: {config} and "
                                 f"{task.configuration}; a name is one problem in a benchmark "
                                 f"(its experiments are named after it)")
        for assess in target["assess"]:
            for task in target["task"]:
                pair = (_key(assess), _key(task))
                if pair in pairs:
                    raise ValueError(f"targets {pairs[pair]} and {i} both pair {pair[0]} with "
                                     f"{pair[1]}: their experiments would have the same names")
                pairs[pair] = i


def _check_searchable(algorithms: list[Any], targets: list[dict[str, list[Any]]]) -> None:
    """ValueError unless every algorithm can search every task's space (a bad space name, or
    Hyperband/ASHA on a space without fidelity): checked before the benchmark is stored, where
    Orion would store it and then fail on every reload."""
    tasks = {_key(task): task for target in targets for task in target["task"]}
    for key, task in tasks.items():
        space = task.get_search_space()
        built = SpaceBuilder().build(space)
        for algo in algorithms:
            name, params = (algo, {}) if isinstance(algo, str) else next(iter(algo.items()))
            try:
                algo_factory.create(name, space=built, **(params or {}))
            except Exception as err:  # whatever the algorithm raises, said as a bad argument
                raise ValueError(f"algorithm {name!r} cannot search task {key!r} "
                                 f"(space {space}): {str(err).strip()}") from err


def _task_from_config(key: str, params: Mapping[str, Any]) -> BenchmarkTask:
    """A stored task rebuilt: an RL problem through :func:`task_class` (created in this
    process if needed, workaround (c)), any other task through Orion's factory."""
    if params.get("label") == key and "task" in params and "env" in params:
        return task_class(key)(**params)
    return bench_task_factory.create(of_type=key, **params)


def _targets_from_config(stored: list[dict[str, Any]]) -> list[dict[str, list[Any]]]:
    """Every stored target rebuilt (Orion's ``_resolve_db_config`` keeps the last only)."""
    return [{"assess": [bench_assessment_factory.create(of_type=key, **params)
                        for key, params in target["assess"].items()],
             "task": [_task_from_config(key, params) for key, params in target["task"].items()]}
            for target in stored]


def _storage(storage: BaseStorageProtocol | Mapping[str, Any] | str | Path
             ) -> BaseStorageProtocol:
    if isinstance(storage, BaseStorageProtocol):
        return storage
    if isinstance(storage, str | Path):  # a PickledDB file
        storage = {"type": "legacy", "database": {"type": "pickleddb", "host": str(storage)}}
    if isinstance(storage, Mapping):
        return setup_storage(dict(storage))
    raise ValueError(f"storage must be an Orion storage, its configuration dict or a PickledDB "
                     f"path, not {storage!r}")


def get_or_create_benchmark(storage: BaseStorageProtocol | Mapping[str, Any] | str | Path,
                            name: str, algorithms: list[Any] | None = None,
                            targets: list[dict[str, list[Any]]] | None = None,
                            executor: BaseExecutor | None = None, *, strict: bool = False
                            ) -> RLBenchmark:
    """Orion's ``get_or_create_benchmark`` without its losses (workarounds (a)-(e) in the module
    docstring): the benchmark ``name`` of ``storage`` with all its targets, or a new one built
    from ``algorithms`` and ``targets`` and stored.

    - ``storage``: an Orion storage (``orion.storage.base.setup_storage(...)``), its
      configuration dict, or the path of a PickledDB file. Never the user's default database
      unless asked for.
    - A stored benchmark wins over ``algorithms`` and ``targets`` (a warning if they differ,
      as in Orion; ValueError with ``strict``); with neither given, a missing benchmark raises
      ValueError.
    - ``executor``: Orion executor of the trials; default a single in-process one (trials run
      one after the other in this process). Pass ``PoolExecutor``/Dask to parallelise.
    """
    storage = _storage(storage)
    if executor is None:
        executor = executor_factory.create("singleexecutor")
    found = storage.fetch_benchmark({"name": name})
    if found:
        db = found[0]
        stored = RLBenchmark(storage, name, db["algorithms"], _targets_from_config(db["targets"]),
                             executor)
        stored._id = db["_id"]
        if algorithms or targets:
            given = RLBenchmark(storage, name, algorithms or db["algorithms"],
                                targets or stored.targets, executor).configuration
            given["_id"] = db["_id"]
            if given != stored.configuration:
                if strict:
                    raise ValueError(f"benchmark {name!r} exists in this storage with another "
                                     f"configuration: {stored.configuration}")
                log.warning("benchmark %r exists with another configuration, which is used: %s",
                            name, stored.configuration)
        stored.setup_studies()
        return stored
    if not algorithms or not targets:
        raise ValueError(f"no benchmark named {name!r} in this storage; give algorithms and "
                         f"targets to create it")
    bench = RLBenchmark(storage, name, algorithms, targets, executor)
    _check_searchable(algorithms, targets)
    bench.metadata["datetime"] = datetime.datetime.now(datetime.UTC)
    try:
        storage.create_benchmark(bench.configuration)
    except DuplicateKeyError:  # another process registered it first: use theirs
        bench.close()
        return get_or_create_benchmark(storage, name, algorithms, targets, executor,
                                       strict=strict)
    bench._id = storage.fetch_benchmark({"name": name})[0]["_id"]
    bench.setup_studies()
    return bench


def save_figures(figures: Mapping[str, Mapping[str, Mapping[str, Any]]], out: str | Path,
                 formats: Sequence[str] = ("html",)) -> list[Path]:
    """Write ``benchmark.analysis()`` figures as ``<out>/<assessment>_<task>_<figure>.<fmt>``.

    ``html``: interactive plotly pages sharing one ``plotly.min.js`` in ``out`` (offline, no
    CDN). ``png``: plotly's ``write_image`` when kaleido can render (kaleido 1.x needs Chrome),
    else a matplotlib redraw of the figure's line traces (the ``plot`` extra). Returns the
    written paths.
    """
    unknown = sorted(set(formats) - {"html", "png"})
    if unknown:
        raise ValueError(f"unknown figure format(s) {unknown}: choose from ['html', 'png']")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    kaleido_ok = True
    for assess, by_task in figures.items():
        for task, by_name in by_task.items():
            for fig_name, fig in by_name.items():
                stem = out / f"{assess}_{task}_{fig_name}"
                if "html" in formats:
                    path = stem.with_suffix(".html")
                    fig.write_html(str(path), include_plotlyjs="directory")
                    written.append(path)
                if "png" in formats:
                    path = stem.with_suffix(".png")
                    if kaleido_ok:
                        try:
                            fig.write_image(str(path))
                        except Exception as err:  # kaleido missing, or no Chrome for it
                            log.info("plotly cannot write PNG (%s); drawing with matplotlib",
                                     err)
                            kaleido_ok = False
                    if not kaleido_ok:
                        _matplotlib_png(fig, path)
                    written.append(path)
    return written


def _matplotlib_png(fig: Any, path: Path) -> None:
    """A plotly figure's scatter traces redrawn with matplotlib (lines, markers, filled bands),
    with its title and axis titles: enough for Orion's regrets and rankings plots."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("PNG figures need kaleido with Chrome, or matplotlib "
                         "(pip install 'rltasks[plot]'); write HTML instead") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = fig.layout
    figure, ax = plt.subplots(figsize=(7, 4.5))
    try:
        previous = None
        for trace in fig.data:
            if trace.type != "scatter" or trace.x is None or trace.y is None:
                continue
            x, y = list(trace.x), list(trace.y)
            color = trace.line.color if trace.line and trace.line.color else None
            if trace.fill == "toself":  # a band drawn as one closed polygon
                ax.fill(x, y, color=color or trace.fillcolor, alpha=0.2, linewidth=0)
            elif trace.fill == "tonexty" and previous is not None and len(previous[0]) == len(x):
                ax.fill_between(x, previous[1], y, color=color, alpha=0.2, linewidth=0)
            else:
                marker = "o" if trace.mode and "markers" in trace.mode else None
                ax.plot(x, y, marker=marker, color=color,
                        label=trace.name if trace.showlegend is not False else None)
            previous = (x, y)
        ax.set_title(layout.title.text or "")
        ax.set_xlabel(layout.xaxis.title.text or "")
        ax.set_ylabel(layout.yaxis.title.text or "")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
