#!/usr/bin/env bash
# Compare this checkout's population speed with another revision's, both running at the same
# time, one on each core (cores swapped every round), so that the machine's drift from run to
# run (up to 1.5x on some VMs) hits both alike:
#   bash bench/same_time.sh BASE_REV ROUNDS [bench/population.py options...]
# e.g. bash bench/same_time.sh ccf3393 4 --algo dqn --members 16 --population-only
# The base revision is checked out into a temporary git worktree; both sides run this
# checkout's bench/population.py, each importing its own rltasks (PYTHONPATH).
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1 rounds=$2
shift 2
tree=$(mktemp -d)
trap 'git worktree remove --force "$tree"' EXIT
git worktree add -q --detach "$tree" "$base"
bench=$PWD/bench/population.py python=$PWD/.venv/bin/python
for i in $(seq "$rounds"); do
  new=$(( i % 2 )) old=$(( 1 - i % 2 ))
  (PYTHONPATH=$PWD RLTASKS_THREADS=1 taskset -c $new "$python" "$bench" "$@" | sed "s/^/round $i, this checkout (core $new): /") &
  (PYTHONPATH=$tree RLTASKS_THREADS=1 taskset -c $old "$python" "$bench" "$@" | sed "s/^/round $i, $base (core $old): /") &
  wait
done
