"""Cost of an unset failpoint (``rltasks.failpoints.failpoint``, as in every real run) against
an empty Python function call measured in the same run.

    .venv/bin/python bench/failpoints.py [--calls 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import timeit

from rltasks.failpoints import VARIABLE, failpoint


def empty(name: str) -> None:
    """The baseline: a call that does nothing."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if os.environ.get(VARIABLE):
        raise SystemExit(f"unset {VARIABLE} first: this measures the unset failpoint")
    for label, fn in (("empty call", empty), ("failpoint", failpoint)):
        best = min(timeit.repeat(lambda fn=fn: fn("collect"), number=args.calls,
                                 repeat=args.rounds))
        ns = best / args.calls * 1e9
        if label == "empty call":
            baseline = ns
        print(f"{label:<11} {ns:7.0f} ns/call   {ns / baseline:5.2f}x the empty call")


if __name__ == "__main__":
    main()
