#!/usr/bin/env python
"""Train DDPG as one trial: `python scripts/ddpg.py --env Pendulum-v1 --epochs 10`.

Under `orion hunt -n NAME python scripts/ddpg.py --config spaces/ddpg.yaml` Orion fills the
hyperparameters; see `python scripts/ddpg.py --help`.
"""
import sys

from rltasks.trial import main

sys.exit(main("ddpg", sys.argv[1:]))
