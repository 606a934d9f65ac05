#!/usr/bin/env bash
# A local OpenAI-compatible server for neko's `--backend openai` tests and measurements:
# llama-cpp-python's server (from PyPI) on 127.0.0.1, serving SmolLM2-135M-Instruct.
#
#   scripts/llama_server.sh install          # venv + llama-cpp-python[server]==0.3.36 (builds llama.cpp: ~10 min on 2 cores)
#   eval "$(scripts/llama_server.sh start)"  # starts it; prints `export NEKO_TEST_OPENAI_ENDPOINT=... NEKO_TEST_OPENAI_GGUF=...`
#   scripts/llama_server.sh start FILE.gguf  # serves another GGUF
#   scripts/llama_server.sh stop
#
# By default it serves the f32 form of the SmolLM2 base (scripts/fetch-base.sh's Q4_1 GGUF
# dequantised by llama.cpp's own quantize tool: the same weights, exactly), with an f32 KV
# cache, one thread and a 4,096-token context: neko in process on that same file then gives the
# same greedy tokens (tests/it/serve.rs). Env: NEKO_CACHE (default ~/.cache/neko),
# NEKO_LLAMA_VENV (default $NEKO_CACHE/llama-venv), PORT (8765), THREADS (1), N_CTX (4096),
# KV_TYPE (0 = f32, 1 = f16: llama.cpp's default).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${NEKO_CACHE:-$HOME/.cache/neko}"
venv="${NEKO_LLAMA_VENV:-$cache/llama-venv}"
port="${PORT:-8765}"
pidfile="$cache/llama-server.$port.pid"
logfile="$cache/llama-server.$port.log"
py="$venv/bin/python"

installed() { [ -x "$py" ] && "$py" -c "import llama_cpp.server, uvicorn, fastapi" 2>/dev/null; }

install() {
    installed && return 0
    mkdir -p "$cache"
    [ -x "$py" ] || python3 -m venv "$venv"
    # A plain CPU build for AVX2: no BLAS, no OpenMP. Not GGML_NATIVE: on these VMs it enables
    # AVX-512/AMX kernels that crash on batches of more than one token. --no-cache-dir: pip
    # would otherwise reuse a wheel it built earlier with other CMAKE_ARGS.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=OFF" \
        CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$venv/bin/pip" install --quiet --no-cache-dir 'llama-cpp-python[server]==0.3.36' >&2
    installed
}

# The f32 GGUF of the base: llama.cpp dequantises every tensor of the Q4_1 file (ftype 0 =
# all f32), keeping metadata, tokenizer and chat template.
f32_gguf() {
    local q41 out="$cache/smollm2-135m-instruct.f32.gguf"
    if [ ! -s "$out" ]; then
        q41="$("$here/fetch-base.sh")"
        if ! "$py" - "$q41" "$out.partial.$$" >"$cache/f32-gguf.log" 2>&1 <<'PY'
import ctypes, sys
import llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = 0  # LLAMA_FTYPE_ALL_F32
p.allow_requantize = True
p.nthread = 1
if llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)) != 0:
    sys.exit("llama_model_quantize failed")
PY
        then
            cat "$cache/f32-gguf.log" >&2
            exit 1
        fi
        mv "$out.partial.$$" "$out"
    fi
    echo "$out"
}

start() {
    installed || { echo "llama_server: llama-cpp-python is not installed in $venv (run: $0 install)" >&2; exit 1; }
    local gguf="${1:-$(f32_gguf)}"
    local url="http://127.0.0.1:$port/v1"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "llama_server: already running (pid $(cat "$pidfile")) on $url" >&2
    else
        "$py" -m llama_cpp.server --model "$gguf" --host 127.0.0.1 --port "$port" \
            --n_ctx "${N_CTX:-4096}" --n_threads "${THREADS:-1}" --n_threads_batch "${THREADS:-1}" \
            --type_k "${KV_TYPE:-0}" --type_v "${KV_TYPE:-0}" >"$logfile" 2>&1 &
        echo $! >"$pidfile"
        local waited=0
        until curl -fsS "$url/models" >/dev/null 2>&1; do
            if ! kill -0 "$(cat "$pidfile")" 2>/dev/null || [ "$waited" -ge 120 ]; then
                echo "llama_server: did not come up; its log ($logfile):" >&2
                tail -n 20 "$logfile" >&2
                stop
                exit 1
            fi
            sleep 1
            waited=$((waited + 1))
        done
        echo "llama_server: serving $gguf on $url (pid $(cat "$pidfile"), log $logfile)" >&2
    fi
    # Quoted for the shell that evals these lines (a cache path may hold spaces).
    printf 'export NEKO_TEST_OPENAI_ENDPOINT=%q\n' "$url"
    printf 'export NEKO_TEST_OPENAI_GGUF=%q\n' "$gguf"
}

stop() {
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
}

case "${1:-}" in
    install) install ;;
    start) shift; start "$@" ;;
    stop) stop ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
