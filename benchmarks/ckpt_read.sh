#!/bin/bash
# How often `paradis fit --ckpt_path FILE` reads a 128 px seed checkpoint (issue 18; BENCHMARKS.md "Lightning's
# public surface"): builds a 3 GB checkpoint of configs/ddpm_cats.yaml (random weights, one step of batch 1 on 8
# random 128 px PNGs, the EMA as its only callback), then resumes it for one more step under strace (opens of the
# file) and /usr/bin/time (wall, peak RSS). Usage: bash benchmarks/ckpt_read.sh WORKDIR [LABEL]
set -euo pipefail
W=$(realpath -m "$1"); LABEL=${2:-now}; mkdir -p "$W/photos"
PY=.venv/bin/python; export OMP_NUM_THREADS=1
if [ ! -f "$W/in.ckpt" ]; then
  $PY - "$W" <<'PYEOF'
import sys, yaml, numpy as np
from PIL import Image
w = sys.argv[1]
c = yaml.safe_load(open("configs/ddpm_cats.yaml"))
c["trainer"]["callbacks"] = [cb for cb in c["trainer"]["callbacks"] if cb["class_path"].endswith("EMA")]
yaml.safe_dump(c, open(f"{w}/cfg.yaml", "w"))
rng = np.random.default_rng(0)
for i in range(8):
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(f"{w}/photos/{i}.png")
PYEOF
  .venv/bin/paradis fit --config "$W/cfg.yaml" --data.data_dir "$W/photos" --run_dir "$W/make" --trainer.max_steps 1 \
    --data.batch_size 1 --trainer.limit_val_batches 0 --trainer.enable_progress_bar false > "$W/make.log" 2>&1
  mv "$W/make/checkpoints/last.ckpt" "$W/in.ckpt"
fi
rm -rf "$W/run_$LABEL"
/usr/bin/time -f "$LABEL: wall %e s, peak RSS %M KB" strace -f -qq -e trace=openat -o "$W/strace_$LABEL.txt" \
  .venv/bin/paradis fit --config "$W/cfg.yaml" --data.data_dir "$W/photos" --run_dir "$W/run_$LABEL" \
  --trainer.max_steps 2 --data.batch_size 1 --trainer.limit_val_batches 0 --trainer.enable_progress_bar false \
  --ckpt_path "$W/in.ckpt" > "$W/out_$LABEL.log" 2>&1
tail -1 "$W/out_$LABEL.log"
echo "$LABEL: opens of the checkpoint: $(grep -c 'in.ckpt' "$W/strace_$LABEL.txt")"
