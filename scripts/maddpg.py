#!/usr/bin/env python
"""Train MADDPG as one trial: `python scripts/maddpg.py --env mpe2/simple_spread_v3 --epochs 10`.

Under `orion hunt -n NAME python scripts/maddpg.py --config spaces/maddpg.yaml` Orion fills the
hyperparameters; see `python scripts/maddpg.py --help`.
"""
import sys

from rltasks.trial import main

sys.exit(main("maddpg", sys.argv[1:]))
