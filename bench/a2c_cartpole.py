"""A2C on CartPole-v1: rltasks against Stable-Baselines3, in the same run.

Both run rl-zoo3's CartPole-v1 A2C set: 8 envs and ent_coef 0, everything else at A2C's
defaults: n_steps 5 (one update per 8x5 = 40 env steps), lr 7e-4 constant, gamma 0.99,
gae_lambda 1 (plain n-step returns), vf_coef 0.5, grad-norm clip 0.5, RMSprop (alpha 0.99,
eps 1e-5 added outside the square root, no momentum), separate 64x64 tanh actor and critic
MLPs with orthogonal init (sqrt 2, policy head 0.01, value head 1), no advantage
normalisation. rltasks' ``a2c`` task has the same defaults; they are passed explicitly all the
same. Episodes run on across epoch boundaries in both (rltasks' env-state snapshots, the
default ``env_state="auto"`` on classic control), so no episode is cut at an epoch's end.

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

from common import ENV, Result, bench_main, make_task, sb3_envs, train_rltasks, train_sb3

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
    bench_main(__doc__, f"A2C {ENV}", run_rltasks, run_sb3, default_steps=500_000,
               steps_per_epoch=STEPS_PER_EPOCH, target_sps=TARGET_SPS,
               extra_impls={"rltasks-sync": lambda s, e: run_rltasks(s, e, "sync")})


if __name__ == "__main__":
    main()
