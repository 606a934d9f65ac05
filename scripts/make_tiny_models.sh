#!/usr/bin/env bash
# Regenerate tests/fixtures/tiny-mixtral and tests/fixtures/tiny-llama.
#
# Creates (or reuses) a virtual environment outside the repo, installs the pinned
# reference stack from PyPI and runs scripts/make_tiny_models.py. CPU only; PyPI's
# torch wheel is the CUDA build (~5 GB download), the GPU is never used.
#
#   scripts/make_tiny_models.sh [extra args for make_tiny_models.py]
#
# Env: NEKO_REF_VENV (default /tmp/neko-ref-venv), NEKO_DATA (default /work/shared/data).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${NEKO_REF_VENV:-/tmp/neko-ref-venv}"
data="${NEKO_DATA:-/work/shared/data}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet \
    torch==2.15.0 \
    transformers==5.24.0 \
    tokenizers==0.23.3 \
    safetensors==0.8.0 \
    numpy==2.4.6

exec "$venv/bin/python" "$here/make_tiny_models.py" --data "$data" --out "$here/../tests/fixtures" "$@"
