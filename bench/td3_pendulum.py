"""TD3 on Pendulum-v1: rltasks against Stable-Baselines3, in the same run.

Both run rl-zoo3's Pendulum-v1 TD3 hyperparameters: 20k steps, 1 env, gamma 0.98, buffer
200000, learning_starts 10000 (uniformly random actions before), Gaussian action noise of std
0.1 (in the [-1, 1] action units, constant), 1 gradient step per env step (rl-zoo3's
``gradient_steps: -1`` with ``train_freq: 1``), lr 1e-3, and SB3's TD3 defaults for the rest:
batch 256, tau 0.005, policy delay 2, target policy noise 0.2 clipped at 0.5, ReLU. Ours
spells them ``init(lr=1e-3, buffer_size=200_000, learning_starts=10_000, batch_size=256,
tau=0.005, gamma=0.98, train_freq=1, gradient_steps=1, hidden=400, layers=2,
noise="gaussian", noise_sigma=0.1, noise_sigma_min=0.1, policy_delay=2, target_noise=0.2,
target_noise_clip=0.5)``.

Network: rl-zoo3 uses ``net_arch=[400, 300]``; rltasks only builds equal widths, so both run
400x400 (SB3: ``policy_kwargs=dict(net_arch=[400, 400])``) for the actor and each critic.

The same in both: twin critics, both regressing (sum of MSEs) on the smaller target critic at
the smoothed target action, the actor (tanh output) following the first critic and the
targets moving every second critic update, bootstrapping through Pendulum's 200-step time
limit, deterministic evaluation without noise.

Known differences that stay: Adam eps is 1e-5 in rltasks (a fixed constant of its optimizer
block) and 1e-8 in SB3 (torch's default); our networks have orthogonal init (gain sqrt 2,
output gain 1), SB3's torch's default init; SB3 adds the action noise to its warmup random
actions too, ours does not; ours takes its first gradient step after env step 10000, SB3
after step 10001 (one fewer update in all); the random draws come from different generators.
Episodes run on across epoch boundaries in both (rltasks' env-state snapshots, the default
on classic control).

The budget is ``--steps`` rounded up to whole 2048-step epochs (20k -> 10 epochs = 20,480
steps, of which the last 10,480 train), and both evaluate every 2048 steps (10 deterministic
episodes), after the update at that step. Steps/s (over the whole run, warmup included),
seconds to a mean eval return of -200, the clock and the evaluation are as described in
``common.py``; evaluation is off the clock.

Runs are sequential in one process, ``rltasks`` then ``sb3`` for each seed.

    .venv/bin/python bench/td3_pendulum.py [--seeds 0 1 2] [--steps 20000]

Needs the bench extra: ``pip install -e '.[bench]'`` (stable-baselines3).
"""

from __future__ import annotations

import numpy as np
from common import Result, bench_main, make_task, sb3_envs, train_rltasks, train_sb3

ENV = "Pendulum-v1"
SOLVED = -200.0  # mean eval return that counts as solved
NUM_ENVS = 1
STEPS_PER_EPOCH = 2048  # also the evaluation period of both implementations
TARGET_SPS = 2.0  # rltasks/sb3 steps per second, from the issue
HIDDEN = 400  # rl-zoo3: [400, 300]; rltasks builds equal widths only, so 400x400 for both
HP = {"lr": 1e-3, "buffer_size": 200_000, "learning_starts": 10_000, "batch_size": 256,
      "tau": 0.005, "gamma": 0.98, "train_freq": 1, "gradient_steps": 1, "hidden": HIDDEN,
      "layers": 2, "activation": "relu", "noise": "gaussian", "noise_mu": 0.0,
      "noise_sigma": 0.1, "noise_sigma_min": 0.1, "policy_delay": 2, "target_noise": 0.2,
      "target_noise_clip": 0.5}


#: TD3's own settings, which DDPG (``ddpg_pendulum.py``, the rest of this set) does without
TD3_ONLY = ("policy_delay", "target_noise", "target_noise_clip")


def run_rltasks(seed: int, epochs: int, algo: str = "td3") -> Result:
    """Ours: ``fit`` epoch by epoch, evaluating between epochs off the clock."""
    task = make_task(algo, env=ENV, num_envs=NUM_ENVS, seed=seed,
                     steps_per_epoch=STEPS_PER_EPOCH)
    task.init(**{k: v for k, v in HP.items() if algo == "td3" or k not in TD3_ONLY})
    return train_rltasks(task, epochs, Result("rltasks", seed, solved=SOLVED))


def run_sb3(seed: int, epochs: int, algo: str = "td3") -> Result:
    """SB3: one ``learn`` call; a callback evaluates every 2048 steps and stops its clock."""
    import stable_baselines3 as sb3
    from stable_baselines3.common.noise import NormalActionNoise

    env, eval_env = sb3_envs(NUM_ENVS, seed, ENV)
    n_act = int(np.prod(env.action_space.shape))
    noise = NormalActionNoise(mean=np.full(n_act, HP["noise_mu"]),
                              sigma=np.full(n_act, HP["noise_sigma"]))
    own = {"policy_delay": HP["policy_delay"], "target_policy_noise": HP["target_noise"],
           "target_noise_clip": HP["target_noise_clip"]} if algo == "td3" else {}
    model = getattr(sb3, algo.upper())(
        "MlpPolicy", env, learning_rate=HP["lr"], buffer_size=HP["buffer_size"],
        learning_starts=HP["learning_starts"], batch_size=HP["batch_size"], tau=HP["tau"],
        gamma=HP["gamma"], train_freq=HP["train_freq"], gradient_steps=HP["gradient_steps"],
        action_noise=noise, policy_kwargs={"net_arch": [HP["hidden"]] * HP["layers"]},
        device="cpu", seed=seed, verbose=0, **own)
    return train_sb3(model, epochs * STEPS_PER_EPOCH, STEPS_PER_EPOCH, eval_env,
                     Result("sb3", seed, solved=SOLVED))


def main() -> None:
    bench_main(__doc__, f"TD3 {ENV}", run_rltasks, run_sb3, default_steps=20_000,
               steps_per_epoch=STEPS_PER_EPOCH, target_sps=TARGET_SPS,
               title_suffix=f", {HIDDEN}x{HIDDEN} for both, Adam eps 1e-5 (rltasks) vs 1e-8 "
                            f"(sb3)")


if __name__ == "__main__":
    main()
