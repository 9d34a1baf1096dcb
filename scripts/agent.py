#!/usr/bin/env python
"""Train the agent named by ``--agent`` as one trial: an agent finder under Orion.

    python scripts/agent.py --agent dqn --env CartPole-v1 --epochs 8 --dqn.exploration boltzmann
    orion hunt -n agents --exp-max-trials 20 python scripts/agent.py --config spaces/agents.yaml

``--agent`` is any task that fits the env (``rltasks.tasks.tasks_for``); ``<agent>.<name>``
options and config entries (``ppo.clip_range``) apply only when that agent runs, and the
others are ignored and not recorded. Every other option is the agent script's own
(``python scripts/ppo.py --help``).
"""
import sys

from rltasks.trial import main
from rltasks.trial.agent import AGENT

if __name__ == "__main__":
    sys.exit(main(AGENT, sys.argv[1:]))
