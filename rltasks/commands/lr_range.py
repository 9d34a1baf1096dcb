"""``rltasks lr-range TASK --env ENV``: Leslie Smith's learning-rate range test, for RL.

One run of TASK trains ``--updates`` chunks of env steps (an on-policy task: one rollout and
its update each; an off-policy one: ``--steps-per-epoch`` steps, 1,000 by default, and their
gradient steps) with the learning rate growing exponentially from ``--start-lr`` to
``--end-lr``, set before each chunk. The training return of the episodes each chunk finishes,
smoothed (a bias-corrected moving average, as fastai's LRFinder smooths its loss), and its
rate of change per decade of lr are drawn against lr on a log axis (``--out``, a PNG).

The suggested log-uniform bounds for a hunt are the lr at which the smoothed return first
rises above its start by a tenth of its total gain (training starts to work) and the lr of
its peak (beyond it, larger steps stop helping or break the policy); a run whose return
never rises suggests nothing (a one-line error, after the plot). A chunk whose loss is not
finite ends the test there (the lr has grown too far), keeping what came before. The return
lags the lr (a policy is the sum of all the steps before it), so the bounds are a range to
hunt over, not a setting to use. ``--write-space FILE`` writes them as FILE's ``lr:`` line,
the rest of the file kept as it is.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rltasks.commands.plot import save_png
from rltasks.safeio import MIB, load_yaml, read_regular
from rltasks.task import NonFiniteError, Task
from rltasks.tasks import REGISTRY
from rltasks.trial.options import resolve
from rltasks.trial.prepare import build_task

#: env steps per chunk of an off-policy task, unless --steps-per-epoch says otherwise
OFF_POLICY_CHUNK = 1000
#: the share of the total gain at which training is said to start working (the lower bound)
RISE = 0.1


def lr_range(task_name: str, argv: list[str], start_lr: float, end_lr: float,
             updates: int, smooth: float = 0.9) -> dict[str, Any]:
    """Run the range test of ``task_name`` with the options of ``scripts/TASK.py`` in
    ``argv``; the lrs, the raw and smoothed returns, their slope and the suggested bounds."""
    if task_name not in REGISTRY:
        raise ValueError(f"unknown task {task_name!r}: choose one of {sorted(REGISTRY)}")
    options, hparams = resolve(task_name, argv)
    _check(task_name, hparams, start_lr, end_lr, updates, smooth)
    hparams = {**hparams, "lr_schedule": "constant"}  # an env's default may decay it
    options = {**options, "epochs": updates, "horizon": None,
               "steps_per_epoch": options["steps_per_epoch"] or _chunk(task_name, options,
                                                                        hparams)}
    lrs = start_lr * (end_lr / start_lr) ** (np.arange(updates) / (updates - 1))
    task = build_task(task_name, options, hparams)
    steps = task.epoch_steps()  # what an update really collects (whole rollouts on-policy)
    try:
        rows, diverged = _train(task, lrs)
    finally:
        task.close()
    if not rows:
        raise ValueError(f"the loss was not finite in the first update (lr {start_lr:g}): "
                         f"lower --start-lr")
    lr = np.array([r["lr"] for r in rows])
    raw = np.array([np.nan if r["return"] is None else r["return"] for r in rows])
    if np.isnan(raw).all():
        raise ValueError(f"no episode ended in the {len(rows)} updates of "
                         f"{steps} env steps (summed over the envs), so "
                         f"there is no return to plot: give more --updates or --steps-per-epoch")
    smoothed = smoothed_returns(raw, smooth)
    slope = _slope(lr, smoothed)
    result = {"task": task_name, "env": options["env"], "updates": len(rows),
              "steps_per_update": steps, "lr": lr.tolist(),
              "return": [None if math.isnan(v) else float(v) for v in raw],
              "smoothed": [None if math.isnan(v) else float(v) for v in smoothed],
              "slope": [None if math.isnan(v) else float(v) for v in slope],
              "diverged_at": diverged}
    result.update(suggest(lr, smoothed))
    return result


def _check(task_name: str, hparams: dict[str, Any], start_lr: float, end_lr: float,
           updates: int, smooth: float) -> None:
    """One-line errors for settings the test cannot run with."""
    if "lr" in hparams:
        raise ValueError("lr-range sets the learning rate itself: drop --lr "
                         "(use --start-lr and --end-lr)")
    if hparams.get("lr_schedule", "constant") != "constant":
        raise ValueError("lr-range grows the learning rate itself: drop --lr-schedule")
    spec = REGISTRY[task_name].hparam_specs()["lr"]
    start_lr, end_lr = spec.coerce("lr", start_lr), spec.coerce("lr", end_lr)
    if not end_lr > start_lr:
        raise ValueError(f"--end-lr {end_lr:g} must be above --start-lr {start_lr:g}")
    if updates < 3:
        raise ValueError(f"--updates {updates} must be at least 3")
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"--smooth {smooth} must be in [0, 1)")


def _chunk(task_name: str, options: dict[str, Any], hparams: dict[str, Any]) -> int:
    """Env steps per update: one rollout of an on-policy task (``n_steps`` in every env),
    ``OFF_POLICY_CHUNK`` for an off-policy one."""
    probe = build_task(task_name, {**options, "steps_per_epoch": None, "horizon": None},
                       hparams)
    try:
        n_steps = probe.hp.get("n_steps")
        return int(n_steps * probe.num_envs) if n_steps else OFF_POLICY_CHUNK
    finally:
        probe.close()


def _train(task: Task, lrs: np.ndarray) -> tuple[list[dict[str, Any]], float | None]:
    """One chunk per lr (set before it); the rows and the lr whose chunk diverged, if any."""
    spec = task.hparam_specs()["lr"]
    rows: list[dict[str, Any]] = []
    for i, lr in enumerate(lrs):
        task.hp["lr"] = spec.coerce("lr", float(lr))  # read by every update (task.scheduled)
        try:
            task.fit(i + 1)
        except NonFiniteError:
            return rows, float(lr)
        row = task.history[-1]  # its lr: the one the optimizer stepped with
        print(f"update {i + 1}/{len(lrs)}: lr {row['lr']:.3g}, return "
              f"{_fmt(row['return_mean'])}", file=sys.stderr, flush=True)
        rows.append({"lr": float(row["lr"]), "return": row["return_mean"]})
    return rows, None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def smoothed_returns(raw: np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average of ``raw``, skipping its NaNs (chunks in
    which no episode ended); NaN until the first finite value."""
    out = np.full(len(raw), np.nan)
    avg, seen = 0.0, 0
    for i, value in enumerate(raw):
        if not math.isnan(value):
            avg, seen = beta * avg + (1.0 - beta) * value, seen + 1
        if seen:
            out[i] = avg / (1.0 - beta ** seen)
    return out


