#!/usr/bin/env python
"""Train PG as one trial: `python scripts/pg.py --env CartPole-v1 --epochs 10`.

Under `orion hunt -n NAME python scripts/pg.py --config spaces/pg.yaml` Orion fills the
hyperparameters; see `python scripts/pg.py --help`.
"""
import sys

from rltasks.trial import main

sys.exit(main("pg", sys.argv[1:]))
