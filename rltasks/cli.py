"""The ``rltasks`` command.

- ``rltasks best NAME``: the best completed trial of an Orion experiment, with the command line
  that reproduces it alone.
- ``rltasks report NAME``: every trial of an Orion experiment in a table, the best one, and
  PNG plots (objective against each hyperparameter, learning curves of the best trials).
- ``rltasks inspect FILE``: what a checkpoint holds, without building a model.
- ``rltasks train TASK ...``: one run, with the options of ``scripts/<task>.py``.
- ``rltasks eval RUN_DIR``: the trained agent's deterministic evaluation, as JSON.
- ``rltasks plot RUN_DIR...``: learning curves on one PNG, runs differing by seed grouped.
- ``rltasks export RUN_DIR``: the deterministic policy as TorchScript or ONNX, parity-checked.
- ``rltasks record RUN_DIR``: a GIF (or mp4) of the trained agent's deterministic episodes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

from rltasks.checkpoint import CheckpointError, peek


def _experiment(name: str) -> Any:
    """Load an Orion experiment read-only (the storage follows ORION_DB_* and orion's config)."""
    with warnings.catch_warnings():  # orion warns about optional extras and pkg_resources
        warnings.simplefilter("ignore")
        from orion.client import get_experiment
        from orion.core.utils.exceptions import NoConfigurationError
    try:
        return get_experiment(name, mode="r")
    except NoConfigurationError:
        raise ValueError(f"no Orion experiment named {name!r} in this database "
                         f"(check ORION_DB_ADDRESS or `orion list`)") from None


def best_trial(name: str, exp: Any = None) -> dict[str, Any]:
    """Summary of the best completed trial of experiment ``name`` (``exp``: the experiment,
    if the caller has loaded it already)."""
    exp = exp if exp is not None else _experiment(name)
    completed = [t for t in exp.fetch_trials_by_status("completed") if t.objective is not None]
    if not completed:
        raise ValueError(f"experiment {name!r} has no completed trial yet; `orion status -n "
                         f"{name}` shows why (broken trials print their error in the hunt log)")
    best = min(completed, key=lambda t: t.objective.value)
    from rltasks.report import active_params

    params = active_params(best.params)  # flat; without the ignored namespaced ones
    command: list[str] = []
    for arg in exp.metadata.get("user_args") or []:
        if "~" in arg:  # a prior (--lr~'loguniform(...)'): its value follows from params
            continue
        if "{" in arg and "}" in arg:  # a template (--workdir '{exp.working_dir}/...')
            if command and command[-1].startswith("--"):
                command.pop()
            continue
        command.append(arg)
    # the values win over the --config file, whose orion~ entries a plain run ignores
    command += [f"--{k.replace('_', '-')}={v}" for k, v in params.items()]
    results_path = Path(best.working_dir or "") / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else None
    return {"experiment": name, "trial": best.id, "objective": best.objective.value,
            "params": params, "working_dir": best.working_dir, "results": results,
            "trials": {"completed": len(completed), "total": len(exp.fetch_trials())},
            "command": shlex.join(command)}


def _print_best(info: dict[str, Any]) -> None:
    print(f"best of {info['trials']['completed']} completed trials "
          f"({info['trials']['total']} in all) of {info['experiment']!r}:")
    print(f"  trial      {info['trial']}")
    print(f"  objective  {info['objective']:.4g}  (-return_mean)")
    if info["results"]:
        r = info["results"]
        print(f"  return     {r['return_mean']:.1f} +- {r['return_std']:.1f} over "
              f"{r['episodes']} episodes after {r['env_steps']} env steps")
    print(f"  workdir    {info['working_dir']}")
    for key, value in info["params"].items():
        print(f"  {key:<14} {value}")
    print(f"  rerun with: {info['command']}")


def _task_names() -> list[str]:
    from rltasks.tasks import REGISTRY

    return sorted(REGISTRY)


def _train(task: str, argv: list[str]) -> int:
    """``rltasks train TASK ...`` is ``python scripts/TASK.py ...``."""
    from rltasks import run

    if task not in _task_names():
        raise ValueError(f"unknown task {task!r}: choose one of {_task_names()}")
    return run.main(task, argv)


def evaluate_run(path: str, episodes: int = 10, best: bool = False) -> dict[str, Any]:
    """Rebuild a run's task from its checkpoint and evaluate it (the eval envs' seeds are the
    task's own, so a finished run scores what its results.json says)."""
    from rltasks.runs import checkpoint_of, load_task

    if episodes < 1:
        raise ValueError(f"--episodes {episodes} must be >= 1")
    task = load_task(path, best=best)
    try:
        result = task.evaluate(episodes)
    finally:
        task.close()
    return {"task": task.name, "env": task.env_id, "checkpoint": str(checkpoint_of(path, best)),
            "epoch": task.epoch, "env_steps": task.env_steps, **result}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rltasks`` console script."""
    parser = argparse.ArgumentParser(prog="rltasks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    best = sub.add_parser("best", help="print the best trial of an Orion experiment")
    best.add_argument("name", help="experiment name (orion hunt -n NAME)")
    best.add_argument("--json", action="store_true", help="print JSON")
    report = sub.add_parser("report", help="table and plots of an Orion experiment's trials")
    report.add_argument("name", help="experiment name (orion hunt -n NAME)")
    report.add_argument("--out", default=None, help="plot directory (default reports/NAME/)")
    inspect = sub.add_parser("inspect", help="print what a checkpoint holds")
    inspect.add_argument("file")
    train = sub.add_parser("train", help="train one run (the options of scripts/TASK.py; "
                           "`rltasks train TASK --help` lists them)", add_help=False)
    train.add_argument("task", help="task name: " + ", ".join(_task_names()))
    train.add_argument("args", nargs=argparse.REMAINDER, help="options of scripts/TASK.py")
    evaluate = sub.add_parser("eval", help="evaluate a trained run, print JSON")
    evaluate.add_argument("run", help="run directory (its last.ckpt) or a checkpoint file")
    evaluate.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    evaluate.add_argument("--best", action="store_true",
                          help="use best.ckpt (kept with --eval-every) when there is one")
    plot = sub.add_parser("plot", help="learning curves of runs on one PNG (seeds grouped)")
    plot.add_argument("runs", nargs="+", help="run directories")
    plot.add_argument("--out", default="curves.png", help="PNG file (default curves.png)")
    plot.add_argument("--title", default=None)
    export = sub.add_parser("export", help="write the deterministic policy alone, checked "
                            "against the task's actions")
    export.add_argument("run", help="run directory (its last.ckpt) or a checkpoint file")
    export.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    export.add_argument("--out", default=None, help="file (default RUN_DIR/policy.pt|.onnx)")
    export.add_argument("--best", action="store_true", help="use best.ckpt if there is one")
    record = sub.add_parser("record", help="a GIF (or mp4) of the trained agent")
    record.add_argument("run", help="run directory (its last.ckpt) or a checkpoint file")
    record.add_argument("--out", default=None, help="file.gif or file.mp4 (mp4 needs "
                        "imageio-ffmpeg; default RUN_DIR/video.gif)")
    record.add_argument("--episodes", type=int, default=1, help="episodes (default 1)")
    record.add_argument("--best", action="store_true", help="use best.ckpt if there is one")
    record.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    args = parser.parse_args(argv)
    try:
        if args.command == "best":
            info = best_trial(args.name)
            print(json.dumps(info)) if args.json else _print_best(info)
        elif args.command == "report":
            from rltasks.report import report as print_report

            print_report(args.name, args.out)
        elif args.command == "train":
            return _train(args.task, args.args)
        elif args.command == "plot":
            from rltasks.plot import plot_runs

            print(plot_runs(args.runs, args.out, args.title))
        elif args.command == "export":
            from rltasks.export import export_run

            print(json.dumps(export_run(args.run, args.format, args.out, args.best)))
        elif args.command == "record":
            from rltasks.record import record_run

            print(json.dumps(record_run(args.run, args.out, args.episodes, args.best,
                                        args.fps)))
        elif args.command == "eval":
            print(json.dumps(evaluate_run(args.run, args.episodes, args.best)))
        else:
            print(json.dumps(peek(args.file), indent=2, default=str))
    except (ValueError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
