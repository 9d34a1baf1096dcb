"""Run an ``orion hunt`` whose trials execute on a Dask cluster.

    python -m rltasks.orion.dask --scheduler tcp://10.0.0.5:8786 \\
        -n ppo-dask --exp-max-trials 32 --working-dir /shared/runs \\
        python scripts/ppo.py --config spaces/ppo.yaml --epochs 8

Everything after this helper's own options is what ``orion hunt`` takes. The helper writes an
Orion configuration that selects Orion's Dask executor (``worker.executor: dask``) with
``executor_configuration: {address: <scheduler>}``, and ``worker.n_workers`` = the threads of
the workers connected to the scheduler (one trial per worker thread; ``--n-workers`` to
change), then runs ``orion hunt -c <that file> ...`` (through ``rltasks.orion.dask_orion``,
which mends a race between Orion's Dask executor and distributed). Orion's process keeps the
database, the algorithm and the heartbeats; each trial's command runs as a subprocess of a
Dask worker.

For that the workers must see what the hunt sees: this helper makes the trial's script, and
``--working-dir``, absolute paths and replaces a leading ``python``/``python3`` with this
interpreter's absolute path; workers on other machines need the same paths (a shared
filesystem holding the checkout, the venv and the working dir). See docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from rltasks.safeio import load_yaml

_PYTHONS = ("python", "python3")
_ORION_CONFIG_FLAGS = ("-c", "--config")


class HuntError(ValueError):
    """Bad helper arguments or an unusable scheduler: one line, exit 2."""


def _command_start(args: list[str]) -> int:
    """Index of the trial command within ``orion hunt`` arguments: the first ``python`` or
    ``*.py`` token."""
    for i, arg in enumerate(args):
        if Path(arg).name in _PYTHONS or arg.endswith(".py"):
            return i
    raise HuntError("no trial command found: end with e.g. `python scripts/ppo.py --config "
                    "spaces/ppo.yaml`")


def prepare_args(args: list[str], python: str = sys.executable) -> list[str]:
    """``orion hunt`` arguments with the script, ``--working-dir`` and ``python`` made
    absolute, so a Dask worker running elsewhere (in another cwd) finds them, and the
    template ``{experiment.working_dir}`` spelt as Orion 0.2.7 knows it, ``{exp.working_dir}``."""
    start = _command_start(args)
    orion_args, command = list(args[:start]), list(args[start:])
    for i, arg in enumerate(orion_args):
        if arg in _ORION_CONFIG_FLAGS or arg.startswith("--config="):
            raise HuntError("pass Orion's own configuration file as --orion-config FILE "
                            "(this helper adds the executor settings to it)")
        if arg == "--working-dir" and i + 1 < len(orion_args):
            orion_args[i + 1] = str(Path(orion_args[i + 1]).absolute())
        elif arg.startswith("--working-dir="):
            orion_args[i] = f"--working-dir={Path(arg.split('=', 1)[1]).absolute()}"
    if command and Path(command[0]).name in _PYTHONS:
        command[0] = python
        script = 1
    else:
        script = 0
    if script < len(command) and Path(command[script]).is_file():
        command[script] = str(Path(command[script]).absolute())
    # Orion 0.2.7 formats templates with trial= and exp= only: {experiment.working_dir}
    # would break every trial with KeyError('experiment')
    command = [arg.replace("{experiment.", "{exp.") for arg in command]
    return orion_args + command


def scheduler_threads(address: str, timeout: float = 10.0) -> int:
    """Total threads of the workers connected to the scheduler at ``address``."""
    try:
        from distributed import Client
    except ImportError:
        raise HuntError("dask.distributed is not installed: pip install 'dask[distributed]' "
                        "(or rltasks[dask])") from None
    try:
        with Client(address, timeout=timeout) as client:
            workers = client.scheduler_info().get("workers", {})
    except (OSError, TimeoutError) as err:
        raise HuntError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
    if not threads:
        raise HuntError(f"no Dask worker is connected to {address} yet: start some with "
                        f"`dask worker {address}`")
    return threads


def orion_config(address: str, n_workers: int, base: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """An Orion configuration (``base`` plus the worker section) using the Dask executor."""
    config = dict(base or {})
    worker = dict(config.get("worker") or {})
    worker.update(executor="dask", executor_configuration={"address": address},
                  n_workers=n_workers)
    config["worker"] = worker
    return config


def orion_command() -> list[str]:
    """The ``orion`` command as this helper runs it: Orion's command line in this interpreter,
    with its Dask future mended (``rltasks.orion.dask_orion``)."""
    return [sys.executable, "-m", "rltasks.orion.dask_orion"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rltasks.orion.dask",
        description="orion hunt with trials executed on a Dask cluster. Arguments after this "
                    "helper's options are orion hunt's, ending with the trial command.")
    parser.add_argument("--scheduler", required=True,
                        help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--n-workers", type=int, default=None,
                        help="trials run at once (default: the threads of the connected workers)")
    parser.add_argument("--orion-config", default=None,
                        help="Orion configuration file (database...) to add the executor to")
    parser.add_argument("--print-config", action="store_true",
                        help="print the Orion configuration and the command, run nothing")
    parser.add_argument("hunt", nargs="*", metavar="ORION_HUNT_ARGS",
                        help="orion hunt arguments: -n NAME ... python scripts/ppo.py ...")
    return parser


_OWN_FLAGS = {"--scheduler": 1, "--n-workers": 1, "--orion-config": 1, "--print-config": 0,
              "-h": 0, "--help": 0}


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """This helper's options (they come first), then orion hunt's arguments (after an
    optional ``--``)."""
    i = 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        if argv[i] == "--":
            return argv[:i], argv[i + 1:]
        if name not in _OWN_FLAGS:
            break
        i += 1 + (_OWN_FLAGS[name] if "=" not in argv[i] else 0)
    return argv[:i], argv[i:]


def main(argv: list[str] | None = None) -> int:
    own, hunt = split_argv(sys.argv[1:] if argv is None else list(argv))
    opts = build_parser().parse_args(own)
    try:
        if not hunt:
            raise HuntError("give orion hunt's arguments after the options, e.g. -n NAME "
                            "python scripts/ppo.py --config spaces/ppo.yaml")
        args = prepare_args(hunt)
        base = None
        if opts.orion_config:
            try:
                base = load_yaml(opts.orion_config, "--orion-config") or {}
            except (OSError, ValueError) as err:  # FileRefused, YamlRefused: one line
                raise HuntError(f"cannot read --orion-config {opts.orion_config}: {err}"
                                .splitlines()[0]) from None
        n_workers = opts.n_workers or scheduler_threads(opts.scheduler)
        if n_workers < 1:
            raise HuntError(f"--n-workers {n_workers} must be >= 1")
        config = orion_config(opts.scheduler, n_workers, base)
    except HuntError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = yaml.safe_dump(config, sort_keys=False)
    with tempfile.NamedTemporaryFile("w", prefix="orion-dask-", suffix=".yaml",
                                     delete=False) as file:
        file.write(text)
    command = [*orion_command(), "hunt", "-c", file.name, *args]
    try:
        if opts.print_config:
            print(text + " ".join(command))
            return 0
        print(f"hunt on the Dask cluster at {opts.scheduler}, {n_workers} trial(s) at once",
              file=sys.stderr, flush=True)
        return subprocess.call(command)
    finally:
        os.unlink(file.name)


if __name__ == "__main__":
    sys.exit(main())
