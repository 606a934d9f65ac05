#!/usr/bin/env bash
# Regenerate tests/fixtures/metrics: reference WER/CER (jiwer), BLEU/chrF (sacrebleu), GLEU (gleu),
# Whisper normaliser outputs (openai-whisper) and aggregates over ../shared/data.
#
# Creates (or reuses) a virtual environment outside the repo and installs the pinned reference
# tools from PyPI. openai-whisper is installed without its dependencies (torch): only its
# normalisers are used, and they need just `regex` and `more-itertools`.
#
#   scripts/make_metric_fixtures.sh [extra args for make_metric_fixtures.py]
#
# Env: NEKO_METRICS_VENV (default /tmp/neko-metrics-venv), NEKO_DATA (default ../shared/data
# beside the repository).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${NEKO_METRICS_VENV:-/tmp/neko-metrics-venv}"
data="${NEKO_DATA:-$here/../../shared/data}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet \
    jiwer==4.0.0 \
    rapidfuzz==3.14.6 \
    sacrebleu==2.5.1 \
    gleu==1.1.0 \
    numpy==2.4.6 \
    prettytable==3.18.0 \
    regex==2026.11.19 \
    more-itertools==11.2.1
"$venv/bin/pip" install --quiet --no-deps openai-whisper==20250625

cd "$here/.."
exec "$venv/bin/python" "$here/make_metric_fixtures.py" --data "$data" --out tests/fixtures/metrics "$@"