def _slope(lr: np.ndarray, smoothed: np.ndarray) -> np.ndarray:
    """d(smoothed return) / d(log10 lr), NaN where the smoothed return is not defined yet."""
    out = np.full(len(lr), np.nan)
    ok = np.flatnonzero(~np.isnan(smoothed))
    if len(ok) >= 2:
        out[ok] = np.gradient(smoothed[ok], np.log10(lr[ok]))
    return out


def suggest(lr: np.ndarray, smoothed: np.ndarray) -> dict[str, Any]:
    """The suggested bounds: ``{"low", "high", "peak_return", "start_return"}`` (low and high
    None when the smoothed return never rose)."""
    ok = np.flatnonzero(~np.isnan(smoothed))
    if len(ok) < 2:
        return {"low": None, "high": None, "start_return": None, "peak_return": None}
    start, peak = ok[0], ok[np.argmax(smoothed[ok])]
    gain = smoothed[peak] - smoothed[start]
    out = {"start_return": float(smoothed[start]), "peak_return": float(smoothed[peak]),
           "low": None, "high": None}
    if gain <= 1e-9 * max(1.0, abs(smoothed[start])) or peak == start:
        return out
    rise = next(i for i in ok if smoothed[i] >= smoothed[start] + RISE * gain)
    low, high = float(lr[rise]), float(lr[peak])
    if high <= low * 1.5:  # the return jumped to its peak in one chunk: a decade below it
        low = high / 10.0
    out.update(low=low, high=high)
    return out


def plot(result: dict[str, Any], out: str | Path) -> Path:
    """The smoothed training return and its slope against lr (log axis), bounds marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nan = np.nan
    lr = np.array(result["lr"])
    raw, smoothed, slope = (np.array([nan if v is None else v for v in result[k]], dtype=float)
                            for k in ("return", "smoothed", "slope"))
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 6), dpi=100)
    top.plot(lr, raw, ".", color="0.6", label="return of each update's episodes")
    top.plot(lr, smoothed, label="smoothed")
    top.set_ylabel("training return")
    bottom.plot(lr, slope, color="C1")
    bottom.axhline(0.0, color="0.5", linewidth=0.8)
    bottom.set_ylabel("d return / d log10(lr)")
    bottom.set_xlabel("learning rate")
    for ax in (top, bottom):
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        for bound in (result["low"], result["high"]):
            if bound is not None:
                ax.axvline(bound, color="C2", linestyle="--", linewidth=1)
    top.set_title(f"lr range test: {result['task']} on {result['env']}, {result['updates']} "
                  f"updates of {result['steps_per_update']} env steps")
    top.legend(loc="best", fontsize="small")
    return save_png(fig, out)


def prior(result: dict[str, Any]) -> str:
    """The suggested bounds as an Orion prior, ``loguniform(LOW, HIGH)``."""
    return f"loguniform({result['low']:.2e}, {result['high']:.2e})"


def write_space(path: str | Path, result: dict[str, Any]) -> Path:
    """Set the ``lr:`` line of the space file ``path`` (a YAML mapping of at most 1 MiB) to
    the suggested prior, or append one; every other line is kept. Written to a temporary
    file and renamed, so a failure leaves the old file whole."""
    path = Path(path)
    data = load_yaml(path, "--write-space")
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"--write-space {path} must hold a mapping of hyperparameter: prior")
    lines = read_regular(path, MIB, "--write-space").decode("utf-8").splitlines()
    entry = f"lr: 'orion~{prior(result)}'"
    at = [i for i, line in enumerate(lines) if line.startswith(("lr:", "'lr':", '"lr":'))]
    if at:
        lines[at[0]] = entry
    else:
        lines.append(entry)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def print_result(result: dict[str, Any], png: Path) -> None:
    """What the test found, in a few lines."""
    print(f"lr range test of {result['task']} on {result['env']}: {result['updates']} updates "
          f"of {result['steps_per_update']} env steps, lr {result['lr'][0]:.2g} -> "
          f"{result['lr'][-1]:.2g}")
    if result["diverged_at"] is not None:
        print(f"the loss stopped being finite at lr {result['diverged_at']:.3g}: ended there")
    if result["peak_return"] is not None:
        print(f"smoothed return {result['start_return']:.1f} at the start, peak "
              f"{result['peak_return']:.1f}")
    print(f"plot: {png}")
    if result["low"] is not None:
        print(f"suggested for a hunt: lr: 'orion~{prior(result)}'")
