#!/usr/bin/env python
"""Train TD3 as one trial: `python scripts/td3.py --env Pendulum-v1 --epochs 10`.

Under `orion hunt -n NAME python scripts/td3.py --config spaces/td3.yaml` Orion fills the
hyperparameters; see `python scripts/td3.py --help`.
"""
import sys

from rltasks.trial import main

sys.exit(main("td3", sys.argv[1:]))
