"""SAC on Pendulum-v1: rltasks against Stable-Baselines3, in the same run.

Both run rl-zoo3's Pendulum-v1 SAC hyperparameters (20k steps, lr 1e-3, the rest SB3's SAC
defaults): 1 env, buffer 1e6, learning_starts 100 (uniformly random actions before), batch
256, tau 0.005, gamma 0.99, 1 gradient step per env step, twin critics, entropy temperature
tuned automatically from 1.0 towards the target entropy -dim(A) = -1, 256x256 ReLU MLPs for
the actor and each critic, Adam with lr 1e-3 for actor, critics and temperature, no action
noise. Ours spells them ``init(lr=1e-3, buffer_size=1_000_000, learning_starts=100,
batch_size=256, tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1, hidden=256, layers=2,
noise="none")`` (``ent_coef_init`` 1.0 and ReLU are our defaults).

The same in both: log std clamped to [-20, 2], tanh-squashed Gaussian, critic loss 0.5 x the
sum of the two critics' MSEs against the soft target from the smaller target critic, actor
loss from the smaller critic, temperature loss ``-log_alpha * (logp + target_entropy)``
with the pre-update alpha in the other two losses, targets Polyak-averaged every step,
bootstrapping through Pendulum's 200-step time limit, deterministic evaluation = tanh(mean).

Known differences that stay: Adam eps is 1e-5 in rltasks (a fixed constant of its optimizer
block) and 1e-8 in SB3 (torch's default); our networks have orthogonal init (gain sqrt 2,
output gain 1), SB3's torch's default init; our actor has one 256 -> 2 output layer (mean and
log std), SB3's two 256 -> 1 heads (the same function class); our tanh log-det is the exact
``2 (log 2 - u - softplus(-2u))``, SB3's ``log(1 - tanh(u)^2 + 1e-6)``; ours takes its first
gradient step after env step 100, SB3 after step 101 (one fewer update in all); the random
draws (warmup actions, policy noise, batches) come from different generators. Episodes run on
across epoch boundaries in both (rltasks' env-state snapshots, the default on classic
control).

The budget is ``--steps`` rounded up to whole 2048-step epochs (20k -> 10 epochs = 20,480
steps), and both evaluate every 2048 steps (10 deterministic episodes), after the update at
that step. Steps/s, seconds to a mean eval return of -200, the clock and the evaluation are
as described in ``common.py``; evaluation is off the clock.

Runs are sequential in one process, ``rltasks`` then ``sb3`` for each seed.

    .venv/bin/python bench/sac_pendulum.py [--seeds 0 1 2] [--steps 20000]

Needs the bench extra: ``pip install -e '.[bench]'`` (stable-baselines3).
"""

from __future__ import annotations

from common import Result, bench_main, make_task, sb3_envs, train_rltasks, train_sb3

ENV = "Pendulum-v1"
SOLVED = -200.0  # mean eval return that counts as solved
NUM_ENVS = 1
STEPS_PER_EPOCH = 2048  # also the evaluation period of both implementations
TARGET_SPS = 2.0  # rltasks/sb3 steps per second, from the issue
HP = {"lr": 1e-3, "buffer_size": 1_000_000, "learning_starts": 100, "batch_size": 256,
      "tau": 0.005, "gamma": 0.99, "train_freq": 1, "gradient_steps": 1, "hidden": 256,
      "layers": 2, "activation": "relu", "noise": "none", "ent_coef_init": 1.0}


def run_rltasks(seed: int, epochs: int) -> Result:
    """Ours: ``fit`` epoch by epoch, evaluating between epochs off the clock."""
    task = make_task("sac", env=ENV, num_envs=NUM_ENVS, seed=seed,
                     steps_per_epoch=STEPS_PER_EPOCH)
    task.init(**HP)
    return train_rltasks(task, epochs, Result("rltasks", seed, solved=SOLVED))


def run_sb3(seed: int, epochs: int) -> Result:
    """SB3: one ``learn`` call; a callback evaluates every 2048 steps and stops its clock."""
    from stable_baselines3 import SAC

    env, eval_env = sb3_envs(NUM_ENVS, seed, ENV)
    model = SAC("MlpPolicy", env, learning_rate=HP["lr"], buffer_size=HP["buffer_size"],
                learning_starts=HP["learning_starts"], batch_size=HP["batch_size"],
                tau=HP["tau"], gamma=HP["gamma"], train_freq=HP["train_freq"],
                gradient_steps=HP["gradient_steps"], ent_coef=f"auto_{HP['ent_coef_init']}",
                target_entropy="auto",
                policy_kwargs={"net_arch": [HP["hidden"]] * HP["layers"]},
                device="cpu", seed=seed, verbose=0)
    return train_sb3(model, epochs * STEPS_PER_EPOCH, STEPS_PER_EPOCH, eval_env,
                     Result("sb3", seed, solved=SOLVED))


def main() -> None:
    bench_main(__doc__, f"SAC {ENV}", run_rltasks, run_sb3, default_steps=20_000,
               steps_per_epoch=STEPS_PER_EPOCH, target_sps=TARGET_SPS,
               title_suffix=", Adam eps 1e-5 (rltasks) vs 1e-8 (sb3)")


if __name__ == "__main__":
    main()
