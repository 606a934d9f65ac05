#!/usr/bin/env bash
# Several scripts/train_torch.py runs side by side on one lent GPU, e.g. a candidate and a second
# seed of it or of the shipped recipe, in one call: the machine starts and the base travels once.
# Each run recomputes its MoE activations in the backward pass (--recompute-moe: on the CPU it
# cut a run's peak from 14.4 to 5.3 GB; three plain runs did not fit on an H100). Measured on an
# H100 with two runs: each took 0.58 s per step where one alone takes 0.29-0.32, so side by side
# is no faster than in sequence; give the first run the larger share of its budget for training
# (--decode-share 0.1), since at 0.15 its time share ran out at step 737 of 780.
#
#   bash scripts/gpu_runs.sh "--gguf /tmp/base.gguf" NAME:DATA:ARGS ...    # PYTHONPATH=.gpu/py for gguf
#   bash scripts/gpu_runs.sh "--gguf /tmp/base.gguf" \
#       "cand:.gpu/data-hp:--steps 780 --lr 5e-4 --budget-s 520 --decode-share 0.2" \
#       "cand-seed1:.gpu/data-hp:--steps 780 --lr 5e-4 --seed 1 --budget-s 520 --decode-share 0.2"
#
# What comes back fits the device tool's limits (8 files, 16 MiB each, 64 MiB in all): for every
# run NAME.tgz (its log, per-step log, summary and answers), and for the first run only its
# adapter in two parts, NAME.adapter.0.safetensors and .1 (12 MB each; join them as
# docs/results/gpu-ce1-2026-11-26/README.md says). Give every run a --budget-s that ends well
# inside the call's limit: decoding stops at the budget plus 60 s, and the archives are written
# only when a run ends.
set -uo pipefail
base="$1"
shift
out="${OUT:-/tmp/gpu-runs}"
work="$(mktemp -d)"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
first=1
for spec in "$@"; do
    IFS=: read -r name data args <<<"$spec"
    # shellcheck disable=SC2086 # $base and $args are lists of options
    (
        python3 scripts/train_torch.py $base --data "$data" --out "$work/$name" \
            --variants task-moe --recompute-moe $args >"$work/$name.log" 2>&1
        echo "$name: exit $?" >>"$work/$name.log"
        tar -C "$work" -czf "$out/$name.tgz" "$name.log" \
            $(cd "$work" && ls "$name"/preds.jsonl "$name"/train.jsonl "$name"/summary.json 2>/dev/null)
        if [ "$first" = 1 ]; then
            for p in 0 1; do
                [ -f "$work/$name/adapter.$p.safetensors" ] \
                    && cp "$work/$name/adapter.$p.safetensors" "$out/$name.adapter.$p.safetensors"
            done
        fi
        tail -n 2 "$work/$name.log"
    ) &
    first=0
done
wait
ls -la "$out"
