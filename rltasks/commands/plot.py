"""Learning curves of one or several runs on one PNG (``rltasks plot RUN_DIR...``).

Each run's ``metrics.jsonl`` gives the training return against env steps. Runs whose
checkpoints differ only by seed form one group, drawn as the mean over seeds with the
min-max spread shaded; a ``--seeds`` working dir stands for its seeds' runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rltasks.checkpoint import peek
from rltasks.trial.files import METRICS, read_curve, seed_dirs
from rltasks.trial.payload import identity


def group_key(run_dir: Path) -> tuple[str, str]:
    """(label, key): runs with equal keys differ only by seed."""
    ckpt = run_dir / "last.ckpt"
    info = peek(ckpt) if ckpt.is_file() else {}
    key = json.dumps(identity(info, without=("seed",)), sort_keys=True, default=str)
    label = f"{info.get('task', run_dir.name)} {(info.get('fixed') or {}).get('env', '')}"
    label = label.strip()
    return (label, key) if info else (run_dir.name, str(run_dir))


def runs_of(run_dir: Path) -> list[Path]:
    """``run_dir``, or the runs of its seeds when it is a ``--seeds`` working dir."""
    if (run_dir / METRICS).is_file():
        return [run_dir]
    return seed_dirs(run_dir) or [run_dir]


def plot_runs(run_dirs: list[str | Path], out: str | Path, title: str | None = None) -> Path:
    """Draw the runs' learning curves, grouped over seeds, into the PNG ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, tuple[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    for run_dir in [run for given in map(Path, run_dirs) for run in runs_of(given)]:
        label, key = group_key(run_dir)
        groups.setdefault(key, (label, []))[1].append(read_curve(run_dir))
    labels = [label for label, _ in groups.values()]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for i, (label, curves) in enumerate(groups.values()):
        if labels.count(label) > 1:  # same task and env, other hyperparameters
            label = f"{label} #{i + 1}"
        grid = np.unique(np.concatenate([x for x, _ in curves]))
        ys = np.stack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in curves])
        mean = np.nanmean(ys, axis=0)
        line, = ax.plot(grid, mean, label=f"{label} ({len(curves)} run"
                        f"{'s' if len(curves) > 1 else ''})")
        if len(curves) > 1:
            ax.fill_between(grid, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0),
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("env steps")
    ax.set_ylabel("training return (mean per epoch)")
    ax.set_title(title or "learning curves (mean over seeds, min-max shaded)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return save_png(fig, out)


def save_png(fig: Any, out: str | Path) -> Path:
    """Lay ``fig`` out, write it to ``out`` (its directory made if missing) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
