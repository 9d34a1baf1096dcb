"""DQN on CartPole-v1: rltasks against Stable-Baselines3, in the same run.

Both run rl-zoo3's CartPole-v1 DQN hyperparameters: 1 env, lr 2.3e-3 constant, batch 64,
buffer 100000, learning_starts 1000 (random actions before), gamma 0.99, target network
copied every 10 env steps, 128 gradient steps every 256 env steps, epsilon decayed linearly
from 1.0 to 0.04 over the first 16% of training, 256x256 ReLU MLP, Huber loss, grad-norm clip
10, Adam, plain DQN (no double, no dueling, 1-step, uniform replay). Ours spells them
``exploration="adaptive_epsilon"``, ``eps_decay = 0.16 * budget``, ``hidden=256, layers=2,
activation="relu"``, ``target_update=10, tau=1.0``, ``double=False``... explicitly.

Known differences that stay: Adam eps is 1e-5 in rltasks (a fixed constant of its optimizer
block) and 1e-8 in SB3 (torch's default); our Q-network has orthogonal init (gain sqrt 2,
output gain 1), SB3's torch's default init. Episodes run on across epoch boundaries in both
(rltasks' env-state snapshots, the default on classic control).

The budget is ``--steps`` rounded up to whole 2048-step epochs (50k -> 25 epochs = 51,200
steps, so epsilon decays over 0.16 * 51,200 = 8,192 steps in both), and both evaluate every
2048 steps, after the training phase at that step. Steps/s, time to 475, the clock and the
evaluation are as described in ``common.py``; evaluation is off the clock.

Runs are sequential in one process, ``rltasks`` then ``sb3`` for each seed.

    .venv/bin/python bench/dqn_cartpole.py [--seeds 0 1 2] [--steps 50000]
        [--impls rltasks rltasks-eps8 sb3]    # rltasks-eps8: ours with SB3's Adam eps

Needs the bench extra: ``pip install -e '.[bench]'`` (stable-baselines3).
"""

from __future__ import annotations

from common import ENV, Result, bench_main, make_task, sb3_envs, train_rltasks, train_sb3

NUM_ENVS = 1
STEPS_PER_EPOCH = 2048  # also the evaluation period of both implementations
TARGET_SPS = 2.0  # rltasks/sb3 steps per second, from the issue
EXPLORATION_FRACTION = 0.16
HP = {"lr": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000,
      "gamma": 0.99, "target_update": 10, "train_freq": 256, "gradient_steps": 128,
      "eps_initial": 1.0, "eps_min": 0.04, "hidden": 256, "layers": 2, "activation": "relu",
      "loss": "huber", "max_grad_norm": 10.0, "double": False, "dueling": False, "n_step": 1,
      "replay": "uniform", "tau": 1.0, "optimizer": "adam", "lr_schedule": "constant",
      "exploration": "adaptive_epsilon"}


def run_rltasks(seed: int, epochs: int) -> Result:
    """Ours: ``fit`` epoch by epoch, evaluating between epochs off the clock."""
    task = make_task("dqn", num_envs=NUM_ENVS, seed=seed, steps_per_epoch=STEPS_PER_EPOCH)
    task.init(**HP, eps_decay=round(EXPLORATION_FRACTION * epochs * STEPS_PER_EPOCH))
    return train_rltasks(task, epochs, Result("rltasks", seed))


def run_rltasks_eps8(seed: int, epochs: int) -> Result:
    """Ours with SB3's Adam eps (1e-8, torch's default) instead of the block's 1e-5: the
    known difference isolated (``--impls rltasks rltasks-eps8 sb3``)."""
    from rltasks import optim

    saved = optim.OPTIM_CONSTANTS["adam_eps"]
    optim.OPTIM_CONSTANTS["adam_eps"] = 1e-8  # read once, when the task builds its optimizer
    try:
        task = make_task("dqn", num_envs=NUM_ENVS, seed=seed, steps_per_epoch=STEPS_PER_EPOCH)
        task.init(**HP, eps_decay=round(EXPLORATION_FRACTION * epochs * STEPS_PER_EPOCH))
    finally:
        optim.OPTIM_CONSTANTS["adam_eps"] = saved
    assert task.optimizers["opt"].param_groups[0]["eps"] == 1e-8
    return train_rltasks(task, epochs, Result("rltasks-eps8", seed))


def run_sb3(seed: int, epochs: int) -> Result:
    """SB3: one ``learn`` call; a callback evaluates every 2048 steps and stops its clock."""
    from stable_baselines3 import DQN

    env, eval_env = sb3_envs(NUM_ENVS, seed)
    model = DQN("MlpPolicy", env, learning_rate=HP["lr"], batch_size=HP["batch_size"],
                buffer_size=HP["buffer_size"], learning_starts=HP["learning_starts"],
                gamma=HP["gamma"], target_update_interval=HP["target_update"],
                train_freq=HP["train_freq"], gradient_steps=HP["gradient_steps"],
                exploration_fraction=EXPLORATION_FRACTION,
                exploration_initial_eps=HP["eps_initial"],
                exploration_final_eps=HP["eps_min"], max_grad_norm=HP["max_grad_norm"],
                tau=HP["tau"], policy_kwargs={"net_arch": [HP["hidden"]] * HP["layers"]},
                device="cpu", seed=seed, verbose=0)
    return train_sb3(model, epochs * STEPS_PER_EPOCH, STEPS_PER_EPOCH, eval_env,
                     Result("sb3", seed))


def main() -> None:
    bench_main(__doc__, f"DQN {ENV}", run_rltasks, run_sb3, default_steps=50_000,
               steps_per_epoch=STEPS_PER_EPOCH, target_sps=TARGET_SPS,
               title_suffix=", Adam eps 1e-5 (rltasks) vs 1e-8 (sb3)",
               extra_impls={"rltasks-eps8": run_rltasks_eps8})


if __name__ == "__main__":
    main()
