"""A warm interpreter for the trials of the tests' Orion hunts (``python tests/warm_server.py
SOCKET``, until its stdin closes): it imports torch, gymnasium, rltasks and Orion's command
once, then forks one child per request on the Unix socket SOCKET, and the child runs ``SCRIPT
ARGS`` or ``-m MODULE ARGS`` as a fresh ``python`` would. A torch import costs about 3
CPU-seconds on a 2-core machine, most of a short trial's cost, and the ``orion`` command's
imports 8; the tests' hunts start a hundred or so trials.

The client is ``tests/shims/warm/python``, which the hunts find first on their PATH: it sends
its argv, environment and working directory with its stdin, stdout and stderr, relays signals
to the child's process group, and exits as the child did. A request whose ``PYTHON*``
variables differ from this server's (a start-up shim on PYTHONPATH, another hash seed) is
answered ``fallback``: such a process needs a fresh interpreter, and the client becomes one.

What a child sets up as a fresh process has it: its own session (process group), the
client's environment, working directory, argv and ``sys.path[0]``; re-seeded ``random`` and
numpy global RNGs, torch's global generator at its start-up seed, the thread count and the
failpoint that rltasks reads at import; exit code, exit by signal (KeyboardInterrupt) and atexit
handlers (``become_fresh``, ``run_main``, ``finish``: the kill matrix's fork servers use them
too). It also watches its connection: if the client dies (SIGKILLed with its process
group), the child SIGKILLs its own group, as that kill would have.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import runpy
import select
import signal
import socket
import sys
import threading
import traceback
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import gymnasium  # noqa: F401
    import numpy as np
    import torch
    from orion.core.utils import module_import

    import rltasks
    import rltasks.trial.run  # noqa: F401
    from rltasks import failpoints


rltasks.known_tasks()
TORCH_START_SEED = 67280421310721  # torch.initial_seed() of a fresh interpreter
STARTUP = {k: v for k, v in os.environ.items() if k.startswith("PYTHON")}


def become_fresh(env: dict[str, str], cwd: str, argv: list[str]) -> None:
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    torch.set_num_threads(int(env.get("RLTASKS_THREADS", "1")))
    torch.manual_seed(TORCH_START_SEED)
    np.random.seed()
    random.seed()
    failpoints._ARMED, failpoints._hits = failpoints.parse(env.get(failpoints.VARIABLE)), 0
    sys.argv = argv[1:] if argv[0] == "-m" else list(argv)
    sys.path[0] = os.getcwd() if argv[0] == "-m" else os.path.dirname(
        os.path.abspath(argv[0]))


def _watch(conn: socket.socket) -> None:
    """Block until the client's end closes; then SIGKILL this child's process group."""
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os.killpg(0, signal.SIGKILL)


def run_main(argv: list[str]) -> int:
    try:
        if argv[0] == "-m":
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(argv[0], run_name="__main__")
        return 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        return 1


def finish(code: int) -> None:
    """End this child as the process would have ended with ``code`` (-N: by signal N):
    atexit handlers, flushed output, then the exit status."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


def child(listener: socket.socket, conn: socket.socket, req: dict, fds: list[int]) -> None:
    """The forked child: become the fresh process the request asks for, run it, exit."""
    listener.close()
    os.setsid()
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    become_fresh(req["env"], req["cwd"], req["argv"])
    threading.Thread(target=_watch, args=(conn,), daemon=True).start()
    finish(run_main(req["argv"]))


def serve(path: str) -> None:
    # every subcommand of the ``orion`` command: the hunt itself runs here too (8 CPU-s of
    # imports: Orion 0.2.7 imports torch, scipy, pandas and plotly for any subcommand)
    module_import.load_modules_in_path("orion.core.cli", lambda m: hasattr(m, "add_subparser"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    running: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while True:
        ready = select.select([listener, 0], [], [], 0.02)[0]
        if 0 in ready and not os.read(0, 1 << 12):
            return  # the test process that started this server has gone
        if listener in ready:
            conn, _ = listener.accept()
            data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            req = json.loads(data)
            same = {k: v for k, v in req["env"].items() if k.startswith("PYTHON")} == STARTUP
            if not same or len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                conn.send(json.dumps({"fallback": True}).encode())
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                child(listener, conn, req, fds)
            for fd in fds:
                os.close(fd)
            running[pid] = conn
            conn.send(json.dumps({"pid": pid}).encode())
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = running.pop(pid, None)
            if conn is not None:
                try:
                    conn.send(json.dumps({"code": os.waitstatus_to_exitcode(status)}).encode())
                except OSError:
                    pass
                conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
