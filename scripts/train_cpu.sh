#!/usr/bin/env bash
# A full-size training run of scripts/train_torch.py on this CPU, resumable across sessions:
# the recipe of a GPU lease (700 steps of 64 examples, lr 5e-4, bf16 autocast, docs/training.md),
# 8 rows per forward pass, a state every 5 steps. Run it again after any stop (a killed job, a new
# session) and it goes on from its last state with the same batches and optimizer moments.
# At the lowest priority, so builds and tests here go first.
#
#   scripts/train_cpu.sh DATA OUT SEED      # e.g. .gpu/data-pick runs/neko-smol-pick-s0 0
#   (setsid nohup scripts/train_cpu.sh .gpu/data-pick runs/neko-smol-pick-s0 0 \
#       >> runs/neko-smol-pick-s0.log 2>&1 &)
#
# On a fresh machine it first makes what it reads and does not find (a replaced machine keeps
# only the repository): the Python venv with torch (NEKO_REF_VENV, default /tmp/neko-ref-venv;
# PyPI's torch wheel is ~5 GB), the base models/smollm2-135m and the start model
# models/neko-smol-lora (docs/training.md), and DATA from CONFIG (default
# configs/train/neko-smol-pick.toml) by scripts/prepare_gpu_data.sh. A lost OUT starts at step 0.
# When it is done, OUT/adapter.safetensors is the step-700 adapter (f16), which
# `neko correct --model models/neko-smol-lora --adapter OUT/adapter.safetensors` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
data="$1" out="$2" seed="$3"
venv="${NEKO_REF_VENV:-/tmp/neko-ref-venv}"
python="$venv/bin/python"
neko=target/release/neko

if ! "$python" -c 'import torch, numpy, safetensors, tokenizers' 2>/dev/null; then
    echo "train_cpu: making the venv $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch==2.15.0 tokenizers==0.23.3 safetensors==0.8.0 \
        numpy==2.4.6
fi
if [ ! -f models/smollm2-135m/config.json ] || [ ! -f models/neko-smol-lora/config.json ]; then
    echo "train_cpu: making models/smollm2-135m and models/neko-smol-lora" >&2
    cargo build --release --quiet
    rm -rf models/smollm2-135m models/neko-smol-lora
    "$neko" convert --from "$(scripts/fetch-base.sh)" --to models/smollm2-135m
    "$neko" upcycle --model models/smollm2-135m --experts 4 --lora-rank 16 \
        --tasks asr=0,st=1,mt=1,ocr=2,gec=3 --to models/neko-smol-lora
fi
if [ ! -f "$data/train.npz" ]; then
    echo "train_cpu: making $data" >&2
    rm -rf "$data"
    CONFIG="${CONFIG:-configs/train/neko-smol-pick.toml}" NEKO_REF_VENV="$venv" \
        scripts/prepare_gpu_data.sh "$data"
fi

mkdir -p "$out"
resume=()
[ -f "$out/state.pt" ] && resume=(--resume)
# --compile: the MoE FFN's element-wise work fused, 15-20% faster here (measured on 4 steps).
# --bf16: autocast as on the GPU; a step about twice as fast on this CPU (49 s against 95 s).
exec nice -n 19 "$python" scripts/train_torch.py --base models/smollm2-135m --data "$data" \
    --out "$out" --variants task-moe --steps 700 --batch-size 64 --lr 5e-4 --seed "$seed" \
    --micro-batch 8 --recompute-moe --compile --bf16 --save-every 5 --no-decode --budget-s 1e9 \
    "${resume[@]}"
