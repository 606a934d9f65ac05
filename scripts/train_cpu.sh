#!/usr/bin/env bash
# A full-size training run of scripts/train_torch.py on this CPU, resumable across sessions:
# the recipe of a GPU lease (700 steps of 64 examples, lr 5e-4, docs/training.md), 8 rows per
# forward pass, a state every 5 steps. Run it again after any stop (a killed job, a new
# session) and it goes on from its last state with the same batches and optimizer moments.
# At the lowest priority, so builds and tests here go first.
#
#   scripts/train_cpu.sh DATA OUT SEED      # e.g. .gpu/data-pick runs/neko-smol-pick-s0 0
#   (setsid nohup scripts/train_cpu.sh .gpu/data-pick runs/neko-smol-pick-s0 0 \
#       >> runs/neko-smol-pick-s0.log 2>&1 &)
#
# DATA: made by scripts/prepare_gpu_data.sh; the base: models/smollm2-135m (docs/training.md);
# Python with torch, numpy, safetensors, tokenizers: NEKO_REF_VENV (default /tmp/neko-ref-venv).
# When it is done, OUT/adapter.safetensors is the step-700 adapter (f16), which
# `neko correct --model models/neko-smol-lora --adapter OUT/adapter.safetensors` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
data="$1" out="$2" seed="$3"
python="${NEKO_REF_VENV:-/tmp/neko-ref-venv}/bin/python"
mkdir -p "$out"
resume=()
[ -f "$out/state.pt" ] && resume=(--resume)
# --compile: the MoE FFN's element-wise work fused, 15-20% faster here (measured on 4 steps).
exec nice -n 19 "$python" scripts/train_torch.py --base models/smollm2-135m --data "$data" \
    --out "$out" --variants task-moe --steps 700 --batch-size 64 --lr 5e-4 --seed "$seed" \
    --micro-batch 8 --recompute-moe --compile --save-every 5 --no-decode --budget-s 1e9 \
    "${resume[@]}"
