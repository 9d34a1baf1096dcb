"""Reading an Orion experiment: its trials, their results and the best one.

The storage follows ``ORION_DB_*`` and Orion's own configuration; experiments are opened
read-only, so ``rltasks best`` and ``rltasks report`` work while a hunt is running. Orion is
imported only when an experiment is read: its import is slow and warns about optional extras.
"""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path
from typing import Any

from rltasks.hparams import flatten, namespaced
from rltasks.optim import OPTIMIZER_HPARAMS, unused_hparams
from rltasks.tasks import REGISTRY
from rltasks.trial.files import read_curve, try_read_results


def experiment(name: str) -> Any:
    """Load an Orion experiment read-only (the storage follows ORION_DB_* and orion's config)."""
    with warnings.catch_warnings():  # orion warns about optional extras and pkg_resources
        warnings.simplefilter("ignore")
        from orion.client import get_experiment
        from orion.core.utils.exceptions import NoConfigurationError
    try:
        return get_experiment(name, mode="r")
    except NoConfigurationError:
        raise ValueError(f"no Orion experiment named {name!r} in this database "
                         f"(check ORION_DB_ADDRESS or `orion list`)") from None


def best_trial(name: str, exp: Any = None) -> dict[str, Any]:
    """Summary of the best completed trial of experiment ``name`` (``exp``: the experiment,
    if the caller has loaded it already)."""
    exp = exp if exp is not None else experiment(name)
    completed = ranked_trials(exp)
    if not completed:
        raise ValueError(f"experiment {name!r} has no completed trial yet; `orion status -n "
                         f"{name}` shows why (broken trials print their error in the hunt log)")
    best = completed[0]
    workdir = trial_workdir(exp, best)
    results = try_read_results(workdir) if workdir else None
    fidelity = fidelity_name(exp)
    level = {fidelity.strip("/"): best.params[fidelity]} if fidelity else None
    if results and level and results.get("epoch", 0) > level.get("epochs", float("inf")):
        results = None  # a working dir shared by the rungs holds a later rung's results
    return {"experiment": name, "trial": best.id, "objective": best.objective.value,
            "params": active_params(best.params),
            "working_dir": str(workdir) if workdir else None,
            "results": results,
            "trials": {"completed": len(completed), "total": len(exp.fetch_trials())},
            "fidelity": level,
            "command": shlex.join(rerun_command(exp, best))}


def ranked_trials(exp: Any) -> list[Any]:
    """The completed trials of ``exp`` with an objective, the lowest (best) first; in a
    multi-fidelity hunt (ASHA, Hyperband) those of a higher fidelity before those of a lower
    one, as rl-zoo3 ranks only the trials its pruner let finish: a trial stopped at the first
    rung was scored early, on a fraction of the budget, and its score is mostly luck."""
    done = [t for t in exp.fetch_trials_by_status("completed") if t.objective is not None]
    fidelity = fidelity_name(exp)
    return sorted(done, key=lambda t: (-float(t.params.get(fidelity, 0)) if fidelity else 0,
                                       t.objective.value))


def fidelity_name(exp: Any) -> str | None:
    """The key of the fidelity dimension in ``exp``'s trial params (``/epochs``), if any."""
    return next((key for key, dim in exp.space.items() if dim.type == "fidelity"), None)


#: the fields of Orion 0.2.7's templates (``item.format(trial=..., exp=...)``) that
#: ``trial_workdir`` expands; any other makes it fall back to Orion's ``trial.working_dir``
_TEMPLATE = re.compile(r"\{(exp|trial)\.(working_dir|name|id|hash_params|hash_name)\}")


