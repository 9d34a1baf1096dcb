"""Schedules of a hyperparameter (the learning rate) over the horizon of a task.

A schedule is a pure function of training progress (env steps done over the horizon), which
the task state holds, so a resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rltasks.hparams import HP, choices


def _constant(progress: float) -> float:
    return 1.0


def _linear(progress: float) -> float:
    return max(0.0, 1.0 - progress)


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _exponential(progress: float) -> float:
    # decays to 1% of the initial value at the end of the horizon
    return 0.01 ** min(progress, 1.0)


#: name -> multiplier(progress in [0, 1]) applied to an initial value
SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": _constant,
    "linear": _linear,
    "cosine": _cosine,
    "exponential": _exponential,
}

SCHEDULE_HPARAMS: dict[str, HP] = {
    "lr_schedule": HP("constant", choices(*SCHEDULES), kind=str, choices=tuple(SCHEDULES),
                      help="learning-rate schedule over the horizon"),
}


def scheduled(initial: float, schedule: str, progress: float) -> float:
    """Value of a scheduled quantity at ``progress`` (env steps done / horizon steps)."""
    return initial * SCHEDULES[schedule](progress)
