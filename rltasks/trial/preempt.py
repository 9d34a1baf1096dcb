"""Pre-emption: SIGTERM or SIGINT stops a trial at the next epoch boundary, checkpointed.

Clusters pre-empt a job by sending SIGTERM and, after a grace period, SIGKILL; Ctrl-C sends
SIGINT. Checkpoints exist only at epoch boundaries (``docs/design.md``), so on the first signal the
trial finishes the epoch in progress, makes sure ``last.ckpt`` holds it, and exits with
Orion's interrupt code (``$ORION_INTERRUPT_CODE``, which Orion sets for its trials; 130
otherwise). Orion then marks the trial *interrupted*, and a later run of the same command
resumes it exactly. A second signal stops at once; the previous epoch's checkpoint is intact
(atomic writes), so that too resumes exactly, only one epoch earlier. Once a process's exit
code is decided (``settled``: at the exits of the scripts, the ``rltasks`` command and the
population worker), later signals are ignored, so the code stays what the run decided.

How the loop is stopped without a hook in ``Task``: the ``StopAtEpochEnd`` observer, placed
after the checkpointing one, raises ``Preempted`` from ``on_epoch_end``. Like any exception
out of ``fit``, that poisons the task (``BadResume``): the process is about to exit, and a
caller of ``rltasks.trial.run.run`` from Python builds a new task to go on, as after any
failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rltasks.checkpoint import Checkpointer
from rltasks.trial.payload import make_payload

#: what Orion (``worker.interrupt_signal_code``) expects when it does not set the variable
DEFAULT_INTERRUPT_CODE = 130
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def interrupt_code() -> int:
    """The exit code that tells Orion a trial was interrupted, not broken."""
    try:
        return int(os.environ.get("ORION_INTERRUPT_CODE", DEFAULT_INTERRUPT_CODE))
    except ValueError:
        return DEFAULT_INTERRUPT_CODE


def settled(code: int) -> int:
    """For a process about to exit with ``code`` (the scripts, the ``rltasks`` command, the
    population worker): SIGTERM and SIGINT are ignored from now on, so that a signal arriving
    while the process exits (a second one after a run stopped and saved, say) cannot turn
    the decided exit code into a kill by that signal. Returns ``code``. Not for in-process
    callers: the handlers stay ignored."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    return code


class Preempted(Exception):
    """Training stopped on a signal; ``detail`` says where and what the checkpoint holds."""

    def __init__(self, signame: str, detail: str) -> None:
        super().__init__(f"{signame} received: {detail}; rerun the same command to resume")
        self.signame = signame


class StopSignals:
    """Context manager: while active, SIGTERM and SIGINT only set ``received`` (first signal)
    or raise ``KeyboardInterrupt`` (second one). Previous handlers come back at exit.

    Install it *before* building the envs: ``AsyncVectorEnv`` workers forked by the trial
    inherit the handler, and in them SIGINT (Ctrl-C reaches the whole process group) is
    ignored, so the epoch in progress can finish; SIGTERM kills them as usual, so a parent
    can still terminate them. Off the main thread (where Python allows no signal handler)
    it does nothing.
    """

    def __init__(self, log: Callable[[str], None] = print) -> None:
        self.log = log
        self.received: str | None = None
        self._owner = os.getpid()
        self._previous: dict[int, Any] = {}
        self._holding = False
        self._pending: str | None = None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._owner:  # a forked env worker
            if signum != signal.SIGINT:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        name = signal.Signals(signum).name
        if self.received is not None or self._pending is not None:
            raise KeyboardInterrupt(f"second signal ({name})")
        if self._holding:
            self._pending = name
        else:
            self.received = name
        self.log(f"{name} received: finishing the current epoch, then writing the checkpoint "
                 f"and exiting with code {interrupt_code()} (a second signal stops at once)")

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """While inside, a first signal is noted but ``received`` changes only at the exit,
        so every reader inside sees one answer: a population's members end an epoch one after
        another, and a signal landing between two of them must stop all of them at the same
        epoch end, not the later ones one epoch early. A second signal still stops at once."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            if self._pending is not None and self.received is None:
                self.received, self._pending = self._pending, None


class StopAtEpochEnd:
    """Observer: once a signal arrived, make sure ``last.ckpt`` holds this epoch, then raise
    ``Preempted``. Goes after the ``Checkpointing`` observer (which saves every ``every``
    epochs and at ``final_epoch``)."""

    def __init__(self, signals: StopSignals, checkpointer: Checkpointer, every: int,
                 final_epoch: int) -> None:
        self.signals, self.checkpointer = signals, checkpointer
        self.every, self.final_epoch = every, final_epoch

    def on_epoch_end(self, task: Any, metrics: dict[str, Any]) -> None:
        if self.signals.received is None:
            return
        if task.epoch % self.every and task.epoch != self.final_epoch:  # not saved this epoch
            self.checkpointer.save(make_payload(task))
        raise Preempted(self.signals.received, f"stopped after epoch {task.epoch} of "
                        f"{self.final_epoch}, saved in {self.checkpointer.last}")
