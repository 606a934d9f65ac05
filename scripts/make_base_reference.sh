#!/usr/bin/env bash
# Regenerate tests/fixtures/smollm2-reference.json: transformers' outputs for SmolLM2-135M-Instruct
# as `neko convert` writes it, plus cross-checks against transformers' own GGUF loader and
# upcycled models loading as MixtralForCausalLM. CPU only; about a minute after the builds.
#
#   scripts/make_base_reference.sh
#
# Env: NEKO_BIN, a neko binary to use instead of building one.
# Needs the reference venv of scripts/make_tiny_models.sh (NEKO_REF_VENV, default
# /tmp/neko-ref-venv); adds gguf and accelerate (transformers' GGUF loader needs both).
# Work files go to a temporary folder (about 2.5 GB, removed at the end).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$here/.."
venv="${NEKO_REF_VENV:-/tmp/neko-ref-venv}"

if [ ! -x "$venv/bin/python" ]; then
    echo "no reference venv at $venv: run scripts/make_tiny_models.sh first" >&2
    exit 1
fi
"$venv/bin/pip" install --quiet gguf==0.19.0 accelerate==1.15.0

gguf="$("$here/fetch-base.sh")"
if [ -n "${NEKO_BIN:-}" ]; then
    neko="$NEKO_BIN"
else
    (cd "$repo" && cargo build --release --quiet)
    neko="$repo/target/release/neko"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$neko" convert --from "$gguf" --to "$work/smollm2-f32"
"$neko" upcycle --model "$work/smollm2-f32" --experts 4 --tasks asr=0,st=1,mt=1,ocr=2,gec=3 \
    --to "$work/smollm2-moe"
"$neko" upcycle --model "$repo/tests/fixtures/tiny-llama" --experts 4 \
    --tasks asr=0,st=1,mt=1,ocr=2,gec=3 --to "$work/tiny-moe"

cd "$repo"
"$venv/bin/python" "$here/make_base_reference.py" --gguf "$gguf" \
    --converted "$work/smollm2-f32" --upcycled "$work/smollm2-moe" \
    --tiny-upcycled "$work/tiny-moe" --out tests/fixtures/smollm2-reference.json
