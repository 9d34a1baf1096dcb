"""The registry of tasks: name -> Task subclass."""

from __future__ import annotations

from rltasks.task import Task
from rltasks.tasks.a2c import A2C
from rltasks.tasks.pg import PG
from rltasks.tasks.ppo import PPO

REGISTRY: dict[str, type[Task]] = {cls.name: cls for cls in (A2C, PG, PPO)}
