"""A trial's options and hyperparameters: the command line, the ``--config`` file, defaults.

``resolve`` merges them (command line > ``--config`` > defaults), checks every run option and
keeps the hyperparameters the task declares (plus ``<optimizer>.<name>`` ones), so the trial
starts only from valid input; anything else is a one-line ``UsageError``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from rltasks.hparams import flatten
from rltasks.optim import NAMESPACED_OPTIM_HPARAMS
from rltasks.safeio import FileRefused, YamlRefused, load_yaml
from rltasks.tasks import REGISTRY


def env_kwargs(value: Any) -> dict[str, Any]:
    """``--env-kwargs``: a JSON object (or, in a ``--config`` file, a mapping) of keyword
    arguments for the env constructor."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"not JSON ({err.msg})") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError("not a JSON object of name: value")
    return value


#: Options every script takes, besides one ``--<hparam>`` per hyperparameter.
RUN_OPTIONS: dict[str, tuple[Any, Any, str]] = {
    "env": (str, None, "env id (default: the task's, e.g. CartPole-v1 or Pendulum-v1); "
                       "module:EnvId-v0 imports module first (your own env), as gymnasium does"),
    "env_kwargs": (env_kwargs, None, "JSON object of keyword arguments for the env "
                                     "constructor, e.g. '{\"size\": 5}'"),
    "epochs": (int, 10, "train until this epoch (absolute)"),
    "steps_per_epoch": (int, None, "env steps per epoch, summed over envs"),
    "seed": (int, 0, "seed of everything"),
    "device": (str, "cpu", "where the networks train: cpu, cuda, cuda:N, mps or auto (cuda, "
                           "else mps, else cpu); not part of the run: it resumes on any"),
    "num_envs": (int, None, "parallel envs (default: the task's, 8 on-policy, 1 for dqn)"),
    "horizon": (int, None, "epochs over which lr/clip schedules run (default: --epochs)"),
    "vectorization": (str, "auto", "auto, sync, async, native, ale or envpool"),
    "env_state": (str, "auto", "snapshot: episodes run across epochs, the envs' state saved "
                               "in each checkpoint; reset: every epoch resets the envs; auto: "
                               "snapshot when the envs' state can be saved (a resumed run "
                               "keeps its checkpoint's mode)"),
    "norm_obs": (bool, None, "normalise observations with running statistics (default: "
                             "the task's for the env, e.g. on for PPO on MuJoCo, else off)"),
    "norm_reward": (bool, None, "normalise rewards by the running return std (default: "
                                "the task's for the env)"),
    "workdir": (str, None, "checkpoints and results (default $ORION_WORKING_DIR, "
                           "else runs/<task>-<env>-<seed>)"),
    "eval_episodes": (int, 10, "episodes of the final evaluation"),
    "objective": (str, "final", "what the trial reports to Orion, which minimises it: final, "
                                "minus the final evaluation's mean return; curve, minus the "
                                "mean over epochs of the training episodes' mean return (the "
                                "area under the learning curve: it rewards learning early, "
                                "on every seed)"),
    "eval_every": (int, 0, "evaluate every N epochs and keep best.ckpt (0: never)"),
    "save_freq": (int, 1, "write last.ckpt every N epochs"),
    "save_best": (bool, True, "with --eval-every, keep the best evaluation in best.ckpt"),
    "keep": (int, 3, "checkpoint files kept (last.ckpt and older)"),
    "criterion": (float, None, "stop early once the mean return of the last --trial-count "
                               "training episodes reaches this (default: never)"),
    "trial_count": (int, 100, "episodes the early-stopping mean runs over"),
    "tensorboard": (bool, False, "also write TensorBoard event files to WORKDIR/tb/ "
                                 "(needs tensorboard)"),
    "seeds": (int, 1, "train N seeds (--seed, --seed+1, ...) of this configuration, in "
                      "WORKDIR/seed-K, and report their mean: as one population in this "
                      "process where the task can (ppo, a2c, pg, dqn on vector observations), "
                      "else in parallel processes"),
    "seed_processes": (bool, False, "with --seeds, train one process per seed even where "
                                    "the seeds could train as one population"),
    "allow_hparam_change": (bool, False, "continue a checkpoint written with other "
                                         "hyperparameters under these ones (PBT, PB2)"),
}
_POSITIVE = ("epochs", "num_envs", "eval_episodes", "save_freq", "keep", "trial_count", "seeds")
OBJECTIVES = ("final", "curve")


class UsageError(ValueError):
    """A bad command line, config file or hyperparameter: reported in one line."""


def parse_bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean")


