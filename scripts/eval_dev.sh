#!/usr/bin/env bash
# Score a corrector on the dev splits of ../shared/data/synth (never a test split): the first N
# records of each, corrected with `neko correct` and scored with `neko eval` (1-best vs the
# correction: WER for ASR, CER for OCR, BLEU/WER for MT, GLEU/F0.5 for GEC).
#
#   scripts/eval_dev.sh                                   # the default model (neko-smol)
#   scripts/eval_dev.sh --model models/neko-smol-lora --adapter runs/neko-smol/adapter.safetensors
#   N=50 OUT=/tmp/dev scripts/eval_dev.sh --guard-max-edit 0.3 --model ...
#
# Arguments are passed to `neko correct`. Env: N (default 200), OUT (default /tmp/neko-dev),
# SETS (default: asr-whisper asr-sphinx ocr mt gec), NEKO (default target/release/neko).
set -euo pipefail
# The caller's paths made absolute before the script moves to the checkout, where the
# paths in neko's arguments are read (models/..., runs/...).
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
case "${NEKO:-}" in */*) NEKO="$(absolute "$NEKO")" ;; esac
[ -z "${OUT:-}" ] || OUT="$(absolute "$OUT")"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
N="${N:-200}"
OUT="${OUT:-/tmp/neko-dev}"
SETS="${SETS:-asr-whisper asr-sphinx ocr mt gec}"
neko="${NEKO:-target/release/neko}"
data="../shared/data/synth"
if [ ! -d "$data" ]; then
    echo "eval_dev: $data is missing (the dev splits ship with the shared data only)" >&2
    exit 2
fi
# Always through cargo (a no-op when fresh): a stale binary would give stale numbers.
[ -n "${NEKO:-}" ] || cargo build --release --quiet
mkdir -p "$OUT"
outs=()
for set in $SETS; do
    head -n "$N" "$data/$set.dev.jsonl" >"$OUT/$set.in.jsonl"
    "$neko" correct "$@" "$OUT/$set.in.jsonl" -o "$OUT/$set.jsonl"
    outs+=("$OUT/$set.jsonl")
done
"$neko" eval --json "${outs[@]}" >"$OUT/report.json"
"$neko" eval "${outs[@]}"
