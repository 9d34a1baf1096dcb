#!/usr/bin/env python
"""Write spaces/<task>.yaml for every registered task from its get_space().

tests/test_spaces.py fails when a file and the code drift apart; rerun this script then.
"""

from __future__ import annotations

from pathlib import Path

import rltasks

SPACES = Path(__file__).resolve().parents[1] / "spaces"


def example_env(name: str) -> str:
    """An env the task fits (the space does not depend on it)."""
    from gymnasium import spaces

    from rltasks.tasks import REGISTRY

    if REGISTRY[name].LOADER is not REGISTRY["ppo"].LOADER:
        return "mpe2/simple_spread_v3"
    return "CartPole-v1" if spaces.Discrete in REGISTRY[name].ACTION_SPACES else "Pendulum-v1"


def render(name: str) -> str:
    task = rltasks.make_task(name, env=example_env(name), num_envs=1)
    lines = [
        f"# Orion search space of the {name} task: every hyperparameter of",
        f"# rltasks.make_task({name!r}, ...).get_space(); scripts/make_spaces.py writes it and",
        "# tests/test_spaces.py keeps it in step with the code. Usage:",
        f"#   orion hunt -n NAME --max-trials 20 python scripts/{name}.py "
        f"--config spaces/{name}.yaml --env {example_env(name)} --epochs 8",
    ]
    for key, prior in task.get_space().items():
        quote = '"' if "'" in prior else "'"
        lines.append(f"{key}: {quote}orion~{prior}{quote}")
    task.close()
    return "\n".join(lines) + "\n"


def main() -> None:
    for name in rltasks.known_tasks():
        (SPACES / f"{name}.yaml").write_text(render(name))
        print(f"wrote spaces/{name}.yaml")


if __name__ == "__main__":
    main()
