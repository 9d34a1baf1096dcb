#!/usr/bin/env bash
# The main job: install if needed, run a seeded multi-fidelity (ASHA) Orion hunt over the
# curated PPO space on CartPole-v1 with the default embedded Orion database, then print the
# best trial and its rerun command. ASHA trains trials for 1 epoch (4096 env steps),
# promotes the best quarter to 4 epochs and the best quarter of those to 16, in two
# repetitions of its bracket (48 trials, two reach the top rung); every trial's dir is
# named by its hyperparameters alone, so a promoted trial resumes from its checkpoint, and a
# linear lr or clip schedule runs over the top rung's 16 epochs (--horizon) in every rung.
#   NAME (ppo-cartpole), TRIALS (48: Orion's ASHA keeps drawing first-rung trials while it
#   waits for promotions, so the cap is what ends the hunt) and WORKERS (2) can be overridden
#   from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"   # the `python` of the hunt command is the project's
export PYTHONWARNINGS='ignore:The `profet` extras:RuntimeWarning'   # orion's optional extra
NAME=${NAME:-ppo-cartpole}
orion hunt -n "$NAME" -c spaces/algos/asha.yaml --exp-max-trials "${TRIALS:-48}" \
  --n-workers "${WORKERS:-2}" --working-dir "runs/hunt-$NAME" \
  python scripts/ppo.py --config spaces/ppo.yaml --env CartPole-v1 \
  --epochs~'fidelity(1, 16, 4)' --horizon 16 --workdir '{exp.working_dir}/{trial.hash_params}'
rltasks best "$NAME"
