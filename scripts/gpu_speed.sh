#!/usr/bin/env bash
# How fast scripts/train_torch.py trains on a lent GPU, and what helps: one run alone, one with
# --recompute-moe, and three of those at once (the guess was that Python dispatching ~6,000
# small kernels a step limits a run, so runs side by side would cost little each; two real runs
# side by side on an H100 then took 0.58 s per step each against 0.29-0.32 alone, so the GPU,
# not dispatch, limits them; without --recompute-moe three do not fit in an H100's memory).
# `--compile` was measured once (docs/training.md) and is left out.
# Random weights of the base's shapes (--random-base), so only .gpu/data
# (scripts/prepare_gpu_data.sh) has to travel:
#
#   run: bash scripts/gpu_speed.sh, carrying .gpu/data
#
# Prints seconds per step (steps 11-60, batch 64) for each run. Writes its logs to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp/gpu-speed}"
mkdir -p "$out"
t="python3 scripts/train_torch.py --random-base --data .gpu/data --variants task-moe"
t="$t --batch-size 64 --steps 60 --no-decode --budget-s 400"
timeout 90 $t --out /tmp/speed-one >"$out/one.txt" 2>&1
timeout 90 $t --recompute-moe --out /tmp/speed-one-recompute >"$out/one-recompute.txt" 2>&1
for i in 1 2 3; do
    timeout 150 $t --recompute-moe --out "/tmp/speed-three$i" >"$out/three$i.txt" 2>&1 &
done
wait
python3 - <<'PY'
import glob, json
for d in sorted(glob.glob("/tmp/speed-*")):
    try:
        recs = {r["step"]: r["seconds"] for r in map(json.loads, open(d + "/train.jsonl"))}
        print(d, f"{(recs[60] - recs[10]) / 50:.3f} s/step", f"first 10: {recs[10]:.1f} s")
    except (OSError, KeyError, ValueError) as e:
        print(d, "no timing:", e)
PY
