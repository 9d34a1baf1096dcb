"""``scripts/agent.py``, the agent finder's trial: ``--agent NAME`` picks the task.

Orion 0.2.7 has no conditional dimensions, so each agent's hyperparameters are their own
dimensions, namespaced by the agent (``ppo.clip_range``; nested ``ppo: {clip_range: ...}`` in a
``--config`` file). For one trial, the chosen agent's lose their prefix and the others' are
ignored and not recorded (``rltasks.hparams.namespaced``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rltasks.envs import check_env_id
from rltasks.hparams import namespaced
from rltasks.optim import NAMESPACED_OPTIM_HPARAMS
from rltasks.tasks import REGISTRY
from rltasks.trial.options import UsageError, load_config

#: ``scripts/agent.py``'s pseudo task: ``--agent`` names the real one
AGENT = "agent"
AGENT_HELP = """usage: agent.py --agent NAME [options of scripts/NAME.py] [--NAME.HPARAM VALUE ...]

Train the agent NAME ({agents}) as one (Orion) trial: an agent finder.
Options <agent>.<hparam> (--ppo.clip-range 0.2; nested `ppo: {{clip_range: ...}}` in a
--config file) apply only when that agent runs; the others are ignored and not recorded.
`python scripts/agent.py --agent ppo --help` lists the options of ppo."""


def _namespaced_flag(token: str) -> tuple[str, str, str | None] | None:
    """``--ppo.clip-range[=V]`` -> ``("ppo", "clip_range", V or None)``; None for others."""
    if not token.startswith("--"):
        return None
    name, eq, value = token[2:].partition("=")
    prefix, dot, rest = name.partition(".")
    if not dot or prefix not in REGISTRY:
        return None
    return prefix, rest.replace("-", "_"), value if eq else None


def _check_names(keys: list[str]) -> None:
    """Every ``<agent>.<name>`` must exist, whichever agent this trial runs."""
    for key in keys:
        prefix, dot, name = key.partition(".")
        if dot and prefix in REGISTRY:
            valid = set(REGISTRY[prefix].hparam_specs()) | set(NAMESPACED_OPTIM_HPARAMS)
            if name not in valid:
                raise UsageError(f"{key!r}: {prefix} has no hyperparameter {name!r}; "
                                 f"valid: {sorted(valid)}")


def _agent_argv(rest: list[str], agent: str, ignored: list[str]) -> list[str]:
    """``rest`` with the agent's ``--<agent>.<name>`` flags unprefixed and the other agents'
    flags (and their values) dropped into ``ignored``."""
    argv: list[str] = []
    skip = False
    for i, token in enumerate(rest):
        if skip:
            skip = False
            continue
        parsed = _namespaced_flag(token)
        if parsed is None:
            argv.append(token)
            continue
        prefix, name, value = parsed
        if prefix == agent:
            argv.append(f"--{name}" + (f"={value}" if value is not None else ""))
        else:
            ignored.append(f"{prefix}.{name}")
            skip = value is None and i + 1 < len(rest) and not rest[i + 1].startswith("--")
    return argv


def resolve_agent(argv: list[str]) -> tuple[str, list[str], dict[str, Any]]:
    """Pick the task named by ``--agent`` (command line or config) and keep only its
    namespaced hyperparameters (``ppo.clip_range`` -> ``clip_range`` when the agent is ppo).

    Returns ``(task name, argv for it, config for it)``, for ``rltasks.trial.options.resolve``.
    """
    pre = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    for flag in ("--agent", "--config", "--env"):
        pre.add_argument(flag)
    known, rest = pre.parse_known_args(argv)
    config = load_config(known.config) if hasattr(known, "config") else {}
    agent = getattr(known, "agent", config.pop("agent", None))
    config.pop("agent", None)
    if agent is None and ("-h" in rest or "--help" in rest):
        print(AGENT_HELP.format(agents=", ".join(sorted(REGISTRY))))
        raise SystemExit(0)
    if agent is None or str(agent).startswith("orion~"):
        raise UsageError(f"--agent is required: one of {sorted(REGISTRY)} that fits the env")
    if agent not in REGISTRY:
        raise UsageError(f"--agent {agent!r} is not a task: choose one of {sorted(REGISTRY)}")
    env = getattr(known, "env", config.get("env")) or REGISTRY[agent].DEFAULT_ENV
    flags = [f"{p[0]}.{p[1]}" for p in map(_namespaced_flag, rest) if p]
    _check_names([*config, *flags])
    config, ignored = namespaced(config, agent, REGISTRY)
    argv_out = _agent_argv(rest, agent, ignored)
    if ignored:
        print(f"agent {agent}: ignoring {', '.join(sorted(ignored))} (other agents')",
              file=sys.stderr)
    check_env_id(env)
    argv_out += ["--env", env] if hasattr(known, "env") else []
    return agent, argv_out, config
