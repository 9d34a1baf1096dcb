"""Failpoints: deterministic fault injection for the SIGKILL exact-resume tests.

A failpoint is a named place in the code, ``failpoint("collect")``. Nothing happens unless the
environment variable ``RLTASKS_FAILPOINT`` is ``"<name>:<n>"`` when this module is first
imported: then the process SIGKILLs itself the ``n``-th time it reaches ``name``, after one
line on stderr (``failpoint <name>:<n>: SIGKILL``), so a test kills a trial at a chosen,
repeatable point instead of a wall-clock moment, and its log records where. The places:

- ``collect``: every vector-env step of a loader (``rltasks/envs/loader.py``);
- ``update``: every optimizer step (``Task.optimizer_step``, which every task's update uses);
- ``write:<file>``: inside ``rltasks.checkpoint.write_atomic``, the temp file of ``<file>``
  (``last.ckpt``, ``best.ckpt``, ``results.json``) written and fsynced, not yet rotated
  or renamed; ``replaced:<file>``: just renamed over the old file, its folder not yet synced.

Every process counts on its own (a ``--seeds`` trial's seeds each die at their own ``n``-th
time). Unset, a failpoint costs one call and one comparison with a value read once at import.
"""

from __future__ import annotations

import os
import signal
import sys

VARIABLE = "RLTASKS_FAILPOINT"


def parse(spec: str | None) -> tuple[str, int] | None:
    """``"<name>:<n>"`` -> ``(name, n)``; None when unset or empty. ``name`` may hold colons
    (``write:last.ckpt:2``): the count is after the last one."""
    if not spec:
        return None
    name, _, count = spec.rpartition(":")
    if not name or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{VARIABLE}={spec!r}: expected '<name>:<n>' with n >= 1, "
                         f"e.g. 'collect:5' or 'write:last.ckpt:2'")
    return name, int(count)


_ARMED = parse(os.environ.get(VARIABLE))
_hits = 0


def failpoint(name: str) -> None:
    """Reached place ``name``: SIGKILL this process if ``RLTASKS_FAILPOINT`` names this
    place and this is its ``n``-th time (see the module docstring); otherwise do nothing."""
    if _ARMED is None or _ARMED[0] != name:
        return
    global _hits
    _hits += 1
    if _hits == _ARMED[1]:
        print(f"failpoint {name}:{_hits}: SIGKILL", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
