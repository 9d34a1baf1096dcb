"""What every lockstep shares: the members of one epoch, each called in turn, and those that
failed (one member's failure takes it out of the lockstep, not the others)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Members:
    """The members of one lockstep epoch and the exceptions of those that failed, by index."""

    def __init__(self, members: list[Any]) -> None:
        self.members = members
        self.failed: dict[int, BaseException] = {}

    def each(self, call: Callable[[int, Any], Any], only: Any = None) -> dict[int, Any]:
        """``call(k, member)`` for every member still in (of ``only``'s indices, when
        given), by index; one that raises is out."""
        out = {}
        for k, m in enumerate(self.members):
            if k in self.failed or (only is not None and k not in only):
                continue
            try:
                out[k] = call(k, m)
            except Exception as err:  # one member's failure must not stop the others
                self.failed[k] = err
        return out

    def results(self, rows: dict[int, Any]) -> list[Any]:
        """Each member's row, or the exception that took it out."""
        return [self.failed.get(k, rows.get(k)) for k in range(len(self.members))]

