#!/usr/bin/env bash
# The main job: install if needed, run a short Orion hunt of PPO on CartPole-v1 with the
# default embedded Orion database, then print the best trial.
#   NAME (ppo-cartpole), TRIALS (4) and EPOCHS (6) can be overridden from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"   # the `python` of the hunt command is the project's
export PYTHONWARNINGS='ignore:The `profet` extras:RuntimeWarning'   # orion's optional extra
NAME=${NAME:-ppo-cartpole}
orion hunt -n "$NAME" --exp-max-trials "${TRIALS:-4}" --working-dir "runs/hunt-$NAME" \
  python scripts/ppo.py --config spaces/ppo.yaml --env CartPole-v1 --epochs "${EPOCHS:-6}"
rltasks best "$NAME"
