#!/usr/bin/env python
"""Train A2C as one trial: `python scripts/a2c.py --env CartPole-v1 --epochs 10`.

Under `orion hunt -n NAME python scripts/a2c.py --config spaces/a2c.yaml` Orion fills the
hyperparameters; see `python scripts/a2c.py --help`.
"""
import sys

from rltasks.trial import main

sys.exit(main("a2c", sys.argv[1:]))