def trial_workdir(exp: Any, trial: Any) -> Path | None:
    """Where ``trial`` wrote its files: the hunt's ``--workdir`` template (``'{exp.working_dir}
    /{trial.hash_params}'``, which multi-fidelity hunts use so that a promoted trial resumes)
    expanded for this trial, else Orion's own ``trial.working_dir``. Only the fields of
    ``_TEMPLATE`` are expanded, by substitution: nothing of a stored template is evaluated."""
    args = list(exp.metadata.get("user_args") or [])
    templates = [value for flag, value in zip(args, args[1:], strict=False)
                 if flag == "--workdir"]
    templates += [a.partition("=")[2] for a in args if a.startswith("--workdir=")]
    objects, missing = {"exp": exp, "trial": trial}, []

    def field(match: re.Match[str]) -> str:
        value = getattr(objects[match[1]], match[2], None)
        if value is None:
            missing.append(match[0])
        return str(value)

    for template in templates:
        expanded = _TEMPLATE.sub(field, template)
        if "{" not in expanded and not missing:
            return Path(expanded)
    return Path(trial.working_dir) if trial.working_dir else None


def rerun_command(exp: Any, trial: Any) -> list[str]:
    """The command line that reruns ``trial`` of ``exp`` alone: the hunt's command without
    its priors and templates, then the trial's values (flat, without the namespaced ones it
    ignored), which win over the ``--config`` file, whose orion~ entries a plain run ignores."""
    command: list[str] = []
    for arg in exp.metadata.get("user_args") or []:
        if "~" in arg:  # a prior (--lr~'loguniform(...)'): its value follows from params
            continue
        if "{" in arg and "}" in arg:  # a template (--workdir '{exp.working_dir}/...')
            if command and command[-1].startswith("--"):
                command.pop()
            continue
        command.append(arg)
    params = active_params(trial.params)
    return command + [f"--{k.replace('_', '-')}={v}" for k, v in params.items()]


def _kinds(exp: Any) -> dict[str, str]:
    """Hyperparameter name -> "log", "linear" or "categorical", from the search space."""
    kinds = {}
    for key, dim in exp.space.items():
        name = key.lstrip("/").replace("/", ".")  # nested: sgd/momentum -> sgd.momentum
        if dim.type == "categorical":
            kinds[name] = "categorical"
        elif dim.type in ("real", "integer"):
            log = name == "lr" or dim.prior_name in ("reciprocal", "loguniform")
            kinds[name] = "log" if log else "linear"
    return kinds


def active_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's Orion parameters, flat (``sgd.momentum``), without the namespaced ones of the
    agents and optimizers it did not run (``rltasks.hparams.namespaced``), which it ignored."""
    flat = flatten(params)
    for key, names in (("agent", REGISTRY), ("optimizer", OPTIMIZER_HPARAMS)):
        if key in flat:
            _, ignored = namespaced(flat, flat[key], names)
            flat = {k: v for k, v in flat.items() if k not in ignored}
    if flat.get("optimizer") in OPTIMIZER_HPARAMS:  # plain momentum of an adam trial, ...
        flat = {k: v for k, v in flat.items() if k not in unused_hparams(flat["optimizer"])}
    return flat


def collect(name: str) -> dict[str, Any]:
    """Every trial of experiment ``name`` with its results, and the best completed one."""
    exp = experiment(name)
    kinds = _kinds(exp)
    trials = []
    for t in exp.fetch_trials():
        workdir = trial_workdir(exp, t)
        results = try_read_results(workdir) if workdir else None
        try:
            curve = read_curve(workdir) if workdir else None
        except ValueError:  # no metrics.jsonl or no finished episode yet
            curve = None
        steps = (results or {}).get("env_steps")
        if steps is None:  # a --workdir of its own ({trial.hash_params}): Orion's statistics
            steps = {r.name: r.value for r in t.results}.get("env_steps")
        if steps is None and curve is not None:
            steps = int(curve[0][-1])
        wall = ((t.end_time - t.start_time).total_seconds()
                if t.start_time and t.end_time else None)
        objective = t.objective.value if t.objective is not None else None
        trials.append({"id": t.id, "status": t.status, "objective": objective,
                       "params": active_params(t.params),
                       "env_steps": steps, "wall_time": wall, "results": results,
                       "curve": curve})
    for trial in trials:  # hyperparameters the space did not describe: guess from values
        for key, value in trial["params"].items():
            if key not in kinds:
                numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
                kinds[key] = ("log" if key == "lr" else "linear") if numeric else "categorical"
    try:
        best = best_trial(name, exp)
    except ValueError:  # no completed trial yet
        best = None
    return {"experiment": name, "kinds": kinds, "trials": trials, "best": best}
