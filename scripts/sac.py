#!/usr/bin/env python
"""Train SAC as one trial: `python scripts/sac.py --env Pendulum-v1 --epochs 10`.

Under `orion hunt -n NAME python scripts/sac.py --config spaces/sac.yaml` Orion fills the
hyperparameters; see `python scripts/sac.py --help`.
"""
import sys

from rltasks.trial import main

sys.exit(main("sac", sys.argv[1:]))
