#!/usr/bin/env python
"""Train DQN as one trial: `python scripts/dqn.py --env CartPole-v1 --epochs 10`.

Under `orion hunt -n NAME python scripts/dqn.py --config spaces/dqn.yaml` Orion fills the
hyperparameters; see `python scripts/dqn.py --help`.
"""
import sys

from rltasks.trial import main

sys.exit(main("dqn", sys.argv[1:]))
