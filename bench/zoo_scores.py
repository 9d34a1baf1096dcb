"""rl-zoo3's tuned settings on MuJoCo and Box2D: rltasks against Stable-Baselines3, in one run.

For each (algorithm, env) both train with the same hyperparameters: rltasks' per-env defaults,
which are rl-zoo3's tuned sets (``ENV_DEFAULTS`` of ppo, sac and td3; docs/tasks.md lists
them), handed to SB3 name by name (PPO: n_steps, batch_size, n_epochs, gamma, gae_lambda,
clip_range, ent_coef, vf_coef, max_grad_norm, log_std_init, ReLU 2x256, VecNormalize when the
set normalises; SAC: lr, buffer, learning_starts, batch, tau, gamma, train_freq,
gradient_steps, 2x256; TD3: the same plus Gaussian action noise 0.1, policy delay 2, target
smoothing 0.2/0.5). Each trains ``--steps`` env steps (default: 20k for SAC and TD3, 50k for
PPO on MuJoCo, 200k for PPO on LunarLander) and ends with 10 deterministic evaluation
episodes of the true env (unnormalised rewards); the table prints the mean final return and
steps per second of both, beside rl-zoo3's and CleanRL's published figures at 1M steps.
These budgets are what this 2-core machine allows: far below the published 1M, so compare
the two libraries with each other, not with the published column.

    .venv/bin/python bench/zoo_scores.py [--pairs sac:Hopper-v5 ppo:LunarLander-v3 ...]
        [--seeds 0 1] [--steps N]

Needs the bench, mujoco and box2d extras (``pip install -e '.[bench,mujoco,box2d]'``).
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch
from common import EVAL_EPISODES, Result, make_task, sb3_eval_seed, train_rltasks, train_sb3

#: rl-zoo3's (SB3) and CleanRL's published mean returns at 1M steps, for the table
PUBLISHED = {("td3", "Hopper-v5"): 3606, ("sac", "Hopper-v5"): 2326,
             ("ppo", "Hopper-v5"): 2410, ("td3", "HalfCheetah-v5"): 9656,
             ("sac", "HalfCheetah-v5"): 9535, ("ppo", "HalfCheetah-v5"): 5819,
             ("ppo", "LunarLander-v3"): 242}
PAIRS = list(PUBLISHED)
STEPS = {"sac": 20_000, "td3": 20_000, "ppo": 50_000}
EPOCHS = 5  # each run evaluates at the end of each of up to 5 equal epochs


def budget(algo: str, env: str, steps: int | None) -> int:
    if steps is not None:
        return steps
    return 200_000 if env.startswith("LunarLander") else STEPS[algo]


def plan(algo: str, env: str, steps: int, evals: int = EPOCHS,
         hparams: dict | None = None) -> tuple[int, int]:
    """(epochs, env steps per epoch) of a run of about ``steps`` env steps: ``steps`` rounded
    up to whole rollouts (on-policy) or steps of every env, in up to ``evals`` equal epochs
    (an evaluation after each), the same for both implementations."""
    probe = make_task(algo, env=env)
    probe.init(**(hparams or {}))
    unit = probe.num_envs * probe.hp.get("n_steps", 1)  # a rollout, or one step of every env
    probe.close()
    units = -(-steps // unit)
    epochs = max(d for d in range(1, evals + 1) if units % d == 0)
    return epochs, units // epochs * unit


def run_rltasks(algo: str, env: str, seed: int, steps: int, evals: int = EPOCHS,
                hparams: dict | None = None) -> Result:
    """Ours with the task's own per-env defaults (rl-zoo3's set) updated by ``hparams``, for
    the ``plan``'s budget (``horizon`` is the run's epochs, so a linear schedule ends with
    training)."""
    epochs, per_epoch = plan(algo, env, steps, evals, hparams)
    task = make_task(algo, env=env, seed=seed, steps_per_epoch=per_epoch, horizon=epochs)
    task.init(**(hparams or {}))
    return train_rltasks(task, epochs, Result("rltasks", seed, solved=float("inf")))


def sb3_model(algo: str, env: str, seed: int, total_steps: int, ortho_init: bool = False,
              hparams: dict | None = None) -> tuple[object, object, object]:
    """SB3's model with the rltasks task's hyperparameters; its env and a matching eval env.

    ``ortho_init``: SB3's orthogonal init of PPO and A2C, rltasks' own init (rl-zoo3's MuJoCo
    PPO sets turn it off, which rltasks cannot; ``fidelity.py`` turns it on). ``total_steps``
    turns DQN's epsilon decay (env steps in rltasks) into SB3's fraction of training.
    """
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.vec_env import VecNormalize

    task = make_task(algo, env=env)
    task.init(**(hparams or {}))
    hp, fixed = task.hp, task.fixed
    task.close()
    torch.set_num_threads(1)
    venv = make_vec_env(env, n_envs=fixed["num_envs"], seed=seed)
    eval_env = make_vec_env(env, n_envs=EVAL_EPISODES, seed=sb3_eval_seed(seed))
    if fixed["norm_obs"] or fixed["norm_reward"]:
        venv = VecNormalize(venv, norm_obs=fixed["norm_obs"], norm_reward=fixed["norm_reward"],
                            gamma=hp["gamma"])
        eval_env = VecNormalize(eval_env, training=False, norm_obs=fixed["norm_obs"],
                                norm_reward=False)
    act = torch.nn.ReLU if hp["activation"] == "relu" else torch.nn.Tanh
    net = [hp["hidden"]] * hp["layers"]
    common = {"learning_rate": hp["lr"], "gamma": hp["gamma"], "seed": seed, "device": "cpu",
              "verbose": 0}
    policy_kwargs = {"log_std_init": hp.get("log_std_init", 0.0), "ortho_init": ortho_init,
                     "activation_fn": act, "net_arch": {"pi": net, "vf": net}}
    if algo in ("ppo", "a2c"):
        expressible(hp, {"lr_schedule": "constant", "vf_clip": 0.0,
                         "clip_schedule": "constant"})
    if algo == "ppo":
        model = sb3.PPO("MlpPolicy", venv, n_steps=hp["n_steps"], batch_size=hp["batch_size"],
                        n_epochs=hp["update_epochs"], gae_lambda=hp["gae_lambda"],
                        clip_range=hp["clip_range"], ent_coef=hp["ent_coef"],
                        vf_coef=hp["vf_coef"], max_grad_norm=hp["max_grad_norm"],
                        normalize_advantage=hp["norm_adv"], policy_kwargs=policy_kwargs,
                        **common)
    elif algo == "a2c":
        expressible(hp, {"optimizer": "rmsprop", "momentum": 0.0})
        model = sb3.A2C("MlpPolicy", venv, n_steps=hp["n_steps"], gae_lambda=hp["gae_lambda"],
                        ent_coef=hp["ent_coef"], vf_coef=hp["vf_coef"],
                        max_grad_norm=hp["max_grad_norm"], normalize_advantage=hp["norm_adv"],
                        use_rms_prop=True, rms_prop_eps=1e-5, policy_kwargs=policy_kwargs,
                        **common)
    elif algo == "dqn":
        model = sb3_dqn(hp, venv, total_steps, {"net_arch": net, "activation_fn": act}, common)
    else:
        off = {"buffer_size": hp["buffer_size"], "learning_starts": hp["learning_starts"],
               "batch_size": hp["batch_size"], "tau": hp["tau"], "train_freq": hp["train_freq"],
               "gradient_steps": sb3_gradient_steps(hp),
               "policy_kwargs": {"net_arch": net, "activation_fn": act}}
        if algo == "sac":
            auto = hp["auto_ent_coef"]
            ent_coef = f"auto_{hp['ent_coef_init']}" if auto else hp["ent_coef_init"]
            if hp["use_sde"]:
                off["policy_kwargs"]["log_std_init"] = hp["log_std_init"]
            model = sb3.SAC("MlpPolicy", venv, ent_coef=ent_coef, use_sde=hp["use_sde"],
                            sde_sample_freq=hp["sde_sample_freq"], **off, **common)
        else:
            n = venv.action_space.shape[0]
            noise = NormalActionNoise(mean=torch.zeros(n).numpy(),
                                      sigma=hp["noise_sigma"] * torch.ones(n).numpy())
            model = sb3.TD3("MlpPolicy", venv, action_noise=noise,
                            policy_delay=hp["policy_delay"],
                            target_policy_noise=hp["target_noise"],
                            target_noise_clip=hp["target_noise_clip"], **off, **common)
    return model, venv, eval_env


def expressible(hp: dict, needs: dict) -> None:
    """Refuse, in one line, a setting of ours that SB3's class cannot express."""
    wrong = {k: hp[k] for k, v in needs.items() if k in hp and hp[k] != v}
    if wrong:
        raise ValueError(f"SB3 has no equivalent of {wrong} (it needs {needs})")


