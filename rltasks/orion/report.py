"""What an Orion hunt found (``rltasks report NAME``, ``rltasks best NAME``).

Prints a table of the trials (``rltasks.orion.experiments.collect``) and the best trial with
its rerun command; writes PNG plots: the objective against each numeric hyperparameter (log x
scale for ``lr`` and loguniform priors), the objective per category for categorical
hyperparameters, and the learning curves of the best 5 trials. Works while the hunt is
running: trials without an objective are listed with their status and left out of the plots.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from rltasks.orion.experiments import collect

BEST_CURVES = 5


def print_best(info: dict[str, Any]) -> None:
    level = info.get("fidelity")
    among = (" (higher fidelities ranked first; this trial: "
             + ", ".join(f"{k} {v:g}" for k, v in level.items()) + ")") if level else ""
    print(f"best of {info['trials']['completed']} completed trials "
          f"({info['trials']['total']} in all) of {info['experiment']!r}{among}:")
    print(f"  trial      {info['trial']}")
    kind = (info["results"] or {}).get("objective_kind", "final")
    what = "-return_mean" if kind == "final" else "--objective curve: -the mean training return"
    print(f"  objective  {info['objective']:.4g}  ({what})")
    if info["results"]:
        r = info["results"]
        if "seeds" in r:  # a --seeds trial: the mean of its seeds' final evaluations
            over = (f"seeds {', '.join(map(str, r['seeds']))} (each seed's final evaluation), "
                    f"{r['env_steps']} env steps in all")
        else:
            over = f"{r['episodes']} episodes after {r['env_steps']} env steps"
        print(f"  return     {r['return_mean']:.1f} +- {r['return_std']:.1f} over {over}")
    print(f"  workdir    {info['working_dir']}")
    for key, value in info["params"].items():
        print(f"  {key:<14} {value}")
    print(f"  rerun with: {info['command']}")


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
        print_best(info["best"])


def _rank(trial: dict[str, Any]) -> tuple[bool, float]:
    """Trials with an objective first, best (lowest) first."""
    obj = trial["objective"]
    return (obj is None, obj if obj is not None else 0.0)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _param_figure(plt: Any, name: str, param: str, kind: str,
                  points: list[tuple[Any, float]]) -> tuple[Any, str]:
    """The objective against one hyperparameter: a scatter, or boxes per category."""
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
        ax.scatter(xs, [y for _, y in points], s=18, alpha=0.8)
        if kind == "log" and min(xs) > 0:
            ax.set_xscale("log")
        ax.set_title(f"{name}: objective against {param}")
        filename = f"objective_vs_{_slug(param)}.png"
    ax.set_xlabel(param)
    ax.set_ylabel("objective (-return_mean, lower is better)")
    ax.grid(alpha=0.3)
    return fig, filename


def _curves_figure(plt: Any, name: str, trials: list[dict[str, Any]]) -> Any:
    """The learning curves of ``trials`` on one figure."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for t in trials:
        steps, returns = t["curve"]
        ax.plot(steps, returns, marker=".",
                label=f"{t['id'][:8]} (objective {t['objective']:.4g})")
    ax.set_xlabel("env steps")
    ax.set_ylabel("training return (mean per epoch)")
    ax.set_title(f"{name}: learning curves of the best {len(trials)} trials")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig


def write_plots(info: dict[str, Any], out: str | Path) -> list[Path]:
    """The PNGs of the report in directory ``out``; trials without an objective are skipped."""
    import matplotlib  # the plot extra; only the report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = sorted((t for t in info["trials"] if t["objective"] is not None), key=_rank)
    figures: list[tuple[Any, str]] = []
    for param, kind in info["kinds"].items() if done else ():
        points = [(t["params"][param], t["objective"]) for t in done if param in t["params"]]
        if points:
            figures.append(_param_figure(plt, info["experiment"], param, kind, points))
    curves = [t for t in done if t["curve"] is not None][:BEST_CURVES]
    if curves:
        figures.append((_curves_figure(plt, info["experiment"], curves), "curves_best.png"))
    written: list[Path] = []
    for fig, filename in figures:
        fig.tight_layout()
        fig.savefig(out / filename)
        plt.close(fig)
        written.append(out / filename)
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
