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
# Paths (OUT, DATA and any in the arguments) are the caller's: no cd.
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$1"
shift
neko="${NEKO:-$root/target/release/neko}"
data="${DATA:-$root/../shared/data/hyporadise/test}"
if [ ! -d "$data" ]; then
    echo "hp_test: $data is missing (the test sets ship with the shared data only)" >&2
    exit 2
fi
mkdir -p "$out"
sets="${SETS:-$(cd "$data" && ls ./*.json | sed 's|^\./||; s|\.json$||')}"
outs=()
for set in $sets; do
    # Always through correct_sharded.sh: a finished shard resumes at no cost, and one made
    # with other settings (another model) is refused, not reported as this run's scores.
    "$here/correct_sharded.sh" "$data/$set.json" "$out/$set.jsonl" --task asr "$@"
    outs+=("$out/$set.jsonl")
done
"$neko" eval --json "${outs[@]}" >"$out/report.json"
"$neko" eval --group-by none "${outs[@]}"
