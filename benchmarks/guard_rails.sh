#!/bin/bash
# Issue 18's guard rails, before and after a change, alternated in one run (BENCHMARKS.md "Lightning's public surface"):
#   bash benchmarks/guard_rails.sh BEFORE_COMMIT [AFTER_COMMIT (default HEAD)] [ROUNDS (default 2)]
# Each commit is checked out in a worktree under /tmp/guard_<side> and run with this checkout's .venv (PYTHONPATH
# puts the worktree first): the whole lab course (--jobs 2, wall time), then benchmarks/mnist_epoch.py (one thread,
# best of 3, CPU time against the plain loop). Run it on an otherwise idle machine.
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=$HERE/.venv/bin/python
BEFORE=$1 AFTER=${2:-HEAD} ROUNDS=${3:-2}
for side in before after; do
  ref=$BEFORE; [ $side = after ] && ref=$AFTER
  git -C "$HERE" worktree remove --force /tmp/guard_$side 2>/dev/null
  git -C "$HERE" worktree add --force --detach /tmp/guard_$side "$ref" > /dev/null
done
for round in $(seq "$ROUNDS"); do
  for side in before after; do
    cd /tmp/guard_$side && rm -rf /tmp/guard_lab_$side
    start=$(date +%s.%N)
    PYTHONPATH=/tmp/guard_$side $PY -m apps.lab configs/lab/{activations,optimizers,dropout,grid,init_batchnorm}.yaml \
      --jobs 2 --runs-dir /tmp/guard_lab_$side > /tmp/guard_lab_$side.log 2>&1 || echo "course $side failed: /tmp/guard_lab_$side.log"
    echo "course $side round $round: $(echo "$(date +%s.%N) - $start" | bc) s"
  done
done
for side in before after; do
  cd /tmp/guard_$side
  echo "epoch $side:"
  OMP_NUM_THREADS=1 PYTHONPATH=/tmp/guard_$side $PY benchmarks/mnist_epoch.py --repeats 3 --skip-naive 2>&1 | grep '^|'
done
