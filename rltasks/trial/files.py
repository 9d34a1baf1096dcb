"""A run directory's files besides its checkpoints: ``results.json``, ``metrics.jsonl`` and
the results file Orion reads (``$ORION_RESULTS_PATH``).

The trial writes them (results atomically); ``rltasks plot``, ``report`` and ``best`` read
them, while a hunt runs too (an absent or half-written file is "no result yet").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from rltasks.checkpoint import write_atomic

RESULTS = "results.json"
METRICS = "metrics.jsonl"
#: the statistics every trial reports to Orion beside its objective
STATISTICS = ("return_mean", "return_std", "length_mean", "env_steps", "env_steps_run")


def write_results(workdir: Path, results: dict[str, Any]) -> None:
    """Write ``results.json`` atomically (a reader never sees half of it)."""
    write_atomic(workdir / RESULTS, json.dumps(results, indent=2).encode())


def read_results(workdir: Path) -> dict[str, Any]:
    """The ``results.json`` of a finished run (``ValueError`` if it has none)."""
    path = workdir / RESULTS
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is unreadable ({type(err).__name__}): the run did not "
                         f"finish") from None


def try_read_results(workdir: Path) -> dict[str, Any] | None:
    """``results.json``, or None while it is absent or being written."""
    try:
        return read_results(workdir)
    except ValueError:
        return None


def report_to_orion(results: dict[str, Any], extra: tuple[str, ...] = ()) -> None:
    """Hand the objective and statistics to Orion when running as one of its trials.

    This writes what ``orion.client.report_results`` writes, to the same file, without
    importing Orion in every trial (which costs start-up time and import-time warnings).
    """
    path = os.environ.get("ORION_RESULTS_PATH")
    if not path:
        return
    data = [{"name": "objective", "type": "objective", "value": results["objective"]}]
    data += [{"name": k, "type": "statistic", "value": results[k]}
             for k in (*STATISTICS, *extra)]
    Path(path).write_text(json.dumps(data), encoding="utf8")


def read_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(env_steps, return_mean) per epoch; a resumed run's repeated epochs count once."""
    path = run_dir / METRICS
    if not path.is_file():
        raise ValueError(f"{run_dir} has no {METRICS}: not a run directory")
    rows: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
        if row.get("return_mean") is not None:
            rows[int(row["epoch"])] = row
    if not rows:
        raise ValueError(f"{path} holds no epoch with a finished episode yet")
    epochs = sorted(rows)
    return (np.array([rows[e]["env_steps"] for e in epochs], float),
            np.array([rows[e]["return_mean"] for e in epochs], float))
