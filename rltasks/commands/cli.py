"""The ``rltasks`` command (also ``python -m rltasks``).

- ``rltasks best NAME``: the best completed trial of an Orion experiment, with the command line
  that reproduces it alone; ``--reeval N`` retrains the ``--top`` trials on N fresh seeds and
  ranks them by their mean final return (``rltasks.orion.reeval``).
- ``rltasks report NAME``: every trial of an Orion experiment in a table, the best one, and
  PNG plots (objective against each hyperparameter, learning curves of the best trials).
- ``rltasks inspect FILE``: what a checkpoint holds, without building a model.
- ``rltasks train TASK ...``: one run, with the options of ``scripts/<task>.py``.
- ``rltasks lr-range TASK ...``: one run with a growing learning rate; plots the return
  against it and suggests log-uniform bounds for a hunt (``rltasks.commands.lr_range``).
- ``rltasks eval RUN_DIR``: the trained agent's deterministic evaluation, as JSON.
- ``rltasks plot RUN_DIR...``: learning curves on one PNG, runs differing by seed grouped.
- ``rltasks export RUN_DIR``: the deterministic policy as TorchScript or ONNX, parity-checked.
- ``rltasks record RUN_DIR``: a GIF (or mp4) of the trained agent's deterministic episodes.

Each subcommand is one row of ``COMMANDS``: its help, its arguments and its handler.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rltasks.checkpoint import CheckpointError, peek
from rltasks.commands.evaluate import evaluate_run
from rltasks.commands.export import FORMATS, export_run
from rltasks.commands.lr_range import lr_range, plot, print_result, write_space
from rltasks.commands.plot import plot_runs
from rltasks.commands.record import record_run
from rltasks.orion.experiments import best_trial
from rltasks.orion.reeval import SEED as REEVAL_SEED
from rltasks.orion.reeval import print_reeval, reeval
from rltasks.orion.report import print_best, report
from rltasks.tasks import REGISTRY
from rltasks.trial.preempt import settled
from rltasks.trial.run import main as train_main

RUN_HELP = "run directory (its last.ckpt) or a checkpoint file"


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, how it adds its arguments, what it does (the handler
    returns the exit code, None for 0)."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int | None]
    add_help: bool = True
    #: the options it does not know go to ``args.args`` (those of ``scripts/TASK.py``)
    passes_on: bool = False


def _experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="experiment name (orion hunt -n NAME)")


def _best_args(p: argparse.ArgumentParser) -> None:
    _experiment_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--reeval", type=int, default=0, metavar="N",
                   help="retrain the --top trials on N fresh seeds each and rank them by the "
                        "mean final return (default: 0, no retraining)")
    p.add_argument("--top", type=int, default=3, help="trials to re-evaluate (default 3)")
    p.add_argument("--reeval-seed", type=int, default=REEVAL_SEED,
                   help=f"first fresh seed (default {REEVAL_SEED})")
    p.add_argument("--reeval-dir", default="reeval",
                   help="where the reruns go, DIR/<trial id> (default ./reeval)")
    p.add_argument("--reeval-jobs", type=int, default=None, metavar="J",
                   help="reruns at once (default: one per core where the task trains its "
                        "seeds as one process, ppo, a2c, pg, dqn; else 1, its seeds' "
                        "processes taking the cores)")


def _report_args(p: argparse.ArgumentParser) -> None:
    _experiment_args(p)
    p.add_argument("--out", default=None, help="plot directory (default reports/NAME/)")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="task name: " + ", ".join(sorted(REGISTRY)))
    p.add_argument("args", nargs=argparse.REMAINDER, help="options of scripts/TASK.py")


def _lr_range_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="task name: " + ", ".join(sorted(REGISTRY)))
    p.add_argument("--start-lr", type=float, default=1e-5, help="first lr (default 1e-5)")
    p.add_argument("--end-lr", type=float, default=1e-1, help="last lr (default 0.1)")
    p.add_argument("--updates", type=int, default=60,
                   help="updates (chunks of env steps), each at one lr (default 60)")
    p.add_argument("--smooth", type=float, default=0.9,
                   help="moving-average factor of the return (default 0.9)")
    p.add_argument("--out", default="lr_range.png", help="PNG file (default lr_range.png)")
    p.add_argument("--write-space", default=None, metavar="FILE",
                   help="write the suggested bounds as FILE's lr: line (a space YAML)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.epilog = ("Every other option is one of scripts/TASK.py's (--env, --seed, --num-envs, "
                "--steps-per-epoch, hyperparameters).")


def _run_args(p: argparse.ArgumentParser, episodes: int | None) -> None:
    p.add_argument("run", help=RUN_HELP)
    if episodes is not None:
        p.add_argument("--episodes", type=int, default=episodes,
                       help=f"episodes (default {episodes})")
    p.add_argument("--best", action="store_true",
                   help="use best.ckpt (kept with --eval-every) when there is one")
    p.add_argument("--env-module", default=None, metavar="MODULE",
                   help="allow importing MODULE, which a run of a MODULE:EnvId env needs "
                        "(a checkpoint never makes rltasks import a module by itself)")


def _plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default="curves.png", help="PNG file (default curves.png)")
    p.add_argument("--title", default=None)


def _export_args(p: argparse.ArgumentParser) -> None:
    _run_args(p, episodes=None)
    p.add_argument("--format", choices=FORMATS, default="torchscript")
    p.add_argument("--out", default=None, help="file (default RUN_DIR/policy.pt|.onnx)")


def _record_args(p: argparse.ArgumentParser) -> None:
    _run_args(p, episodes=1)
    p.add_argument("--out", default=None, help="file.gif or file.mp4 (mp4 needs "
                   "imageio-ffmpeg; default RUN_DIR/video.gif)")
    p.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")


def _best(args: argparse.Namespace) -> None:
    if args.reeval:
        rows = reeval(args.name, args.reeval, args.top, args.reeval_seed, args.reeval_dir,
                      jobs=args.reeval_jobs)
        print(json.dumps(rows)) if args.json else print_reeval(args.name, rows)
        return
    info = best_trial(args.name)
    print(json.dumps(info)) if args.json else print_best(info)


def _report(args: argparse.Namespace) -> None:
    report(args.name, args.out)


def _train(args: argparse.Namespace) -> int:
    """``rltasks train TASK ...`` is ``python scripts/TASK.py ...``."""
    if args.task not in REGISTRY:
        raise ValueError(f"unknown task {args.task!r}: choose one of {sorted(REGISTRY)}")
    return train_main(args.task, args.args)


def _lr_range(args: argparse.Namespace) -> None:
    result = lr_range(args.task, args.args, args.start_lr, args.end_lr, args.updates,
                      args.smooth)
    png = plot(result, args.out)
    print(json.dumps(result)) if args.json else print_result(result, png)
    if result["low"] is None:
        raise ValueError(f"the smoothed training return never rose above its start "
                         f"({result['start_return']}): no bounds to suggest; widen --start-lr "
                         f"and --end-lr or give more --updates (the plot is in {png})")
    if args.write_space:
        print(f"wrote the lr bounds into {write_space(args.write_space, result)}")


def _print_json(result: Any) -> None:
    print(json.dumps(result))


COMMANDS: dict[str, Command] = {
    "best": Command("print the best trial of an Orion experiment", _best_args, _best),
    "report": Command("table and plots of an Orion experiment's trials", _report_args,
                      _report),
    "inspect": Command("print what a checkpoint holds", lambda p: p.add_argument("file"),
                       lambda a: print(json.dumps(peek(a.file), indent=2, default=str))),
    "train": Command("train one run (the options of scripts/TASK.py; `rltasks train TASK "
                     "--help` lists them)", _train_args, _train, add_help=False),
    "lr-range": Command("learning-rate range test: one run with a growing lr, a PNG of the "
                        "return against it, suggested bounds for a hunt", _lr_range_args,
                        _lr_range, passes_on=True),
    "eval": Command("evaluate a trained run, print JSON", lambda p: _run_args(p, episodes=10),
                    lambda a: _print_json(evaluate_run(a.run, a.episodes, a.best,
                                                        a.env_module))),
    "plot": Command("learning curves of runs on one PNG (seeds grouped)", _plot_args,
                    lambda a: print(plot_runs(a.runs, a.out, a.title))),
    "export": Command("write the deterministic policy alone, checked against the task's "
                      "actions", _export_args,
                      lambda a: _print_json(export_run(a.run, a.format, a.out, a.best,
                                                      a.env_module))),
    "record": Command("a GIF (or mp4) of the trained agent", _record_args,
                      lambda a: _print_json(record_run(a.run, a.out, a.episodes, a.best,
                                                       a.fps, a.env_module))),
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand in ``COMMANDS``."""
    parser = argparse.ArgumentParser(prog="rltasks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.arguments(sub.add_parser(name, help=command.help, add_help=command.add_help))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rltasks`` console script: one line on stderr and exit 2 for bad
    input (an unknown experiment, a damaged checkpoint, a bad option)."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not COMMANDS[args.command].passes_on:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if COMMANDS[args.command].passes_on:
        args.args = rest
    try:
        return COMMANDS[args.command].handler(args) or 0
    except (ValueError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def console() -> int:
    """The ``rltasks`` console script (and ``python -m rltasks``): ``main`` as a process of
    its own, its exit code settled against signals that arrive while it exits."""
    return settled(main())


if __name__ == "__main__":
    sys.exit(console())
