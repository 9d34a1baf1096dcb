#!/usr/bin/env python
"""Train PPO as one trial: `python scripts/ppo.py --env CartPole-v1 --epochs 10`.

Under `orion hunt -n NAME python scripts/ppo.py --config spaces/ppo.yaml` Orion fills the
hyperparameters; see `python scripts/ppo.py --help`.
"""
import sys

from rltasks.trial import main

sys.exit(main("ppo", sys.argv[1:]))
