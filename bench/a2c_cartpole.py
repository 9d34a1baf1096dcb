"""A2C on CartPole-v1: rltasks against Stable-Baselines3, in the same run.

Both run rl-zoo3's CartPole-v1 A2C set: 8 envs and ent_coef 0, everything else at A2C's
defaults: n_steps 5 (one update per 8x5 = 40 env steps), lr 7e-4 constant, gamma 0.99,
gae_lambda 1 (plain n-step returns), vf_coef 0.5, grad-norm clip 0.5, RMSprop (alpha 0.99,
eps 1e-5 added outside the square root, no momentum), separate 64x64 tanh actor and critic
MLPs with orthogonal init (sqrt 2, policy head 0.01, value head 1), no advantage
normalisation. rltasks' ``a2c`` task has the same defaults; they are passed explicitly all the
same. Known difference that stays: ours resets the envs at every epoch boundary (every 20480
steps; the cut episodes are truncations, bootstrapped from the value), SB3's run on.

The budget is ``--steps`` rounded up to whole 20480-step epochs (500k -> 25 epochs = 512,000
steps = 12,800 updates), and both evaluate every 20480 steps, after the update that completes
them. Steps/s, time to 475, the clock and the evaluation are as described in ``common.py``;
evaluation is off the clock.

Runs are sequential in one process, ``rltasks`` then ``sb3`` for each seed; ``--impls`` can add
``rltasks-sync``, ours on gymnasium's ``SyncVectorEnv`` instead of its numpy-vectorized
CartPole (what ``auto`` picks for 8 envs), to separate the vectorized env's share.

    .venv/bin/python bench/a2c_cartpole.py [--seeds 0 1 2] [--steps 500000]

Needs the bench extra: ``pip install -e '.[bench]'`` (stable-baselines3).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from common import ENV, Result, make_task, run_bench, sb3_envs, train_rltasks, train_sb3

NUM_ENVS = 8
STEPS_PER_EPOCH = 20480  # also the evaluation period of both implementations
TARGET_SPS = 2.0  # rltasks/sb3 steps per second, from the issue
HP = {"n_steps": 5, "lr": 7e-4, "gamma": 0.99, "gae_lambda": 1.0, "ent_coef": 0.0,
      "vf_coef": 0.5, "max_grad_norm": 0.5, "norm_adv": False, "optimizer": "rmsprop",
      "momentum": 0.0, "lr_schedule": "constant", "hidden": 64, "layers": 2,
      "activation": "tanh"}


def run_rltasks(seed: int, epochs: int, vectorization: str = "auto") -> Result:
    """Ours: ``fit`` epoch by epoch, evaluating between epochs off the clock."""
    task = make_task("a2c", num_envs=NUM_ENVS, seed=seed, steps_per_epoch=STEPS_PER_EPOCH,
                     vectorization=vectorization)
    task.init(**HP)
    impl = "rltasks" if vectorization == "auto" else f"rltasks-{vectorization}"
    return train_rltasks(task, epochs, Result(impl, seed))


def run_sb3(seed: int, epochs: int) -> Result:
    """SB3: one ``learn`` call; a callback evaluates every 20480 steps and stops its clock."""
    from stable_baselines3 import A2C

    env, eval_env = sb3_envs(NUM_ENVS, seed)
    model = A2C("MlpPolicy", env, n_steps=HP["n_steps"], learning_rate=HP["lr"],
                gamma=HP["gamma"], gae_lambda=HP["gae_lambda"], ent_coef=HP["ent_coef"],
                vf_coef=HP["vf_coef"], max_grad_norm=HP["max_grad_norm"],
                normalize_advantage=HP["norm_adv"], use_rms_prop=True, rms_prop_eps=1e-5,
                device="cpu", seed=seed, verbose=0)
    return train_sb3(model, epochs * STEPS_PER_EPOCH, STEPS_PER_EPOCH, eval_env,
                     Result("sb3", seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=500_000,
                        help=f"env steps per run, rounded up to whole {STEPS_PER_EPOCH}-step "
                             f"epochs")
    parser.add_argument("--impls", nargs="+", default=["rltasks", "sb3"],
                        choices=["rltasks", "sb3", "rltasks-sync"])
    args = parser.parse_args()
    epochs = math.ceil(args.steps / STEPS_PER_EPOCH)
    runners: dict[str, Callable[[int], Result]] = {
        "rltasks": lambda s: run_rltasks(s, epochs),
        "sb3": lambda s: run_sb3(s, epochs),
        "rltasks-sync": lambda s: run_rltasks(s, epochs, "sync"),
    }
    run_bench(f"A2C {ENV}, rl-zoo3 hyperparameters, {epochs * STEPS_PER_EPOCH} env steps "
              f"({epochs} x {STEPS_PER_EPOCH})", {i: runners[i] for i in args.impls},
              args.seeds, STEPS_PER_EPOCH, TARGET_SPS)


if __name__ == "__main__":
    main()
