#!/usr/bin/env bash
# Decode the out-of-domain ASR dev split (docs/results/ood-asr-2026-11-26, HyPoradise-style:
# lower case, no punctuation, as HyPoradise's N-best) with a corrector, keeping and scoring every
# answer (all guard checks off but the N-best pick, which the answers then carry), in two
# shards at once; then scripts/guard_grid.sh scores it under each style and
# agreement setting (the default guard is `model`, `keep`). Dev data only: what a candidate
# model is chosen on before any HyPoradise test set is decoded with it.
#
#   scripts/ood_dev.sh OUT                                       # the default model (neko-smol)
#   scripts/ood_dev.sh OUT --model models/neko-smol-lora --adapter RUN/adapter.safetensors
#
# Arguments after OUT go to `neko correct`. Env: SHARDS (default 2), NEKO.
set -euo pipefail
# The caller's paths made absolute before the script moves to the checkout, where the
# paths in neko's arguments are read (models/..., runs/...).
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
case "${NEKO:-}" in */*) NEKO="$(absolute "$NEKO")" ;; esac
out="$(absolute "$1")"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
shift
mkdir -p "$out"
python3 scripts/hp_style.py docs/results/ood-asr-2026-11-26/ood-asr.dev.jsonl.gz "$out/hp-ood.json"
rm -f "$out"/raw.jsonl*
scripts/correct_sharded.sh "$out/hp-ood.json" "$out/raw.jsonl" --task asr \
    --guard-max-edit 100 --guard-margin -1000 --guard-agreed free --guard-dropped free \
    --guard-spacing free --guard-base-lm off "$@"
scripts/guard_grid.sh "$out/hp-ood.json" "$out/raw.jsonl" "$out/grid"
