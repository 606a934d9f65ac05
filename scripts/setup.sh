#!/usr/bin/env bash
# Set up neko-smol, the default model `neko correct` loads when no --model is given:
# fetch the SmolLM2-135M-Instruct base (scripts/fetch-base.sh, sha256-pinned), upcycle it exactly
# as training started (4 low-rank experts, rank 16, task map asr=0 st=1 mt=1 ocr=2 gec=3), and put
# the shipped trained experts and gates (configs/neko-smol/adapter.safetensors) in place.
#
#   scripts/setup.sh            # prints the folder it built: ${NEKO_CACHE:-~/.cache/neko}/neko-smol
#
# Idempotent: the folder is rebuilt only when the shipped adapter changed or its files no longer
# read. Env: NEKO (the neko
# binary; default: target/release/neko, built through cargo, a no-op when fresh), NEKO_CACHE.
set -euo pipefail
# NEKO and NEKO_CACHE as the caller meant them: a command on PATH, or a path from the caller's
# folder, not from the repo root this script moves to.
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
if [ -n "${NEKO:-}" ]; then
    case "$NEKO" in
        */*) NEKO="$(absolute "$NEKO")" ;;
        *) NEKO="$(command -v "$NEKO" || echo "$NEKO")" ;;
    esac
fi
cache="$(absolute "${NEKO_CACHE:-$HOME/.cache/neko}")"
export NEKO_CACHE="$cache"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."

adapter="configs/neko-smol/adapter.safetensors"
dest="$cache/neko-smol"
if [ ! -f "$adapter" ]; then
    echo "setup: $adapter is missing (a partial checkout?); pass --model to neko correct instead." >&2
    exit 1
fi
stamp="$(sha256sum "$adapter" | cut -d' ' -f1)"
neko="${NEKO:-target/release/neko}"
if [ -n "${NEKO:-}" ] && [ ! -x "$neko" ]; then
    echo "setup: NEKO=$NEKO is not an executable neko binary" >&2
    exit 1
fi
# Always through cargo without NEKO (a no-op when fresh): after a pull, a stale binary would
# build the new experts.
[ -n "${NEKO:-}" ] || cargo build --release --locked --quiet
# Up to date: built from this adapter, and its files still read (a cut or deleted weight file
# is rebuilt, not reported as set up).
if [ -f "$dest/config.json" ] && [ "$(cat "$dest/.adapter-sha256" 2>/dev/null)" = "$stamp" ] &&
    "$neko" info --model "$dest" >/dev/null 2>&1; then
    echo "$dest"
    exit 0
fi

gguf="$(scripts/fetch-base.sh)"
# Built under a fixed name, so that what an interrupted run left (the folder, and the staging
# folder `neko upcycle` writes beside it) is cleared by the next; two setups at once are not
# supported. The PID-named folders of older versions of this script are cleared too.
tmp="$cache/.neko-smol.building"
stage="$cache/..neko-smol.building.neko-partial"
rm -rf "$tmp" "$stage" "$dest".partial.* "$cache"/.neko-smol.partial.*.neko-partial
trap 'rm -rf "$tmp" "$stage"' EXIT
"$neko" upcycle --model "$gguf" --experts 4 --lora-rank 16 \
    --tasks asr=0,st=1,mt=1,ocr=2,gec=3 --adapter "$adapter" --to "$tmp" >&2
echo "$stamp" >"$tmp/.adapter-sha256"
rm -rf "$dest"
mv "$tmp" "$dest"
echo "setup: neko-smol is in $dest" >&2
echo "$dest"
