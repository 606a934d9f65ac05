#!/usr/bin/env bash
# Prepare what scripts/train_torch.py reads on a GPU machine (which has PyTorch but no Rust):
# the training examples exactly as `neko train` renders them, the prompts of the dev splits, of
# the HyPoradise test sets and of the out-of-domain ASR dev split as `neko correct` renders them
# (for decoding only), and the tokenizer. Everything is token ids, so both engines see the same
# text.
#
#   scripts/prepare_gpu_data.sh [DIR]        # default .gpu/data (git-ignored)
#   CONFIG=configs/train/neko-smol-ood.toml scripts/prepare_gpu_data.sh   # another training mix
#
# Then scripts/gpu_carry.sh (the base and the gguf package in carry-sized parts, and how to
# send them), and on the GPU machine (neko-smol's run, docs/training.md):
#   python3 scripts/train_torch.py --gguf smollm2-135m-instruct.Q4_1.gguf --data DIR \
#       --out OUT --variants task-moe --steps 700 --batch-size 64 --lr 5e-4
# Needs the models/neko-smol-lora start model (docs/training.md) and Python with numpy
# (NEKO_REF_VENV, default /tmp/neko-ref-venv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
dir="${1:-.gpu/data}"
neko="${NEKO:-target/release/neko}"
model="${MODEL:-models/neko-smol-lora}"
venv="${NEKO_REF_VENV:-/tmp/neko-ref-venv}"
# Always through cargo (a no-op when fresh): a stale binary would give stale numbers.
[ -n "${NEKO:-}" ] || cargo build --release --quiet
mkdir -p "$dir/prompts"
"$neko" train --config "${CONFIG:-configs/train/neko-smol.toml}" --export-examples "$dir/train.jsonl" \
    --out "$(mktemp -d)"
for s in asr-whisper asr-sphinx ocr mt gec; do
    "$neko" correct --model "$model" --dump-prompts "../shared/data/synth/$s.dev.jsonl" \
        | gzip >"$dir/prompts/dev-$s.jsonl.gz"
done
for f in ../shared/data/hyporadise/test/*.json; do
    "$neko" correct --task asr --model "$model" --dump-prompts "$f" \
        | gzip >"$dir/prompts/hp-$(basename "$f" .json).jsonl.gz"
done
# The out-of-domain ASR dev split, HyPoradise-style (as scripts/ood_dev.sh decodes it).
ood="$(mktemp --suffix .json)"
python3 scripts/hp_style.py docs/results/ood-asr-2026-11-26/ood-asr.dev.jsonl.gz "$ood"
"$neko" correct --task asr --model "$model" --dump-prompts "$ood" \
    | gzip >"$dir/prompts/ood-asr-hp.jsonl.gz"
rm "$ood"
cp "$model/tokenizer.json" "$dir/"
"$venv/bin/python" scripts/pack_examples.py "$dir/train.jsonl" "$dir/train.npz"
rm "$dir/train.jsonl"
du -sh "$dir"
