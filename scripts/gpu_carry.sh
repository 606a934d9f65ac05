#!/usr/bin/env bash
# Make what a lent GPU machine needs besides the repo, in carry-sized pieces under .gpu/
# (git-ignored): the device tool carries at most 64 MiB a call, working tree included, and the
# base GGUF alone is 98 MB. Run scripts/prepare_gpu_data.sh first for .gpu/data.
#
#   scripts/gpu_carry.sh
#
# Writes .gpu/c1/p1 and .gpu/c2/p2 (the GGUF in two parts) and .gpu/py/gguf (the `gguf` Python
# package, which the GPU image lacks; from NEKO_REF_VENV, default /tmp/neko-ref-venv, as
# scripts/make_base_reference.sh installs it). Then, in one session, back to back (a machine
# left idle for 30 s is given back, and each call replaces the carried folders):
#   1. move configs/neko-smol/adapter.safetensors out of the working tree (it is tracked and
#      would travel too; put it back after the last call);
#   2. run `cp .gpu/c1/p1 /tmp/p1` carrying .gpu/c1;
#   3. run `cat /tmp/p1 .gpu/c2/p2 >/tmp/base.gguf && PYTHONPATH=$PWD/.gpu/py python3
#      scripts/train_torch.py --gguf /tmp/base.gguf --data .gpu/data ...` carrying .gpu/c2,
#      .gpu/data and .gpu/py, with its outputs under $OUT (files of 16 MiB at most: the
#      adapter comes in two parts, joined as docs/training.md says); or, in place of the one
#      train_torch.py, scripts/gpu_runs.sh for several runs side by side.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
gguf="$(scripts/fetch-base.sh)"
venv="${NEKO_REF_VENV:-/tmp/neko-ref-venv}"
mkdir -p .gpu/c1 .gpu/c2 .gpu/py
head -c 55000000 "$gguf" >.gpu/c1/p1
tail -c +55000001 "$gguf" >.gpu/c2/p2
want="$(sha256sum "$gguf" | cut -d' ' -f1)"
got="$(cat .gpu/c1/p1 .gpu/c2/p2 | sha256sum | cut -d' ' -f1)"
[ "$want" = "$got" ] || { echo "gpu_carry: the parts do not join to the GGUF" >&2; exit 2; }
rm -rf .gpu/py/gguf
cp -r "$(echo "$venv"/lib/python3*/site-packages/gguf)" .gpu/py/gguf
find .gpu/py -name __pycache__ -prune -exec rm -rf {} +
echo "base sha256 $want (check it on the GPU machine after joining)"
du -sh .gpu/*
