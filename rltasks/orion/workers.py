"""Several population workers from one command, as ``orion hunt --n-workers N`` starts several
of its own: a supervisor process starts N workers and waits for them.

The workers are forked where the platform allows it, after the supervisor has imported
torch, Orion and rltasks and built the experiment, so none of them pays the imports again
(about 2.7 s here) and none races another to create the experiment; elsewhere they are
spawned and import anew. Each worker runs in its own process group: a Ctrl-C at the terminal
reaches the supervisor alone (and a signal to the supervisor's process group, as ``timeout`` or a
process manager sends it, reaches the workers once), which passes SIGINT and SIGTERM on to
every worker, so each stops at an epoch end and releases its trials as interrupted, as a lone
worker does (a second signal, passed on too, stops them at once). On Linux a worker also gets
SIGTERM when the supervisor dies, even by SIGKILL (``prctl(PR_SET_PDEATHSIG)``), so no worker
trains on orphaned. Each worker sends its counts back through a pipe; the supervisor adds
them up and chooses the exit code.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from rltasks.trial.preempt import SIGNALS, interrupt_code
from rltasks.trial.seeds import die_with_parent

#: the counts every worker reports
COUNTS = ("completed", "broken", "interrupted")


def start_method() -> str:
    """``fork`` where the platform offers it (the workers inherit the imports), else
    ``spawn``."""
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


def supervise(n: int, target: Callable[..., None], args: tuple[Any, ...],
              log: Callable[[str], None]) -> tuple[int, dict[str, int]]:
    """Run ``target(*args, pipe)`` in ``n`` worker processes and wait for all of them,
    passing SIGTERM and SIGINT on; (the exit code, the counts added up). ``target`` sends
    its counts through ``pipe`` and exits with its worker's code."""
    ctx = mp.get_context(start_method())
    procs, pipes = [], []
    for i in range(n):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_detached, args=(os.getpid(), target, (*args, send)),
                           name=f"population-worker-{i}")
        proc.start()
        send.close()
        procs.append(proc)
        pipes.append(receive)
    log(f"{n} population workers: pids {', '.join(str(p.pid) for p in procs)}")

    received: list[int] = []
    joined: set[int] = set()  # reaped: their pids may belong to another process by now

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        for i, proc in enumerate(procs):
            if i not in joined and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in SIGNALS}
    try:
        for i, proc in enumerate(procs):
            proc.join()
            joined.add(i)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts: Counter[str] = Counter(dict.fromkeys(COUNTS, 0))
    for receive in pipes:
        if receive.poll():
            counts.update(receive.recv())
    codes = [p.exitcode for p in procs]
    if received:  # stopped on a signal: whatever each worker had reached, it is an interruption
        return interrupt_code(), dict(counts)
    return exit_code(codes, counts, log), dict(counts)


def _detached(supervisor: int, target: Callable[..., None], args: tuple[Any, ...]) -> None:
    """``target(*args)`` in a process group of its own, SIGTERMed if the supervisor dies."""
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)
    die_with_parent(signal.SIGTERM)  # not Linux: the worker ends its round, then exits
    if os.getppid() != supervisor:  # the supervisor died before the call above
        os.kill(os.getpid(), signal.SIGTERM)
    target(*args)


def exit_code(codes: list[int | None], counts: Mapping[str, int], log: Callable[[str], None]
              ) -> int:
    """The command's code from its workers' (each 0, or Orion's interrupt code if a signal
    stopped it: ``population.work``) and their summed counts: the interrupt code if a worker
    was interrupted, 1 if a worker died (a signal, a crash) or no trial completed and some
    broke, else 0."""
    died = [(i, c) for i, c in enumerate(codes) if c not in (0, interrupt_code())]
    for i, code in died:
        log(f"population worker {i} died (exit code {code}): the trials it held are Orion's to "
            f"re-queue once their heartbeat is old")
    if interrupt_code() in codes:
        return interrupt_code()
    if died or (counts["broken"] and not counts["completed"]):
        return 1
    return 0
