#!/usr/bin/env bash
# `neko correct` on both cores: SHARDS shards at once (one thread each), merged back in input
# order into OUT (with OUT.sig). Resumable: run it again after an interruption and each shard
# goes on where it stopped (neko refuses to resume a shard made with other settings); delete
# OUT.* first to start over.
#
#   scripts/correct_sharded.sh IN OUT [neko correct arguments]
#
# Env: SHARDS (default 2), NEKO. Used by scripts/ood_dev.sh and scripts/hp_test.sh.
set -euo pipefail
# Paths (IN, OUT and any in the arguments) are the caller's: no cd.
root="$(cd "$(dirname "$0")/.." && pwd)"
in="$1" out="$2"
shift 2
neko="${NEKO:-$root/target/release/neko}"
shards="${SHARDS:-2}"
# Always through cargo (a no-op when fresh): a stale binary would give stale numbers.
[ -n "${NEKO:-}" ] || cargo build --release --quiet --manifest-path "$root/Cargo.toml"
parts=() pids=()
for ((i = 0; i < shards; i++)); do
    parts+=("$out.$i")
    "$neko" correct --threads 1 "$@" --shard "$i/$shards" --resume "$in" -o "$out.$i" &
    pids+=($!)
done
# Every shard waited for, so that none is left writing when this one fails (a rerun would
# find it still holding its file).
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
[ "$failed" = 0 ] || { echo "correct_sharded: a shard failed (its message is above); run again to resume" >&2; exit 1; }
"$neko" merge "${parts[@]}" -o "$out"
