"""What an Orion hunt found (``rltasks report NAME``).

Reads the experiment (storage from ORION_DB_* and orion's config, as ``rltasks best``) and each
trial's ``results.json`` and ``metrics.jsonl``; prints a table of the trials and the best trial
with its rerun command; writes PNG plots: the objective against each numeric hyperparameter
(log x scale for ``lr`` and loguniform priors), the objective per category for categorical
hyperparameters, and the learning curves of the best 5 trials. Works while the hunt is running:
trials without an objective are listed with their status and left out of the plots.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from rltasks.cli import _experiment, _print_best, best_trial
from rltasks.plot import read_curve

BEST_CURVES = 5


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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError):  # absent, or being written
        return None


def active_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's Orion parameters, flat (``sgd.momentum``), without the namespaced ones of the
    agents and optimizers it did not run (``rltasks.space.namespaced``), which it ignored."""
    from rltasks.optim import OPTIMIZER_HPARAMS, unused_hparams
    from rltasks.space import flatten, namespaced
    from rltasks.tasks import REGISTRY

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
    exp = _experiment(name)
    kinds = _kinds(exp)
    trials = []
    for t in exp.fetch_trials():
        workdir = Path(t.working_dir) if t.working_dir else None
        results = _read_json(workdir / "results.json") if workdir else None
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


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_report(info: dict[str, Any]) -> None:
    """The table of trials, then the best trial as ``rltasks best`` prints it."""
    params = list(info["kinds"])
    header = ["trial", "status", *params, "objective", "env_steps", "wall_s"]
    rows = [[t["id"][:8], t["status"], *(_fmt(t["params"].get(p)) for p in params),
             _fmt(t["objective"]), _fmt(t["env_steps"]),
             "-" if t["wall_time"] is None else f"{t['wall_time']:.1f}"]
            for t in sorted(info["trials"], key=_rank)]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    counts: dict[str, int] = {}
    for t in info["trials"]:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    print(f"experiment {info['experiment']!r}: {len(info['trials'])} trials ("
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")")
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print()
    if info["best"] is None:
        print("no completed trial yet")
    else:
        _print_best(info["best"])


def _rank(trial: dict[str, Any]) -> tuple[bool, float]:
    """Trials with an objective first, best (lowest) first."""
    obj = trial["objective"]
    return (obj is None, obj if obj is not None else 0.0)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_plots(info: dict[str, Any], out: str | Path) -> list[Path]:
    """The PNGs of the report in directory ``out``; trials without an objective are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = sorted((t for t in info["trials"] if t["objective"] is not None), key=_rank)
    written: list[Path] = []

    def save(fig: Any, filename: str) -> None:
        fig.tight_layout()
        path = out / filename
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    if not done:
        return written
    name = info["experiment"]
    for param, kind in info["kinds"].items():
        points = [(t["params"][param], t["objective"]) for t in done if param in t["params"]]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        if kind == "categorical":
            cats = sorted({str(v) for v, _ in points})
            groups = [[o for v, o in points if str(v) == c] for c in cats]
            ax.boxplot(groups, positions=range(len(cats)), widths=0.5, showfliers=False)
            jitter = np.random.default_rng(0)
            for i, ys in enumerate(groups):
                ax.scatter(i + jitter.uniform(-0.12, 0.12, len(ys)), ys, s=18, alpha=0.7)
            ax.set_xticks(range(len(cats)), cats)
            ax.set_title(f"{name}: objective per {param}")
            filename = f"objective_by_{_slug(param)}.png"
        else:
            xs = [x for x, _ in points]
            ys = [y for _, y in points]
            ax.scatter(xs, ys, s=18, alpha=0.8)
            if kind == "log" and min(xs) > 0:
                ax.set_xscale("log")
            ax.set_title(f"{name}: objective against {param}")
            filename = f"objective_vs_{_slug(param)}.png"
        ax.set_xlabel(param)
        ax.set_ylabel("objective (-return_mean, lower is better)")
        ax.grid(alpha=0.3)
        save(fig, filename)
    curves = [t for t in done if t["curve"] is not None][:BEST_CURVES]
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
        for t in curves:
            steps, returns = t["curve"]
            ax.plot(steps, returns, marker=".",
                    label=f"{t['id'][:8]} (objective {t['objective']:.4g})")
        ax.set_xlabel("env steps")
        ax.set_ylabel("training return (mean per epoch)")
        ax.set_title(f"{name}: learning curves of the best {len(curves)} trials")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        save(fig, "curves_best.png")
    return written


def report(name: str, out: str | Path | None = None) -> list[Path]:
    """Print the report of experiment ``name`` and write its plots (default reports/NAME/)."""
    info = collect(name)
    print_report(info)
    paths = write_plots(info, out if out is not None else Path("reports") / _slug(name))
    print()
    print(f"{len(paths)} plots" + (":" if paths else " (no completed trial yet)"))
    for path in paths:
        print(f"  {path}")
    return paths
