#!/usr/bin/env bash
# Decode the out-of-domain ASR dev split (docs/results/ood-asr-2026-11-26, HyPoradise-style:
# lower case, no punctuation, as HyPoradise's N-best) with a corrector, keeping and scoring every
# answer, in two shards at once; then scripts/guard_grid.sh scores it under each style and
# agreement setting (the default guard is `model`, `keep`). Dev data only: what a candidate
# model is chosen on before any HyPoradise test set is decoded with it.
#
#   scripts/ood_dev.sh OUT                                       # the default model (neko-smol)
#   scripts/ood_dev.sh OUT --model models/neko-smol-lora --adapter RUN/adapter.safetensors
#
# Arguments after OUT go to `neko correct`. Env: SHARDS (default 2), NEKO.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
out="$1"
shift
neko="${NEKO:-target/release/neko}"
shards="${SHARDS:-2}"
[ -x "$neko" ] || cargo build --release --quiet
mkdir -p "$out"
zcat docs/results/ood-asr-2026-11-26/ood-asr.dev.jsonl.gz >"$out/ood.jsonl"
python3 scripts/hp_style.py "$out/ood.jsonl" "$out/hp-ood.json"
pids=()
for ((i = 0; i < shards; i++)); do
    "$neko" correct --task asr --guard-max-edit 100 --guard-margin -1000 --guard-agreed free \
        --threads 1 "$@" --shard "$i/$shards" "$out/hp-ood.json" -o "$out/raw.$i.jsonl" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"$neko" merge "$out"/raw.*.jsonl -o "$out/raw.jsonl"
scripts/guard_grid.sh "$out/hp-ood.json" "$out/raw.jsonl" "$out/grid"
