#!/usr/bin/env bash
# records/s of `neko correct --backend openai` against a local llama-cpp-python server at several
# concurrencies, and of neko in process on the same GGUF, in one run (speed measurement only).
#
#   scripts/bench_serving.sh                    # N=100 chime4 records, CONCURRENCY="1 4 16"
#   GGUF=~/.cache/neko/smollm2-135m-instruct.Q4_1.gguf KV_TYPE=1 LOCAL_FLAGS="--quant q8_0" \
#       scripts/bench_serving.sh               # the published Q4_1 file; neko requantises it to q8_0
#
# The server is scripts/llama_server.sh (one thread, like neko here). Default GGUF: the f32 form
# of the SmolLM2 base, the file both engines then decode identically. Prints one line per run
# and a Markdown table; files in $OUT. Env: N, CONCURRENCY, GGUF, LOCAL (0 skips the in-process
# run), LOCAL_FLAGS (extra flags of the in-process run), OUT (default /tmp/neko-serving), DATA,
# PORT, plus llama_server.sh's.
set -euo pipefail
# The caller's paths made absolute before the script moves to the checkout, where the
# paths in neko's arguments are read (models/..., runs/...).
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
[ -z "${OUT:-}" ] || OUT="$(absolute "$OUT")"
[ -z "${DATA:-}" ] || DATA="$(absolute "$DATA")"
[ -z "${GGUF:-}" ] || GGUF="$(absolute "$GGUF")"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
N="${N:-100}"
CONCURRENCY="${CONCURRENCY:-1 4 16}"
OUT="${OUT:-/tmp/neko-serving}"
DATA="${DATA:-../shared/data/hyporadise/test/test_chime4.json}"
export PORT="${PORT:-8766}"
mkdir -p "$OUT"

python3 - "$DATA" "$N" "$OUT/in.jsonl" <<'PY'
import json, sys
records = json.load(open(sys.argv[1]))[: int(sys.argv[2])]
with open(sys.argv[3], "w") as f:
    for r in records:
        f.write(json.dumps(r) + "\n")
PY
cargo build --release --quiet
neko=target/release/neko
export RAYON_NUM_THREADS=1

scripts/llama_server.sh install
trap 'scripts/llama_server.sh stop' EXIT
# A server that does not start stops the run (an `eval` of a failed substitution would not,
# and variables left from an earlier shell would send the runs to another server).
server_env="$(scripts/llama_server.sh start "${GGUF:-}")"
eval "$server_env"
gguf="$NEKO_TEST_OPENAI_GGUF"

rows=()
run() { # name, flags...
    local name="$1"
    shift
    local t0 t1
    t0=$(date +%s.%N)
    $neko correct --task asr --model "$gguf" "$@" -o "$OUT/$name.jsonl" "$OUT/in.jsonl" 2>"$OUT/$name.log" ||
        { tail -n 5 "$OUT/$name.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    # The records run, which a small DATA file makes fewer than N.
    local n rps
    n=$(wc -l <"$OUT/$name.jsonl")
    rps=$(python3 -c "print(f'{$n / ($t1 - $t0):.3f}')")
    echo "$name: $n records in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s, $rps records/s, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    rows+=("$name|$rps")
}

if [ "${LOCAL:-1}" != 0 ]; then
    # Free decoding, as a server decodes (neko's ASR default keeps to the hypotheses' words).
    # shellcheck disable=SC2086
    run in-process --constrain none ${LOCAL_FLAGS:-}
fi
for c in $CONCURRENCY; do
    run "openai-c$c" --backend openai --endpoint "$NEKO_TEST_OPENAI_ENDPOINT" --concurrency "$c"
done

same() { # how many lines of two outputs are identical
    python3 - "$1" "$2" <<'PY'
import sys
a = open(sys.argv[1]).read().splitlines()
b = open(sys.argv[2]).read().splitlines()
print(sum(x == y for x, y in zip(a, b)))
PY
}
base="${rows[0]#*|}"
echo
echo "| run | records/s | × in process | lines identical to in process |"
echo "|---|---|---|---|"
for r in "${rows[@]}"; do
    name="${r%%|*}"
    rps="${r#*|}"
    if [ "${LOCAL:-1}" != 0 ]; then
        ratio=$(python3 -c "print(f'{$rps / $base:.2f}')")
        echo "| $name | $rps | $ratio | $(same "$OUT/in-process.jsonl" "$OUT/$name.jsonl")/$N |"
    else
        echo "| $name | $rps | | |"
    fi
done
