"""The dataloaders of tasks: vectorized gymnasium envs, goal envs, multi-agent envs."""

from rltasks.envs.loader import (
    RunningMeanStd,
    VecLoader,
    derive_seed,
    evaluate_policy,
    in_process_vectorization,
)
from rltasks.envs.native import StepAsOne
from rltasks.envs.registry import check_env_id

__all__ = ["RunningMeanStd", "StepAsOne", "VecLoader", "check_env_id", "derive_seed",
           "evaluate_policy", "in_process_vectorization"]
