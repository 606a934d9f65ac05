#!/usr/bin/env bash
# Zero-shot HyPoradise test scores of a corrector decoded on this CPU: every test set in
# ../shared/data/hyporadise/test, `neko correct --task asr` with the default guard, in SHARDS
# shards at once, then `neko eval`. Evaluation only: run it on a model already chosen on dev,
# never to choose one. Resumable: run it again after an interruption and every shard goes on
# where it stopped (`--resume`). About 2 hours for all 11,844 records on two cores.
#
#   scripts/hp_test.sh OUT                          # the default model (neko-smol)
#   scripts/hp_test.sh OUT --model models/neko-smol-lora --adapter RUN/adapter.safetensors
#
# Arguments after OUT go to `neko correct`. Env: SHARDS (default 2), SETS (default: all), NEKO,
# DATA (another folder of HyPoradise JSON files).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
out="$1"
shift
neko="${NEKO:-target/release/neko}"
shards="${SHARDS:-2}"
data="${DATA:-../shared/data/hyporadise/test}"
if [ ! -d "$data" ]; then
    echo "hp_test: $data is missing (the test sets ship with the shared data only)" >&2
    exit 2
fi
[ -x "$neko" ] || cargo build --release --quiet
mkdir -p "$out"
sets="${SETS:-$(cd "$data" && ls ./*.json | sed 's|^\./||; s|\.json$||')}"
outs=()
for set in $sets; do
    if [ ! -f "$out/$set.jsonl" ]; then
        pids=()
        for ((i = 0; i < shards; i++)); do
            "$neko" correct --task asr --threads 1 "$@" --shard "$i/$shards" --resume \
                "$data/$set.json" -o "$out/$set.$i.jsonl" &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p"; done
        "$neko" merge "$out/$set".[0-9]*.jsonl -o "$out/$set.jsonl"
    fi
    outs+=("$out/$set.jsonl")
done
"$neko" eval --json "${outs[@]}" >"$out/report.json"
"$neko" eval --group-by none "${outs[@]}"
