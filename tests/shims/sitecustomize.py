"""Test shim: stall a process inside its Nth ``os.fsync`` so a test can SIGKILL it there.

Python imports ``sitecustomize`` at start-up from ``sys.path``; ``tests/test_resume.py`` puts
this folder on the ``PYTHONPATH`` of one subprocess only. Nothing happens unless
``RLTASKS_TEST_STALL_FSYNC`` names a marker file. Then the Nth call of ``os.fsync`` (N from
``RLTASKS_TEST_STALL_FSYNC_AT``, default 1; every call counts, whatever it flushes) writes the
path of the file being flushed into the marker and sleeps 30 s before flushing: the data is
written but neither synced nor renamed, which is the moment an atomic write is most fragile.
"""

import os
import time

_MARKER = os.environ.get("RLTASKS_TEST_STALL_FSYNC")

if _MARKER:
    _AT = int(os.environ.get("RLTASKS_TEST_STALL_FSYNC_AT", "1"))
    _real_fsync = os.fsync
    _calls = 0

    def _stalling_fsync(fd):
        global _calls
        _calls += 1
        if _calls == _AT:
            try:
                target = os.readlink(f"/proc/self/fd/{fd if isinstance(fd, int) else fd.fileno()}")
            except OSError:
                target = ""
            part = f"{_MARKER}.{os.getpid()}.part"
            with open(part, "w", encoding="utf8") as f:  # the test sees all of it or nothing
                f.write(target)
            os.replace(part, _MARKER)
            time.sleep(30)
        return _real_fsync(fd)

    os.fsync = _stalling_fsync
