"""rltasks: reinforcement-learning algorithms as resumable, Orion-tunable tasks."""

from __future__ import annotations

import os
from typing import Any

from rltasks import envs_goal as _envs_goal

_envs_goal.register()  # rltasks/BitFlipping-v0, rltasks/PointReach-v0, ... for gym.make

__version__ = "0.1.0"
__all__ = ["known_tasks", "make_task", "__version__"]


def known_tasks() -> list[str]:
    """Names of the registered tasks, sorted."""
    from rltasks.tasks import REGISTRY

    return sorted(REGISTRY)


def make_task(name: str, env: str, **kwargs: Any) -> Any:
    """Build task ``name`` on gymnasium env ``env``.

    Keyword arguments are the loader arguments (``num_envs``, ``seed``, ``device``,
    ``steps_per_epoch``, ``horizon``, ``vectorization``, ``norm_obs``, ``norm_reward``,
    ``observers``) and any hyperparameter to fix, which then leaves ``get_space()``.
    Torch runs on one thread unless ``RLTASKS_THREADS`` says otherwise: per-call overhead,
    not arithmetic, dominates small RL networks and more threads are slower here.
    """
    import torch

    from rltasks.tasks import REGISTRY

    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}: choose one of {sorted(REGISTRY)}")
    torch.set_num_threads(int(os.environ.get("RLTASKS_THREADS", "1")))
    return REGISTRY[name](env=env, **kwargs)
