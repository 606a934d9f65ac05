#!/usr/bin/env bash
# Copy a neko-smol training run's trained tensors into the repo as the shipped default model:
# configs/neko-smol/adapter.safetensors (stored as f16: half the size; scripts/setup.sh widens
# them to f32 again), with the run's config, state and training log beside it. A run of
# `neko train` (config.toml, state.json) or of scripts/train_torch.py (summary.json, its log:
# RUN/log.txt on a GPU lease, RUN.log beside the folder from scripts/train_cpu.sh).
#
#   scripts/ship_neko_smol.sh [RUN_DIR]        # default runs/neko-smol
#
# Every file it copies is checked first: a run missing one changes nothing.
#
# Needs Python with numpy and safetensors (NEKO_REF_VENV, default /tmp/neko-ref-venv, as
# scripts/make_tiny_models.sh makes it). Developers only; users get the shipped files.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
run="${1:-runs/neko-smol}"
venv="${NEKO_REF_VENV:-/tmp/neko-ref-venv}"
dest=configs/neko-smol
if [ -f "$run/state.json" ]; then
    needs=("$run/adapter.safetensors" "$run/config.toml" "$run/train.jsonl")
else
    log="$run/log.txt"
    [ -f "$log" ] || log="${run%/}.log"
    needs=("$run/adapter.safetensors" "$run/summary.json" "$run/train.jsonl" "$log")
fi
for f in "${needs[@]}"; do
    [ -f "$f" ] || { echo "ship: $f is missing: nothing shipped" >&2; exit 2; }
done
mkdir -p "$dest"
"$venv/bin/python" - "$run/adapter.safetensors" "$dest/adapter.safetensors" <<'PY'
import sys
from safetensors.numpy import load_file, save_file
src, dst = sys.argv[1], sys.argv[2]
tensors = {k: v.astype("float16") for k, v in load_file(src).items()}
save_file(tensors, dst, metadata={"source": "neko train", "dtype": "f16"})
print(f"{dst}: {len(tensors)} tensors", file=sys.stderr)
PY
if [ -f "$run/state.json" ]; then
    cp "$run/config.toml" "$dest/train-config.toml"
    cp "$run/state.json" "$dest/state.json"
    # The log up to the checkpoint (steps logged after it are redone on resume).
    python3 - "$run" "$dest/train.jsonl" <<'PY'
import json, sys
run, out = sys.argv[1], sys.argv[2]
last = json.load(open(f"{run}/state.json"))["step"]
with open(out, "w") as f:
    for line in open(f"{run}/train.jsonl"):
        if json.loads(line).get("step", 0) <= last:
            f.write(line)
PY
else
    cp "$run/summary.json" "$dest/train-summary.json"
    cp "$run/train.jsonl" "$dest/train.jsonl"
    cp "$log" "$dest/train-log.txt"
fi
# The upcycling the adapter was trained on, which neko upcycle --adapter checks: from a neko
# train run's adapter.json; a torch run has none, so the shipped file must already say it.
if [ -f "$run/adapter.json" ]; then
    python3 - "$run/adapter.json" "$dest/adapter.json" <<'PY'
import json, sys
src, dst = sys.argv[1], sys.argv[2]
block = json.load(open(src)).get("upcycle")
if block:
    about = "The upcycling the shipped experts and gates were trained on (scripts/setup.sh rebuilds it); neko upcycle and neko correct --adapter refuse a model upcycled otherwise."
    json.dump({"about": about, "upcycle": block}, open(dst, "w"), indent=2)
    open(dst, "a").write("\n")
PY
else
    echo "ship: $run has no adapter.json: check that $dest/adapter.json names its upcycling" >&2
fi
sha256sum "$dest/adapter.safetensors"
