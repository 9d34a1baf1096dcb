"""A run directory's files besides its checkpoints: ``results.json``, ``metrics.jsonl`` and
the results file Orion reads (``$ORION_RESULTS_PATH``).

The trial writes them (results atomically); ``rltasks plot``, ``report`` and ``best`` read
them, while a hunt runs too (an absent or half-written file is "no result yet"). They are read
through ``rltasks.safeio``: only a regular file, at most ``MAX_RESULTS_BYTES`` for
``results.json``, ``MAX_METRICS_BYTES`` for ``metrics.jsonl`` (read line by line, each line at
most ``MAX_METRICS_LINE``); anything else is a one-line ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from rltasks.checkpoint import write_atomic
from rltasks.safeio import KIB, MIB, FileRefused, open_regular, read_regular, size_text

RESULTS = "results.json"
METRICS = "metrics.jsonl"
#: the statistics every trial reports to Orion beside its objective
STATISTICS = ("return_mean", "return_std", "length_mean", "env_steps", "env_steps_run")
#: a trial writes a results.json of a few KiB and one metrics line of well under 4 KiB an epoch
MAX_RESULTS_BYTES = 4 * MIB
MAX_METRICS_BYTES, MAX_METRICS_LINE = 256 * MIB, 64 * KIB


def write_results(workdir: Path, results: dict[str, Any]) -> None:
    """Write ``results.json`` atomically (a reader never sees half of it)."""
    write_atomic(workdir / RESULTS, json.dumps(results, indent=2).encode())


def read_results(workdir: Path) -> dict[str, Any]:
    """The ``results.json`` of a finished run (``ValueError`` if it has none)."""
    path = workdir / RESULTS
    try:
        results = json.loads(read_regular(path, MAX_RESULTS_BYTES, "results file"))
    except FileRefused as err:
        raise ValueError(f"{err}: not one a trial wrote; delete it and rerun the trial") from None
    except (OSError, ValueError, RecursionError) as err:
        raise ValueError(f"{path} is unreadable ({type(err).__name__}): the run did not "
                         f"finish") from None
    if not isinstance(results, dict):
        raise ValueError(f"{path} holds a JSON {type(results).__name__}, not the mapping a "
                         f"trial writes: delete it and rerun the trial")
    return results


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
    if path:
        Path(path).write_text(json.dumps(orion_results(results, extra)), encoding="utf8")


def orion_results(results: dict[str, Any], extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A trial's results as Orion records them: the objective, then the statistics."""
    data = [{"name": "objective", "type": "objective", "value": results["objective"]}]
    return data + [{"name": k, "type": "statistic", "value": results[k]}
                   for k in (*STATISTICS, *extra)]


#: a ``--seeds`` working dir holds the run of seed N in ``seed-N``
SEED_PREFIX = "seed-"


def seed_dir(workdir: Path, seed: int) -> Path:
    """Where ``--seeds`` trains ``seed`` in its working dir ``workdir``."""
    return Path(workdir) / f"{SEED_PREFIX}{seed}"


def seed_dirs(workdir: Path) -> list[Path]:
    """The runs of a ``--seeds`` working dir (its ``seed_dir`` dirs, by seed); [] for
    another."""
    found = []
    for path in Path(workdir).glob(f"{SEED_PREFIX}*"):
        number = path.name.removeprefix(SEED_PREFIX)
        if path.is_dir() and number.isdigit():
            found.append((int(number), path))
    return [path for _, path in sorted(found)]


def read_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(env_steps, return_mean) per epoch; a resumed run's repeated epochs count once."""
    path = run_dir / METRICS
    try:
        file = open_regular(path, MAX_METRICS_BYTES, "metrics log")
    except FileNotFoundError:
        raise ValueError(f"{run_dir} has no {METRICS}: not a run directory") from None
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
    except FileRefused as err:
        raise ValueError(f"{err}: not one a trial wrote; delete it or leave the run out") from None
    with file:
        rows = _curve_rows(file, path)
    if not rows:
        raise ValueError(f"{path} holds no epoch with a finished episode yet")
    epochs = sorted(rows)
    return (np.array([rows[e][0] for e in epochs], float),
            np.array([rows[e][1] for e in epochs], float))


def _curve_rows(file: BinaryIO, path: Path) -> dict[int, tuple[float, float]]:
    """{epoch: (env_steps, return_mean)} of the rows with a finished episode, read a line at a
    time, never more than MAX_METRICS_BYTES in all (the file may grow as we read)."""
    rows: dict[int, tuple[float, float]] = {}
    total = 0
    for number, line in enumerate(iter(lambda: file.readline(MAX_METRICS_LINE + 1), b""), 1):
        total += len(line)
        if len(line) > MAX_METRICS_LINE or total > MAX_METRICS_BYTES:
            raise ValueError(f"{path} line {number} is over {size_text(MAX_METRICS_LINE)} or the "
                             f"file over {size_text(MAX_METRICS_BYTES)}: not a metrics log a "
                             f"trial wrote; delete it or leave the run out")
        try:
            row = json.loads(line)
        except ValueError:  # a line cut by a crash
            continue
        if not isinstance(row, dict) or row.get("return_mean") is None:
            continue
        try:
            rows[int(row["epoch"])] = (float(row["env_steps"]), float(row["return_mean"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise ValueError(f"{path} line {number} is not a metrics row (epoch, env_steps, "
                             f"return_mean): delete the file or leave the run out") from None
    return rows
