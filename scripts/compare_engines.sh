#!/usr/bin/env bash
# neko vs Hugging Face transformers (PyTorch, CPU) vs llama.cpp (llama-cpp-python), side by
# side in one run: the same SmolLM2-135M-Instruct, the same first N HyPoradise chime4 records,
# the same prompt token ids (rendered by neko: `neko correct --dump-prompts`), greedy decoding,
# the same answer bound and stop rules (EOS, a newline). Speed measurement only.
#
#   scripts/compare_engines.sh                  # N=200 records, THREADS=1
#   N=50 THREADS=2 scripts/compare_engines.sh
#
# Engines: neko on the converted f32 folder (the one transformers loads) and on the GGUF
# requantised to q8_0; transformers f32 on the converted folder, one record at a time with its
# KV cache; llama.cpp on the GGUF as published (Q4_1), one record at a time, with
# llama-cpp-python's reuse of the KV cache of the prefix shared with the previous prompt.
# Prints records/s per engine, ratios and agreement with neko f32; files in $OUT.
# Env: N, THREADS, OUT (default /tmp/neko-compare), DATA, NEKO_REF_VENV (default
# /tmp/neko-ref-venv, made by scripts/make_tiny_models.sh; llama-cpp-python is added here and
# compiles llama.cpp with pip: 10+ minutes on 2 cores).
set -euo pipefail
# The caller's paths made absolute before the script moves to the checkout, where the
# paths in neko's arguments are read (models/..., runs/...).
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
[ -z "${OUT:-}" ] || OUT="$(absolute "$OUT")"
[ -z "${DATA:-}" ] || DATA="$(absolute "$DATA")"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
N="${N:-200}"
THREADS="${THREADS:-1}"
OUT="${OUT:-/tmp/neko-compare}"
DATA="${DATA:-../shared/data/hyporadise/test/test_chime4.json}"
venv="${NEKO_REF_VENV:-/tmp/neko-ref-venv}"
mkdir -p "$OUT"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch==2.15.0 transformers==5.24.0 numpy
fi
if ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
    # A plain CPU build for an AVX2 laptop: no BLAS, no OpenMP (threads are set per call). Not
    # GGML_NATIVE: on this VM it enables AVX-512/AMX kernels that crash on any batch of more
    # than one token (segmentation fault in llama_decode).
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=OFF" \
        "$venv/bin/pip" install --quiet llama-cpp-python==0.3.36
fi
gguf="$(scripts/fetch-base.sh)"
cargo build --release --quiet
neko=target/release/neko
export RAYON_NUM_THREADS="$THREADS"
[ -f "$OUT/smol-f32/model.safetensors" ] || $neko convert --from "$gguf" --to "$OUT/smol-f32" >&2

# The exact prompts neko decodes (ChatML-wrapped, ids), first N records.
$neko correct --task asr --model "$OUT/smol-f32" --dump-prompts "$DATA" | head -n "$N" >"$OUT/prompts.jsonl"

bench() { # name, model flags...
    local name="$1"
    shift
    # Free decoding, as the other engines decode (neko's ASR default keeps to the hypotheses' words).
    $neko bench --data "$DATA" --limit "$N" --task asr --no-guard --constrain none \
        --predictions "$OUT/$name.jsonl" "$@" >"$OUT/$name.json"
    echo "$name: $(cat "$OUT/$name.json")" >&2
}
bench neko-f32 --model "$OUT/smol-f32"
bench neko-q8_0 --model "$gguf" --quant q8_0

"$venv/bin/python" "$here/compare_engines.py" "$OUT/prompts.jsonl" --hf "$OUT/smol-f32" \
    --gguf "$gguf" --out "$OUT" --threads "$THREADS"
"$venv/bin/python" "$here/compare_engines.py" --summary "$OUT"
