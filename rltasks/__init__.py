"""rltasks: reinforcement-learning algorithms as resumable, Orion-tunable tasks."""

from __future__ import annotations

import os
from typing import Any

import torch

# importing the envs registers rltasks' goal envs: gym.make("rltasks/PointReach-v0") works
from rltasks.task import SpaceMismatch, Task
from rltasks.tasks import REGISTRY, tasks_for

__version__ = "0.2.0"
__all__ = ["known_tasks", "make_task", "__version__"]


def known_tasks() -> list[str]:
    """Names of the registered tasks, sorted."""
    return sorted(REGISTRY)


def make_task(name: str, env: str, **kwargs: Any) -> Task:
    """Build task ``name`` on gymnasium env ``env``.

    Keyword arguments are the loader arguments (``num_envs``, ``seed``, ``steps_per_epoch``,
    ``horizon``, ``vectorization``, ``norm_obs``, ``norm_reward``, ``env_kwargs``,
    ``env_state`` ("auto", "snapshot" or "reset": whether episodes run across epochs, see
    ``rltasks.envs.snapshot``), ``observers``), ``device`` (``cpu``, ``cuda``, ``cuda:N``,
    ``mps`` or ``auto``) and any hyperparameter to fix, which then leaves ``get_space()``.
    ``env`` may be ``module:EnvId-v0`` (the module is imported first, as ``gymnasium.make``
    does).
    Torch runs on one thread unless ``RLTASKS_THREADS`` says otherwise: per-call overhead,
    not arithmetic, dominates small RL networks and more threads are slower here.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}: choose one of {sorted(REGISTRY)}")
    torch.set_num_threads(int(os.environ.get("RLTASKS_THREADS", "1")))
    try:
        return REGISTRY[name](env=env, **kwargs)
    except SpaceMismatch as err:
        fit = ", ".join(tasks_for(err.action_space, err.observation_space, err.loader))
        raise ValueError(f"{err}; tasks that fit it: {fit or 'none yet'}") from None