def build_parser(task_name: str) -> argparse.ArgumentParser:
    """Parser with the run options and one ``--<hparam>`` (dashes or underscores) each."""
    cls = REGISTRY[task_name]
    parser = argparse.ArgumentParser(
        prog=f"{task_name}", description=f"Train {task_name} as one (Orion) trial.",
        argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML/JSON file of options and hyperparameters "
                        "(Orion hands over its trial config here)")
    run = parser.add_argument_group("run")
    hps = parser.add_argument_group("hyperparameters")
    for group, items in ((run, RUN_OPTIONS.items()),
                         (hps, ((k, (hp.kind, hp.default, hp.help))
                                for k, hp in cls.hparam_specs().items()))):
        for key, (kind, default, text) in items:
            names = [f"--{key.replace('_', '-')}"] + ([f"--{key}"] if "_" in key else [])
            if kind is bool:
                group.add_argument(*names, dest=key, type=parse_bool, nargs="?", const=True,
                                   help=f"{text} (default {default})")
            else:
                # ints may come as Orion's floats; others are checked by resolve, in one line
                group.add_argument(*names, dest=key, type={int: float, float: float}.get(kind, str),
                                   help=f"{text} (default {default})")
    own = parser.add_argument_group(
        "optimizer-specific", "apply only when --optimizer is that optimizer (optimizer hunts)")
    for flag in NAMESPACED_OPTIM_HPARAMS:
        name, _, key = flag.partition(".")
        names = [f"--{flag.replace('_', '-')}"] + ([f"--{flag}"] if "_" in key else [])
        own.add_argument(*names, dest=flag, type=float, metavar=key.upper(),
                         help=f"{key} when the optimizer is {name}")
    return parser


def load_config(path: str) -> dict[str, Any]:
    """Read a config by content (Orion's copies end in ``.conf``): YAML, which covers JSON.

    Read by ``rltasks.safeio.load_yaml``: only a regular file of at most 1 MiB, and a
    document whose aliases expand past 100,000 values (or into themselves), or nested
    deeper than Python's recursion allows, is refused: a one-line ``UsageError``.
    """
    try:
        data = load_yaml(path, "--config")
    except OSError as err:
        raise UsageError(f"cannot read --config {path}: {err.strerror or err}") from None
    except FileRefused as err:
        raise UsageError(f"{err}: pass a YAML or JSON file of option: value") from None
    except YamlRefused as err:
        raise UsageError(str(err)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {path} must hold a mapping of option: value")
    kwargs = [data.pop(k) for k in ("env_kwargs", "env-kwargs") if k in data]
    flat = flatten(data)
    if kwargs:  # a mapping, kept whole: the env's own keyword arguments
        flat["env_kwargs"] = kwargs[-1]
    return flat


def resolve(task_name: str, argv: list[str] | None,
            config: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(options, hparams)`` from the command line, the config file and defaults.

    ``config``, when given, replaces the ``--config`` file (``resolve_agent`` passes the
    agent's part of it).
    """
    specs = dict(REGISTRY[task_name].hparam_specs())
    specs.update({flag: specs[flag.partition(".")[2]] for flag in NAMESPACED_OPTIM_HPARAMS})
    given = vars(build_parser(task_name).parse_args(argv))
    path = given.pop("config", None)
    if config is None:
        config = load_config(path) if path else {}
    priors = sorted(k for k, v in config.items() if isinstance(v, str) and v.startswith("orion~")
                    and k not in given)
    if priors and os.environ.get("ORION_TRIAL_ID"):
        raise UsageError(f"Orion left {priors} unsampled in the trial's config; nest "
                         f"namespaced entries (sgd: {{momentum: ...}}), not dotted keys")
    if priors:
        print(f"not under orion hunt: {', '.join(priors)} keep their defaults "
              f"(the config's search-space entries apply only to a hunt)", file=sys.stderr)
    config = {k: v for k, v in config.items()
              if not (isinstance(v, str) and v.startswith("orion~"))}
    unknown = sorted(set(config) - set(RUN_OPTIONS) - set(specs))
    if unknown:
        raise UsageError(f"unknown option(s) {unknown} in the config; valid: run options "
                         f"{sorted(RUN_OPTIONS)} and hyperparameters {sorted(specs)} "
                         f"(<optimizer>.<name> ones apply to that optimizer only)")
    merged = {**config, **given}
    options = {k: merged.get(k, default) for k, (_, default, _) in RUN_OPTIONS.items()}
    options["env"] = options["env"] or REGISTRY[task_name].DEFAULT_ENV
    for key, (kind, _, _) in RUN_OPTIONS.items():
        value = options[key]
        if value is None:
            continue
        try:
            options[key] = parse_bool(value) if kind is bool else (
                int(round(float(value))) if kind is int else kind(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            why = f": {err}" if kind is env_kwargs else ""
            raise UsageError(f"--{key.replace('_', '-')} {value!r} is not a valid "
                             f"{kind.__name__}{why}") from None
        if key in _POSITIVE and options[key] < 1:
            raise UsageError(f"--{key.replace('_', '-')} {value!r} must be >= 1")
    if options["objective"] not in OBJECTIVES:
        raise UsageError(f"--objective {options['objective']!r} is not one of {OBJECTIVES}")
    hparams = {k: v for k, v in merged.items() if k in specs}
    return options, hparams


def default_workdir(task_name: str, options: dict[str, Any]) -> Path:
    """``--workdir``, else Orion's per-trial dir, else ``runs/<task>-<env>-<seed>``."""
    if options["workdir"]:
        return Path(options["workdir"])
    if os.environ.get("ORION_WORKING_DIR"):
        return Path(os.environ["ORION_WORKING_DIR"])
    env = options["env"].replace("/", "_")  # namespaced ids: rltasks/PointReach-v0
    return Path("runs") / f"{task_name}-{env}-{options['seed']}"