def sb3_gradient_steps(hp: dict) -> int:
    """SB3's ``gradient_steps`` for ours: ``-1`` with ``subsample_steps`` is a fixed count
    per ``train_freq`` steps of one env (the bench's off-policy runs have one)."""
    if hp["gradient_steps"] > 0:
        return hp["gradient_steps"]
    return max(hp["train_freq"] // hp.get("subsample_steps", 1), 1)


def sb3_dqn(hp: dict, venv: object, total_steps: int, policy_kwargs: dict,
            common: dict) -> object:
    """SB3's DQN with our DQN's settings: plain DQN (1-step, uniform replay, no double or
    dueling heads), epsilon decayed linearly over ``eps_decay`` of ``total_steps``."""
    import stable_baselines3 as sb3

    expressible(hp, {"double": False, "dueling": False, "n_step": 1, "replay": "uniform",
                     "loss": "huber", "exploration": "adaptive_epsilon",
                     "lr_schedule": "constant", "optimizer": "adam"})
    return sb3.DQN("MlpPolicy", venv, buffer_size=hp["buffer_size"],
                   learning_starts=hp["learning_starts"], batch_size=hp["batch_size"],
                   tau=hp["tau"], train_freq=hp["train_freq"],
                   gradient_steps=sb3_gradient_steps(hp),
                   target_update_interval=hp["target_update"],
                   exploration_fraction=min(1.0, hp["eps_decay"] / total_steps),
                   exploration_initial_eps=hp["eps_initial"],
                   exploration_final_eps=hp["eps_min"], max_grad_norm=hp["max_grad_norm"],
                   policy_kwargs=policy_kwargs, **common)


def run_sb3(algo: str, env: str, seed: int, steps: int, evals: int = EPOCHS,
            ortho_init: bool = False, hparams: dict | None = None) -> Result:
    """SB3 with our task's settings for the ``plan``'s budget, evaluated after each of the
    same epochs."""
    epochs, per_epoch = plan(algo, env, steps, evals, hparams)
    model, venv, eval_env = sb3_model(algo, env, seed, epochs * per_epoch, ortho_init, hparams)

    def sync() -> None:  # the eval env normalises with the training statistics
        if hasattr(venv, "obs_rms"):
            eval_env.obs_rms = venv.obs_rms

    return train_sb3(model, epochs * per_epoch, per_epoch, eval_env,
                     Result("sb3", seed, solved=float("inf")), before_eval=sync)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", default=[f"{a}:{e}" for a, e in PAIRS])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=None, help="env steps per run")
    args = parser.parse_args()
    print(f"rl-zoo3 settings, seeds {args.seeds}, torch threads 1, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for pair in args.pairs:
        algo, env = pair.split(":")
        steps = budget(algo, env, args.steps)
        runs: dict[str, list[Result]] = {"rltasks": [], "sb3": []}
        for seed in args.seeds:
            for impl, run in (("rltasks", run_rltasks), ("sb3", run_sb3)):
                r = run(algo, env, seed, steps)
                runs[impl].append(r)
                print(f"  {algo} {env} {impl} seed {seed}: {r.env_steps} steps, "
                      f"{r.sps:.0f} steps/s, evals "
                      + " ".join(f"{ret:.0f}" for _, ret in r.evals), flush=True)
        rows.append((algo, env, steps, runs))
    print("\n| algo | env | steps | rltasks return | sb3 return | rltasks steps/s | "
          "sb3 steps/s | published at 1M |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for algo, env, steps, runs in rows:
        cells = []
        for impl in ("rltasks", "sb3"):
            finals = [r.final_return for r in runs[impl]]
            spread = f" +- {statistics.pstdev(finals):.0f}" if len(finals) > 1 else ""
            cells.append(f"{statistics.fmean(finals):.0f}{spread}")
        sps = [f"{statistics.fmean(r.sps for r in runs[i]):.0f}" for i in ("rltasks", "sb3")]
        print(f"| {algo} | {env} | {steps} | {cells[0]} | {cells[1]} | {sps[0]} | {sps[1]} | "
              f"{PUBLISHED.get((algo, env), '-')} |")


if __name__ == "__main__":
    main()
