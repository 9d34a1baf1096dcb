"""One trial: options, the run with its checkpoints and observers, multi-seed runs, the agent
finder's script, pre-emption, the working-dir lock and the task checkpoint payload.

``main(task, argv)`` is what ``scripts/<task>.py`` runs, as a process of its own; in-process
callers use ``rltasks.trial.run.main``.
"""

from __future__ import annotations

from rltasks.trial import run
from rltasks.trial.preempt import settled

__all__ = ["main"]


def main(task_name: str, argv: list[str] | None = None) -> int:
    """``rltasks.trial.run.main`` for a process's entry point: its exit code, settled
    (``rltasks.trial.preempt.settled``) against signals that arrive while the process exits."""
    return settled(run.main(task_name, argv))
