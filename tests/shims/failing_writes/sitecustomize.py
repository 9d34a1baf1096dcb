"""Test shim: make a process's writes fail as on a full disk or a read-only filesystem.

Python imports ``sitecustomize`` at start-up from ``sys.path``; ``tests/test_disk.py`` puts
this folder on the ``PYTHONPATH`` of one subprocess only. ``RLTASKS_TEST_FAIL_WRITES`` is
``CALL:ERRNO:N``: from the Nth call on, every ``os.fsync`` (CALL ``fsync``) or every opening
for writing of a temp file ``.*.tmp`` (CALL ``open``) raises ``OSError(ERRNO)``, as a disk
that filled up (28, ENOSPC) or a filesystem remounted read-only (30, EROFS) would.
"""

import builtins
import os

_SPEC = os.environ.get("RLTASKS_TEST_FAIL_WRITES")

if _SPEC:
    _CALL, _ERRNO, _AT = _SPEC.split(":")
    _ERRNO, _AT = int(_ERRNO), int(_AT)
    _calls = 0

    def _due() -> bool:
        global _calls
        _calls += 1
        return _calls >= _AT

    def _fail(path=None):
        raise OSError(_ERRNO, os.strerror(_ERRNO), *([path] if path else []))

    if _CALL == "fsync":
        _real_fsync = os.fsync

        def _fsync(fd):
            if _due():
                _fail()
            return _real_fsync(fd)

        os.fsync = _fsync
    elif _CALL == "open":
        _real_open = builtins.open

        def _open(file, mode="r", *args, **kwargs):
            name = os.path.basename(os.fspath(file)) if isinstance(file, str | os.PathLike) else ""
            if any(c in mode for c in "wax+") and name.startswith(".") and name.endswith(".tmp"):
                if _due():
                    _fail(os.fspath(file))
            return _real_open(file, mode, *args, **kwargs)

        builtins.open = _open
