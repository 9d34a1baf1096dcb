"""The ``orion`` command, with Orion 0.2.7's Dask future mended: what ``rltasks.orion.dask``
runs (``python -m rltasks.orion.dask_orion hunt -c CONFIG ...``).

Orion polls each running trial with ``_Future.wait(0.01)``, which calls Dask's
``Future.result(0.01)``. In distributed 2026.8 (the release tested; others not checked), that
short wait can end in a ``CancelledError`` that ``distributed.utils.sync`` does not catch,
and ``sync`` then fails with ``UnboundLocalError`` (its ``result`` never assigned). Orion's
``wait`` keeps any exception as the trial's own, so a trial still running on a worker is
marked broken. Here ``wait`` keeps an exception only when the Dask future itself failed (or
was cancelled); an error of the waiting machinery while the future is pending, or after it
finished, is no verdict on the trial, and the next poll asks again.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any


def _wait(self: Any, timeout: float | None = None) -> None:
    """``orion.executor.dask_backend._Future.wait``: keep the exception only if it is the
    trial's, that is, if the Dask future is done and did not finish."""
    try:
        self.future.result(timeout)
    except Exception as err:  # TimeoutError, the trial's error, or sync()'s own failure
        if self.future.done() and self.future.status != "finished":
            self.exception = err


def patch() -> None:
    """Install ``_wait`` in Orion's Dask backend."""
    from orion.executor import dask_backend

    dask_backend._Future.wait = _wait


def main(argv: list[str] | None = None) -> int:
    """Orion's command line (``orion hunt ...``) with the Dask backend patched."""
    # orion warns that its optional profet extra is missing whenever its parsers load
    warnings.filterwarnings("ignore", message="The `profet` extras", category=RuntimeWarning)
    from orion.core.cli import main as orion_main

    patch()
    return orion_main(sys.argv[1:] if argv is None else list(argv)) or 0


if __name__ == "__main__":
    sys.exit(main())
