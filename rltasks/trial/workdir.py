"""One process per working dir: a lock file naming its owner.

Two trials writing the same ``last.ckpt`` would each resume from the other's epochs and end as
neither run; a second process also deletes the first one's temp files at start-up. So
``rltasks.trial.run`` holds ``<workdir>/rltasks.lock`` from before it reads a checkpoint until
it exits. The file is JSON ``{pid, host, started, ...}``, created complete and atomically (written
to a temp file, then hard-linked to its name, which fails if the name exists; where a
filesystem has no hard links, ``O_CREAT | O_EXCL``), and removed at exit.

A lock whose owner is gone is *stale* and taken over with a log line: same host, and the pid
is not running, is a zombie, or is a newer process that reused the pid (its start time
differs), or the machine rebooted since (its boot id differs). A lock of another host is
never taken over, since this host cannot tell whether that process still runs: the error
names the file to delete once it does not. A lock name that is not a regular file of at most
``MAX_LOCK_BYTES`` (a FIFO, a device, a directory, a huge file: nothing rltasks writes) is
refused, never read: a ``LockError`` naming it, to delete.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from rltasks.safeio import KIB, FileRefused, read_regular, read_special

LOCK_NAME = "rltasks.lock"
MAX_LOCK_BYTES = 64 * KIB  # a lock is a JSON line of ~200 bytes
_YOUNG = 5.0  # seconds: an unreadable lock this young may be one being written (O_EXCL path)


class LockError(ValueError):
    """The working dir belongs to another running process, or cannot be written at all (a
    ValueError: the runner exits 2 with the one-line message)."""


def _read(path: str | Path) -> str | None:
    """The text of a lock file; None if it is gone or not ASCII. A name that is not a regular
    file of at most MAX_LOCK_BYTES raises ``FileRefused``."""
    try:
        return read_regular(path, MAX_LOCK_BYTES, "lock file").decode("ascii")
    except (OSError, UnicodeDecodeError):
        return None


def _read_proc(path: str) -> str | None:
    """A small kernel file (/proc), read once and bounded."""
    try:
        return read_special(path).decode("ascii")
    except (OSError, UnicodeDecodeError, FileRefused):
        return None


def _ours(path: Path, text: str) -> bool:
    """Whether the lock file at ``path`` holds ``text`` (a refused name never does)."""
    try:
        return _read(path) == text
    except FileRefused:
        return False


def boot_id() -> str | None:
    """This boot of this machine (Linux), so a lock from before a reboot is known stale."""
    text = _read_proc("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of ``pid`` from /proc, if any."""
    text = _read_proc(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def owner_alive(info: dict[str, Any]) -> bool | None:
    """Whether the lock's owner still runs: True, False, or None for another host's lock."""
    if info.get("host") != socket.gethostname():
        return None
    if info.get("boot_id") and boot_id() and info["boot_id"] != boot_id():
        return False
    pid = info.get("pid")
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    stat = _proc_stat(pid)
    if stat is not None:
        state, started = stat
        if state in "ZXx":  # dead, waiting to be reaped
            return False
        if info.get("proc_start") is not None and info["proc_start"] != started:
            return False  # the pid now belongs to another process
    return True


def _parse(text: str | None) -> dict[str, Any] | None:
    try:
        info = json.loads(text or "")
    except ValueError:
        return None
    return info if isinstance(info, dict) and "pid" in info and "host" in info else None


class WorkdirLock:
    """Context manager holding ``<workdir>/rltasks.lock``; raises ``LockError`` if another
    live process holds it and takes over (logging it) a stale one.

    The working dir is created if missing, and removed again at release if this lock created
    it and nothing else was written there (a run that failed on bad input leaves no trace).
    """

    def __init__(self, workdir: str | os.PathLike[str],
                 log: Callable[[str], None] = print) -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_NAME
        self.log = log
        self.info: dict[str, Any] | None = None
        self._text = ""
        self._made_dir = False

    # -- acquire / release -----------------------------------------------------------------
    def acquire(self) -> WorkdirLock:
        try:
            return self._acquire()
        except OSError as err:
            raise LockError(f"cannot lock working dir {self.workdir}: "
                            f"{err.strerror or err} ({err.filename or self.path}); its files "
                            f"are untouched") from err

    def _acquire(self) -> WorkdirLock:
        self._made_dir = not self.workdir.is_dir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        info = {"pid": pid, "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "boot_id": boot_id(), "proc_start": process_start(pid),
                "token": secrets.token_hex(8)}
        text = json.dumps(info)
        for _ in range(5):
            if self._create(text):
                self.info, self._text = info, text
                return self
            try:
                current = _read(self.path)
            except FileRefused as err:
                raise LockError(f"{err}, so not a lock rltasks wrote: delete it (then run "
                                f"again) or use another --workdir") from None
            if current is None:  # released meanwhile
                continue
            reason = self._stale_reason(current)
            if self._remove_if_unchanged(current):
                self.log(f"taking over the stale lock {self.path}: {reason}")
        raise LockError(f"working dir {self.workdir} keeps being locked and unlocked by other "
                        f"processes; is another run starting there?")

    def release(self) -> None:
        """Remove the lock file if it is still ours; then the dir if we made it and it is
        empty."""
        if self.info is None:
            return
        if _ours(self.path, self._text):
            with suppress(OSError):
                self.path.unlink()
        self.info = None
        if self._made_dir:
            with suppress(OSError):
                self.workdir.rmdir()  # fails unless empty

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- helpers ----------------------------------------------------------------------------
    def _create(self, text: str) -> bool:
        """Create the lock file holding ``text`` if it does not exist; False if it does."""
        tmp = self.workdir / f".{LOCK_NAME}.{os.getpid()}.tmp"
        try:
            tmp.unlink(missing_ok=True)  # a leftover, or a FIFO that would block the write
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(text)
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError:  # no hard links here: exclusive create (a reader may see it empty)
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "w", encoding="ascii") as file:
                    file.write(text)
                return True
        finally:
            with suppress(OSError):
                tmp.unlink()

    def _stale_reason(self, text: str) -> str:
        """Why the lock holding ``text`` may be taken over; raise LockError if it may not."""
        info = _parse(text)
        if info is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return "released meanwhile"
            if age < _YOUNG:
                raise LockError(f"working dir {self.workdir} is being locked by another process "
                                f"right now ({self.path}); use another --workdir")
            return "unreadable lock file"
        alive = owner_alive(info)
        where = "this host" if alive is not None else f"host {info.get('host')}"
        owner = f"pid {info.get('pid')} on {where}"
        if alive is None:
            raise LockError(f"working dir {self.workdir} is in use by {owner} (since "
                            f"{info.get('started')}); this host cannot tell whether it still "
                            f"runs: use another --workdir, or delete {self.path} once it does not")
        if alive:
            raise LockError(f"working dir {self.workdir} is in use by {owner} "
                            f"({socket.gethostname()}, since {info.get('started')}): wait for it "
                            f"to end or use another --workdir (lock file {self.path})")
        return f"{owner} ({socket.gethostname()}) is no longer running"

    def _remove_if_unchanged(self, text: str) -> bool:
        """Remove the lock file if it still holds ``text``: rename it aside first, so that of
        two processes taking over at once only one removes it, and a fresh lock written
        meanwhile is put back rather than lost."""
        aside = self.workdir / f".{LOCK_NAME}.stale.{os.getpid()}"
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return False
        if _ours(aside, text):
            aside.unlink(missing_ok=True)
            return True
        with suppress(OSError):  # someone's fresh lock: restore it unless another exists now
            os.link(aside, self.path)
        aside.unlink(missing_ok=True)
        return False
