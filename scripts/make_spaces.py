#!/usr/bin/env python
"""Write spaces/<task>.yaml for every registered task from its get_space().

tests/test_spaces.py fails when a file and the code drift apart; rerun this script then.
"""

from __future__ import annotations

from pathlib import Path

import rltasks

SPACES = Path(__file__).resolve().parents[1] / "spaces"


def example_env(name: str) -> str:
    """The env a task's shipped space is made for (its curated space depends on the env)."""
    from gymnasium import spaces

    from rltasks.tasks import REGISTRY

    if REGISTRY[name].LOADER is not REGISTRY["ppo"].LOADER:
        return "mpe2/simple_spread_v3"
    return "CartPole-v1" if spaces.Discrete in REGISTRY[name].ACTION_SPACES else "Pendulum-v1"


def render(name: str) -> str:
    env = example_env(name)
    task = rltasks.make_task(name, env=env, num_envs=1)
    lines = [
        f"# Orion search space of the {name} task, made for {env}: the curated",
        f"# rltasks.make_task({name!r}, env={env!r}).get_space() (rl-zoo3's sampler ranges,",
        "# only what applies to that env; get_space(scope='all') is every hyperparameter).",
        "# scripts/make_spaces.py writes it and tests/test_spaces.py keeps it in step with the",
        "# code; tests/test_spaces.py also hunts it on that env. Usage:",
        f"#   orion hunt -n NAME --exp-max-trials 20 python scripts/{name}.py "
        f"--config spaces/{name}.yaml --env {env} --epochs 8",
    ]
    lines += _lines(task.get_space())
    task.close()
    return "\n".join(lines) + "\n"


def _lines(space: dict[str, str]) -> list[str]:
    """YAML of a space; ``ns.key`` entries nested under ``ns:`` (Orion fills only those)."""
    lines, section = [], None
    for key, prior in space.items():
        quote = '"' if "'" in prior else "'"
        head, dot, name = key.rpartition(".")
        if head != section:
            section = head
            if dot:
                lines.append(f"{head}:")
        indent = "  " if dot else ""
        lines.append(f"{indent}{name}: {quote}orion~{prior}{quote}")
    return lines


def render_finders() -> dict[str, str]:
    """The finder spaces: learning rate, optimizer, agent (docs/hunts.md)."""
    from rltasks.optim import OPTIM_HPARAMS, optimizer_space
    from rltasks.tasks import agent_space

    return {
        "lr.yaml": "\n".join([
            "# A learning-rate finder: Orion searches lr alone (log-uniform); every other",
            "# hyperparameter keeps the task's default. Works with any task's script, e.g.",
            "#   orion hunt -n lr --exp-max-trials 16 python scripts/ppo.py "
            "--config spaces/lr.yaml --epochs 8",
            "# then `rltasks report lr` plots the objective against lr (log x).",
            *_lines({"lr": OPTIM_HPARAMS["lr"].prior})]) + "\n",
        "optimizers.yaml": "\n".join([
            "# An optimizer finder: Orion searches the optimizer family, its learning rate and",
            "# each optimizer's own hyperparameters, named <optimizer>.<name>: a trial uses",
            "# those of its optimizer and ignores (and does not record) the others. Any task:",
            "#   orion hunt -n opt --exp-max-trials 20 python scripts/ppo.py "
            "--config spaces/optimizers.yaml --epochs 8",
            *_lines(optimizer_space())]) + "\n",
        "agents.yaml": "\n".join([
            "# An agent finder for CartPole-v1: Orion picks the agent among the tasks that fit",
            "# the env and searches its own hyperparameters, named <agent>.<name>; a trial",
            "# uses those of its agent and ignores (and does not record) the others:",
            "#   orion hunt -n agents --exp-max-trials 20 python scripts/agent.py "
            "--config spaces/agents.yaml --epochs 8",
            "env: CartPole-v1",
            *_lines(agent_space("CartPole-v1"))]) + "\n",
    }


def main() -> None:
    for name in rltasks.known_tasks():
        (SPACES / f"{name}.yaml").write_text(render(name))
        print(f"wrote spaces/{name}.yaml")
    for file, text in render_finders().items():
        (SPACES / file).write_text(text)
        print(f"wrote spaces/{file}")


if __name__ == "__main__":
    main()
