#!/usr/bin/env bash
# Install if needed, then run ruff and the whole test suite (learning tests included), on one
# pytest worker per core (pytest-xdist; RLTASKS_TEST_WORKERS=N to choose, 0 for none), and
# list the 25 slowest tests (the suite must stay under 20 minutes on a 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" RLTASKS_THREADS=1
.venv/bin/ruff check rltasks tests scripts bench
.venv/bin/python -m pytest -n "${RLTASKS_TEST_WORKERS:-auto}" --dist loadgroup --durations=25 "$@"
