"""The registry of tasks: name -> Task subclass."""

from __future__ import annotations

from rltasks.task import Task
from rltasks.tasks.ppo import PPO

REGISTRY: dict[str, type[Task]] = {cls.name: cls for cls in (PPO,)}
