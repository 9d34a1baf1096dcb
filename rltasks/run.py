"""One trial, alone or under ``orion hunt``.

parse hyperparameters (command line > ``--config`` file > defaults) -> build the task ->
resume from the working dir's newest valid checkpoint -> ``fit(epochs)`` with a checkpoint
after every epoch -> evaluate -> write ``results.json``, report ``-return_mean`` to Orion and
print one JSON line. This module never touches a tensor: that is the task's business.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from rltasks.checkpoint import Checkpointer, CheckpointError, write_atomic
from rltasks.optim import NAMESPACED_OPTIM_HPARAMS
from rltasks.preempt import Preempted, StopAtEpochEnd, StopSignals, interrupt_code
from rltasks.space import flatten
from rltasks.task import NonFiniteError
from rltasks.workdir import WorkdirLock

#: Options every script takes, besides one ``--<hparam>`` per hyperparameter.
RUN_OPTIONS: dict[str, tuple[type, Any, str]] = {
    "env": (str, None, "env id (default: the task's, e.g. CartPole-v1 or Pendulum-v1)"),
    "epochs": (int, 10, "train until this epoch (absolute)"),
    "steps_per_epoch": (int, None, "env steps per epoch, summed over envs"),
    "seed": (int, 0, "seed of everything"),
    "num_envs": (int, None, "parallel envs (default: the task's, 8 on-policy, 1 for dqn)"),
    "horizon": (int, None, "epochs over which lr/clip schedules run (default: --epochs)"),
    "vectorization": (str, "auto", "auto, sync, async or native"),
    "norm_obs": (bool, False, "normalise observations with running statistics"),
    "norm_reward": (bool, False, "normalise rewards by the running return std"),
    "workdir": (str, None, "checkpoints and results (default $ORION_WORKING_DIR, "
                           "else runs/<task>-<env>-<seed>)"),
    "eval_episodes": (int, 10, "episodes of the final evaluation"),
    "eval_every": (int, 0, "evaluate every N epochs and keep best.ckpt (0: never)"),
    "save_freq": (int, 1, "write last.ckpt every N epochs"),
    "save_best": (bool, True, "with --eval-every, keep the best evaluation in best.ckpt"),
    "keep": (int, 3, "checkpoint files kept (last.ckpt and older)"),
    "criterion": (float, None, "stop early once the mean return of the last --trial-count "
                               "training episodes reaches this (default: never)"),
    "trial_count": (int, 100, "episodes the early-stopping mean runs over"),
    "tensorboard": (bool, False, "also write TensorBoard event files to WORKDIR/tb/ "
                                 "(needs tensorboard)"),
    "seeds": (int, 1, "train N seeds (--seed, --seed+1, ...) of this configuration in "
                      "parallel processes, in WORKDIR/seed-K, and report their mean"),
    "allow_hparam_change": (bool, False, "continue a checkpoint written with other "
                                         "hyperparameters under these ones (PBT, PB2)"),
}
_POSITIVE = ("epochs", "num_envs", "eval_episodes", "save_freq", "keep", "trial_count", "seeds")


class UsageError(ValueError):
    """A bad command line, config file or hyperparameter: reported in one line."""


def _parse_bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean")


def build_parser(task_name: str) -> argparse.ArgumentParser:
    """Parser with the run options and one ``--<hparam>`` (dashes or underscores) each."""
    from rltasks.tasks import REGISTRY

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
                group.add_argument(*names, dest=key, type=_parse_bool, nargs="?", const=True,
                                   help=f"{text} (default {default})")
            else:
                group.add_argument(*names, dest=key, type=kind if kind is not int else float,
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
    """Read a config by content (Orion's copies end in ``.conf``): YAML, which covers JSON."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf8"))
    except OSError as err:
        raise UsageError(f"cannot read --config {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UsageError(f"--config {path} is not YAML or JSON: {err}".splitlines()[0]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {path} must hold a mapping of option: value")
    return flatten(data)


def resolve(task_name: str, argv: list[str] | None,
            config: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(options, hparams)`` from the command line, the config file and defaults.

    ``config``, when given, replaces the ``--config`` file (``resolve_agent`` passes the
    agent's part of it).
    """
    from rltasks.tasks import REGISTRY

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
            options[key] = _parse_bool(value) if kind is bool else (
                int(round(float(value))) if kind is int else kind(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            raise UsageError(f"--{key.replace('_', '-')} {value!r} is not a valid "
                             f"{kind.__name__}") from None
        if key in _POSITIVE and options[key] < 1:
            raise UsageError(f"--{key.replace('_', '-')} {value!r} must be >= 1")
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


def _checker(task_name: str, task: Any, workdir: Path, allow_hparam_change: bool = False):
    """Refuse a checkpoint of another task, env or loader setting, and one of other
    hyperparameters unless ``allow_hparam_change`` (then the caller adopts it)."""
    def check(payload: Any) -> None:
        if not isinstance(payload, dict) or "state" not in payload:
            raise ValueError(f"{workdir} holds a file that is not a task checkpoint; "
                             f"use another --workdir or delete it")
        ours = {"task": task_name, **task.fixed}
        theirs = {"task": payload.get("task"), **(payload.get("fixed") or {})}
        hint = "use another --workdir or delete it to start over"
        if not allow_hparam_change:
            ours.update(task.hparams())
            theirs.update(payload.get("hparams") or {})
            hint += (", or pass --allow-hparam-change to continue it with these "
                     "hyperparameters (as PBT does)")
        diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if diff:
            what = ", ".join(f"{k}={theirs.get(k)!r} there, {ours.get(k)!r} here" for k in diff)
            raise ValueError(f"{workdir} holds a checkpoint of another run ({what}); {hint}")
    return check


def report_to_orion(results: dict[str, Any], extra: tuple[str, ...] = ()) -> None:
    """Hand the objective and statistics to Orion when running as one of its trials.

    This writes what ``orion.client.report_results`` writes, to the same file, without
    importing Orion in every trial (which costs start-up time and import-time warnings).
    """
    path = os.environ.get("ORION_RESULTS_PATH")
    if not path:
        return
    data = [{"name": "objective", "type": "objective", "value": results["objective"]}]
    data += [{"name": k, "type": "statistic", "value": results[k]}
             for k in ("return_mean", "return_std", "length_mean", "env_steps", "env_steps_run",
                       *extra)]
    Path(path).write_text(json.dumps(data), encoding="utf8")


def run(task_name: str, options: dict[str, Any], hparams: dict[str, Any],
        log=None) -> dict[str, Any]:
    """Train one trial to ``options['epochs']`` with checkpoints; return its results.

    The working dir's lock (``rltasks.workdir``) is held throughout: a second process on the
    same dir raises ``LockError``. SIGTERM/SIGINT stop training at the next epoch boundary,
    checkpointed, by raising ``rltasks.preempt.Preempted``.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    workdir = default_workdir(task_name, options)
    # signals first: env workers forked while the task is built inherit the handler
    with StopSignals(log) as signals, WorkdirLock(workdir, log=log):
        return _train(task_name, options, hparams, log, workdir, signals)


def _train(task_name: str, options: dict[str, Any], hparams: dict[str, Any], log,
           workdir: Path, signals: StopSignals) -> dict[str, Any]:
    import rltasks
    from rltasks.observers import (
        Checkpointing,
        EarlyStop,
        MetricsLog,
        TensorBoardLog,
        progress_observer,
    )

    epochs = options["epochs"]
    board = TensorBoardLog(workdir / "tb") if options.get("tensorboard") else None
    task = rltasks.make_task(
        task_name, env=options["env"], num_envs=options["num_envs"], seed=options["seed"],
        steps_per_epoch=options["steps_per_epoch"], horizon=options["horizon"] or epochs,
        vectorization=options["vectorization"], norm_obs=options["norm_obs"],
        norm_reward=options["norm_reward"])
    task.init(**hparams)
    checkpointer = Checkpointer(workdir, keep=options["keep"])
    checkpointer.clean_tmp()
    found = checkpointer.load_latest(
        check=_checker(task_name, task, workdir, options["allow_hparam_change"]), log=log)
    resumed_from = stopped = None
    resumed_steps, adopted = 0, None
    if found is not None:
        payload, path = found
        if payload.get("hparams") == task.hparams():
            task.load_state_dict(payload["state"])
        else:  # --allow-hparam-change: PBT's child continues its parent's checkpoint
            adopted = task.adopt_state_dict(payload["state"], payload.get("hparams") or {})
            log(f"continuing {path} with changed hyperparameters: "
                + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in adopted.items()))
        resumed_from, resumed_steps = task.epoch, task.env_steps
        log(f"resumed from {path} at epoch {task.epoch}")
        stopped = EarlyStop.resume(task, payload.get("run"))
        if stopped is not None:
            log(f"early stop recorded at epoch {stopped}: not training further")
    if options["criterion"] is not None:
        task.observers.append(EarlyStop(options["criterion"], options["trial_count"]))
    task.observers += [
        Checkpointing(checkpointer, every=options["save_freq"], final_epoch=epochs,
                      eval_every=options["eval_every"], eval_episodes=options["eval_episodes"],
                      save_best=options["save_best"]),
        MetricsLog(workdir / "metrics.jsonl"),
        *([board] if board else []),
        progress_observer(epochs),
        StopAtEpochEnd(signals, checkpointer, options["save_freq"], epochs),
    ]
    try:
        if signals.received:
            raise Preempted(signals.received, f"stopped before training (epoch {task.epoch} "
                                              f"of {epochs})")
        try:
            task.fit(epochs)
        except Exception as err:
            if signals.received is None or isinstance(err, Preempted):
                raise
            raise Preempted(signals.received, f"stopped in epoch {task.epoch + 1} of {epochs}, "
                            f"which is lost ({type(err).__name__}: the env workers got the "
                            f"signal too); the last checkpoint is intact") from err
        if task.stop_reason is not None and stopped is None:
            log(task.stop_reason)
        final = task.evaluate(options["eval_episodes"])
    finally:
        task.close()
        if board:
            board.close()
    results = {"task": task_name, "env": options["env"], "seed": options["seed"],
               "objective": -final["return_mean"], **final, "epoch": task.epoch,
               "env_steps": task.env_steps, "resumed_from": resumed_from,
               "env_steps_run": task.env_steps - resumed_steps,
               "hparam_changes": [{"epoch": row["epoch"], "changed": row["hparams_changed"]}
                                  for row in task.history if "hparams_changed" in row],
               "hparams_adopted": adopted,
               "early_stopped_at": getattr(task, "run_state", {}).get(
                   "early_stop", {}).get("stopped_at"),
               "hparams": task.hparams(), "workdir": str(workdir)}
    write_atomic(workdir / "results.json", json.dumps(results, indent=2).encode())
    report_to_orion(results)
    return results


#: ``scripts/agent.py``'s pseudo task: ``--agent`` names the real one
AGENT = "agent"
AGENT_HELP = """usage: agent.py --agent NAME [options of scripts/NAME.py] [--NAME.HPARAM VALUE ...]

Train the agent NAME ({agents}) as one (Orion) trial: an agent finder.
Options <agent>.<hparam> (--ppo.clip-range 0.2; nested `ppo: {{clip_range: ...}}` in a
--config file) apply only when that agent runs; the others are ignored and not recorded.
`python scripts/agent.py --agent ppo --help` lists the options of ppo."""


def _namespaced_flag(token: str) -> tuple[str, str, str | None] | None:
    """``--ppo.clip-range[=V]`` -> ``("ppo", "clip_range", V or None)``; None for others."""
    if not token.startswith("--"):
        return None
    name, eq, value = token[2:].partition("=")
    prefix, dot, rest = name.partition(".")
    if not dot:
        return None
    return prefix, rest.replace("-", "_"), value if eq else None


def resolve_agent(argv: list[str]) -> tuple[str, list[str], dict[str, Any]]:
    """``scripts/agent.py``: pick the task named by ``--agent`` (command line or config) and
    keep only its namespaced hyperparameters (``ppo.clip_range`` -> ``clip_range`` when the
    agent is ppo); those of the other agents are ignored and not recorded.

    Returns ``(task name, argv for it, config for it)``, for ``resolve``.
    """
    from rltasks.envs import check_env_id
    from rltasks.space import namespaced
    from rltasks.tasks import REGISTRY

    pre = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    pre.add_argument("--agent")
    pre.add_argument("--config")
    pre.add_argument("--env")
    known, rest = pre.parse_known_args(argv)
    config = load_config(known.config) if hasattr(known, "config") else {}
    agent = getattr(known, "agent", config.pop("agent", None))
    config.pop("agent", None)
    if agent is None and ("-h" in rest or "--help" in rest):
        print(AGENT_HELP.format(agents=", ".join(sorted(REGISTRY))))
        raise SystemExit(0)
    if agent is None or str(agent).startswith("orion~"):
        raise UsageError(f"--agent is required: one of {sorted(REGISTRY)} that fits the env")
    if agent not in REGISTRY:
        raise UsageError(f"--agent {agent!r} is not a task: choose one of {sorted(REGISTRY)}")
    env = getattr(known, "env", config.get("env")) or REGISTRY[agent].DEFAULT_ENV
    # every namespaced name must exist, whichever agent this trial runs
    flags = {}
    for token in rest:
        parsed = _namespaced_flag(token)
        if parsed and parsed[0] in REGISTRY:
            flags[f"{parsed[0]}.{parsed[1]}"] = token
    for key in [*config, *flags]:
        prefix, dot, name = key.partition(".")
        if dot and prefix in REGISTRY:
            valid = set(REGISTRY[prefix].hparam_specs()) | set(NAMESPACED_OPTIM_HPARAMS)
            if name not in valid:
                raise UsageError(f"{key!r}: {prefix} has no hyperparameter {name!r}; "
                                 f"valid: {sorted(valid)}")
    config, ignored = namespaced(config, agent, REGISTRY)
    argv_out: list[str] = []
    skip = False
    for i, token in enumerate(rest):
        if skip:
            skip = False
            continue
        parsed = _namespaced_flag(token)
        if not parsed or parsed[0] not in REGISTRY:
            argv_out.append(token)
            continue
        prefix, name, value = parsed
        takes_next = value is None and i + 1 < len(rest) and not rest[i + 1].startswith("--")
        if prefix == agent:
            argv_out.append(f"--{name}" + (f"={value}" if value is not None else ""))
        else:
            ignored.append(f"{prefix}.{name}")
            skip = takes_next
    if ignored:
        print(f"agent {agent}: ignoring {', '.join(sorted(ignored))} (other agents')",
              file=sys.stderr)
    check_env_id(env)
    argv_out += ["--env", env] if hasattr(known, "env") else []
    return agent, argv_out, config


def _die_with_parent() -> None:
    """In a seed's process (Linux): SIGKILL it when the parent dies, e.g. SIGKILLed with its
    Orion worker, so no orphan keeps training or holds its working dir when Orion reruns the
    trial (the seed's last checkpoint is intact: writes are atomic)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ORION_RESULTS_PATH", None)  # the parent reports the mean
    return env


def run_seeds(script: str, argv: list[str], task_name: str, options: dict[str, Any],
              log=None) -> dict[str, Any]:
    """``--seeds N``: train seeds ``seed .. seed+N-1`` of one configuration, each in its own
    process and ``WORKDIR/seed-K`` (so each resumes on its own), at most one per core at a
    time; return their mean as the objective, with the spread and each seed's results.

    ``script`` is what ``python -m rltasks.run`` runs (a task name, or ``agent``).
    SIGTERM/SIGINT are passed on to the seeds, which checkpoint and stop.
    """
    import subprocess
    import time

    import numpy as np

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    workdir = default_workdir(task_name, options)
    seeds = [options["seed"] + i for i in range(options["seeds"])]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    slots = max(1, min(len(seeds), cores or 1))
    todo: list[int] | None = list(seeds)  # None: no more seeds, the seeds were told to stop
    running: dict[int, Any] = {}
    codes: dict[int, int] = {}
    with StopSignals(log) as signals, WorkdirLock(workdir, log=log):
        while todo or running:
            while todo and len(running) < slots and signals.received is None:
                seed = todo.pop(0)
                cmd = [sys.executable, "-m", "rltasks.run", script, *argv, "--seeds", "1",
                       "--seed", str(seed), "--workdir", str(workdir / f"seed-{seed}")]
                running[seed] = subprocess.Popen(
                    cmd, env=_child_env(), stdout=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            if signals.received is not None and todo is not None:
                todo = None  # tell them once: a second SIGTERM stops a seed mid-epoch
                for proc in running.values():
                    if proc.poll() is None:
                        proc.terminate()
            for seed, proc in list(running.items()):
                if proc.poll() is not None:
                    codes[seed] = proc.returncode
                    del running[seed]
            time.sleep(0.05)
    if signals.received is not None:
        raise Preempted(signals.received, f"seeds {sorted(codes)} stopped at an epoch end")
    failed = {s: c for s, c in codes.items() if c != 0}
    if failed:
        first = min(failed)
        error = NonFiniteError if failed[first] == 3 else UsageError
        raise error(f"seed(s) {sorted(failed)} of --seeds {len(seeds)} failed (exit codes "
                    f"{sorted(set(failed.values()))}); see their errors above and "
                    f"{workdir / f'seed-{first}'}")
    per_seed = [json.loads((workdir / f"seed-{s}" / "results.json").read_text(encoding="utf8"))
                for s in seeds]
    objectives = np.array([r["objective"] for r in per_seed])
    returns = np.array([r["return_mean"] for r in per_seed])
    results = {"task": task_name, "env": options["env"], "seed": options["seed"],
               "seeds": seeds, "objective": float(objectives.mean()),
               "objective_std": float(objectives.std()),
               "return_mean": float(returns.mean()), "return_std": float(returns.std()),
               "return_min": float(returns.min()), "return_max": float(returns.max()),
               "length_mean": float(np.mean([r["length_mean"] for r in per_seed])),
               "epoch": min(r["epoch"] for r in per_seed),
               "env_steps": int(sum(r["env_steps"] for r in per_seed)),
               "env_steps_run": int(sum(r["env_steps_run"] for r in per_seed)),
               "hparams": per_seed[0]["hparams"], "workdir": str(workdir),
               "per_seed": [{k: r[k] for k in ("seed", "objective", "return_mean", "epoch",
                                                "resumed_from")} for r in per_seed]}
    write_atomic(workdir / "results.json", json.dumps(results, indent=2).encode())
    report_to_orion(results, extra=("objective_std", "return_min", "return_max"))
    return results


def main(task_name: str, argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/<task>.py`` (and of ``scripts/agent.py`` with ``"agent"``):
    returns the process exit code.

    Bad input (options, hyperparameters, env id, a foreign checkpoint) exits 2 with one line
    on stderr, which Orion records as a broken trial; a diverged run exits 3 and keeps its
    last good checkpoint. A working dir locked by another process, or a checkpoint that
    cannot be written (the previous one stays intact), exits 2 too. SIGTERM/SIGINT exit
    with Orion's interrupt code (130 unless ``$ORION_INTERRUPT_CODE`` says otherwise) once
    the epoch in progress is checkpointed, so Orion marks the trial interrupted, not broken.
    """
    original = argv = list(sys.argv[1:] if argv is None else argv)
    script = task_name
    try:
        config = None
        if task_name == AGENT:
            task_name, argv, config = resolve_agent(argv)
        options, hparams = resolve(task_name, argv, config)
        if options["seeds"] > 1:
            results = run_seeds(script, original, task_name, options)
        else:
            results = run(task_name, options, hparams)
    except (ValueError, CheckpointError, OSError) as err:
        code = 3 if isinstance(err, NonFiniteError) else 2
        print(f"error: {err}", file=sys.stderr)
        return code
    except Preempted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return interrupt_code()
    except KeyboardInterrupt:
        print("interrupted: stopped at once; the last checkpoint is intact, rerun the same "
              "command to resume", file=sys.stderr)
        return interrupt_code()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":  # python -m rltasks.run TASK|agent [options]: --seeds' children
    sys.exit(main(sys.argv[1], sys.argv[2:]))
