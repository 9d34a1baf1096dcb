"""One trial: options, the run with its checkpoints and observers, multi-seed runs, the agent
finder's script, pre-emption, the working-dir lock and the task checkpoint payload.

``main(task, argv)`` is what ``scripts/<task>.py`` runs.
"""

from rltasks.trial.run import main

__all__ = ["main"]
