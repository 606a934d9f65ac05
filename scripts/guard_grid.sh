#!/usr/bin/env bash
# WER of one set of answers under each style and agreement setting of the guard: how the
# defaults of `--style` and `--guard-agreed` were chosen on dev (docs/training.md, "Agreed
# words"). The answers come from a run that kept and scored everything:
#
#   neko correct --task asr --guard-max-edit 100 --guard-margin -1000 --guard-dropped free \
#       --guard-spacing free --guard-base-lm off IN -o RAW
#   scripts/guard_grid.sh IN RAW [OUT]
#
# Then each setting is `neko guard` (default edit limit, margin and checks) + `neko eval`.
# DECODED=free for answers of `--constrain none` (ASR's margin 1.5 instead of the constrained
# 4). GUARD_ARGS go to each `neko guard` (`--score --model M ...` for the base model's check of
# the corrector M; without `--score` lines are kept without that check). Dev sets only: never
# point it at a test file to choose anything.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
neko="${NEKO:-$here/../target/release/neko}"
input="$1" raw="$2" out="${3:-$(mktemp -d)}"
mkdir -p "$out"
files=()
for style in model follow; do
    for agreed in free keep; do
        f="$out/$style-$agreed.jsonl"
        # shellcheck disable=SC2086 # GUARD_ARGS is a list of flags
        "$neko" guard --style "$style" --agreed "$agreed" --decoded "${DECODED:-constrained}" \
            ${GUARD_ARGS:-} --input "$input" "$raw" >"$f"
        files+=("$f")
    done
done
"$neko" eval "${files[@]}"
