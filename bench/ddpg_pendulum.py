"""DDPG on Pendulum-v1: rltasks against Stable-Baselines3, in the same run.

rl-zoo3's Pendulum-v1 DDPG set is its TD3 set without TD3's own three settings: 20k steps,
1 env, gamma 0.98, buffer 200000, learning_starts 10000, Gaussian action noise of std 0.1,
1 gradient step per env step, lr 1e-3, SB3's defaults for the rest (batch 256, tau 0.005),
``net_arch=[400, 300]``, run as 400x400 by both (rltasks builds equal widths only). So this
bench is ``td3_pendulum.py`` with ``algo="ddpg"``: one critic, no target smoothing, no policy
delay, on both sides (SB3's ``DDPG`` is its TD3 with those three off). Its known
differences, budget, clock and evaluation are those described there.

    .venv/bin/python bench/ddpg_pendulum.py [--seeds 0 1 2] [--steps 20000]

Needs the bench extra: ``pip install -e '.[bench]'`` (stable-baselines3).
"""

from __future__ import annotations

import td3_pendulum as td3
from common import Result, bench_main

STEPS_PER_EPOCH = td3.STEPS_PER_EPOCH


def run_rltasks(seed: int, epochs: int) -> Result:
    return td3.run_rltasks(seed, epochs, algo="ddpg")


def run_sb3(seed: int, epochs: int) -> Result:
    return td3.run_sb3(seed, epochs, algo="ddpg")


def main() -> None:
    bench_main(__doc__, f"DDPG {td3.ENV}", run_rltasks, run_sb3, default_steps=20_000,
               steps_per_epoch=STEPS_PER_EPOCH, target_sps=td3.TARGET_SPS,
               title_suffix=f", {td3.HIDDEN}x{td3.HIDDEN} for both")


if __name__ == "__main__":
    main()
