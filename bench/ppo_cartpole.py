"""PPO on CartPole-v1: rltasks against Stable-Baselines3, in the same run.

What is measured, for each implementation and seed, with rl-zoo3's CartPole hyperparameters
(8 envs, n_steps 32, batch 256, 20 epochs per rollout, gae_lambda 0.8, gamma 0.98,
ent_coef 0, lr 1e-3 and clip_range 0.2 both decayed linearly to 0, Adam eps 1e-5, 64x64 tanh
MLPs, grad-norm clip 0.5):

- **steps/s**: env steps of the whole training divided by its wall time (rollouts *and*
  updates), one torch thread;
- **s to 475**: training wall seconds until the deterministic policy first scores a mean
  return >= 475 over 10 evaluation episodes (CartPole-v1 counts as solved at 475);
- **final return**: that evaluation at the end of training.

Both implementations train the same budget: ``--steps`` rounded up to whole 4096-step epochs
(100k -> 25 epochs = 102,400 steps = 400 rollouts of 8x32), and both evaluate at the same
points, every 4096 steps after the update that completes them, plus at the end. Evaluation
time is excluded from the training clock for both. Ours: ``task.fit(e)`` epoch by epoch
(``steps_per_epoch=4096``, ``horizon=epochs`` so the linear schedules end with training)
then ``task.evaluate(10)``; the clock is the sum of the ``fit`` calls. SB3: ``PPO.learn`` with
a callback that evaluates with ``evaluate_policy(model, eval_env, 10, deterministic=True)``
on a separate 10-env eval env at rollout start once 4096 more steps are done (i.e. after the
previous update), and subtracts its own time from the clock. Building the agents (networks,
envs) is outside the clock for both.

Runs are sequential in one process, ``rltasks`` then ``sb3`` (then ``rltasks-sync``, ours on
gymnasium's ``SyncVectorEnv`` instead of its numpy-vectorized CartPole) for each seed.

    .venv/bin/python bench/ppo_cartpole.py [--seeds 0 1 2] [--steps 100000]

Needs the bench extra: ``pip install -e '.[bench]'`` (stable-baselines3).
"""

from __future__ import annotations

from collections.abc import Callable

from common import ENV, Result, bench_main, make_task, sb3_envs, train_rltasks, train_sb3

NUM_ENVS = 8
STEPS_PER_EPOCH = 4096  # also the evaluation period of both implementations
TARGET_SPS = 2.0  # rltasks/sb3 steps per second, from the issue
TARGET_T475 = 0.5  # rltasks time to 475 as a fraction of SB3's, from the issue
HP = {"n_steps": 32, "batch_size": 256, "update_epochs": 20, "gae_lambda": 0.8,
      "gamma": 0.98, "ent_coef": 0.0, "lr": 1e-3, "clip_range": 0.2}


def run_rltasks(seed: int, epochs: int, vectorization: str = "auto") -> Result:
    """Ours: ``fit`` epoch by epoch, evaluating between epochs off the clock."""
    task = make_task("ppo", num_envs=NUM_ENVS, seed=seed, steps_per_epoch=STEPS_PER_EPOCH,
                     horizon=epochs, vectorization=vectorization)
    task.init(**HP, lr_schedule="linear", clip_schedule="linear")
    impl = "rltasks" if vectorization == "auto" else f"rltasks-{vectorization}"
    return train_rltasks(task, epochs, Result(impl, seed))


def linear(initial: float) -> Callable[[float], float]:
    """rl-zoo3's ``lin_<value>``: ``initial`` times the fraction of training remaining."""
    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial
    return schedule


def run_sb3(seed: int, epochs: int) -> Result:
    """SB3: one ``learn`` call; a callback evaluates every 4096 steps and stops its clock."""
    from stable_baselines3 import PPO

    env, eval_env = sb3_envs(NUM_ENVS, seed)
    model = PPO("MlpPolicy", env, n_steps=HP["n_steps"], batch_size=HP["batch_size"],
                n_epochs=HP["update_epochs"], gae_lambda=HP["gae_lambda"], gamma=HP["gamma"],
                ent_coef=HP["ent_coef"], learning_rate=linear(HP["lr"]),
                clip_range=linear(HP["clip_range"]), device="cpu", seed=seed, verbose=0)
    return train_sb3(model, epochs * STEPS_PER_EPOCH, STEPS_PER_EPOCH, eval_env,
                     Result("sb3", seed))


def main() -> None:
    bench_main(__doc__, f"PPO {ENV}", run_rltasks, run_sb3, default_steps=100_000,
               steps_per_epoch=STEPS_PER_EPOCH, target_sps=TARGET_SPS, target_t475=TARGET_T475,
               extra_impls={"rltasks-sync": lambda s, e: run_rltasks(s, e, "sync")},
               default_impls=["rltasks", "sb3", "rltasks-sync"])


if __name__ == "__main__":
    main()
