#!/usr/bin/env bash
# Install if needed, then run the whole test suite (learning tests included) and ruff.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" RLTASKS_THREADS=1
.venv/bin/ruff check rltasks tests scripts bench
.venv/bin/python -m pytest "$@"
