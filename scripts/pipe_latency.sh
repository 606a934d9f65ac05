#!/usr/bin/env bash
# When do `neko correct`'s lines come out in a pipeline? Feeds the first N records of DATA to
# `neko correct --task asr -` one every PACE seconds, as a recogniser upstream would, and prints
# each output line's arrival time (seconds since the first record was sent) before the line.
#
#   scripts/pipe_latency.sh > stamped.txt                 # NEKO=target/release/neko N=40 PACE=0.5
#   NEKO=/tmp/neko-old scripts/pipe_latency.sh > old.txt  # another build, for comparison
#   awk 'NR==1{print "first", $1} END{print "last", $1, NR}' stamped.txt
#
# Env: NEKO (default target/release/neko), DATA (default the synth asr-whisper dev split),
# N (40), PACE (0.5), and any flags for neko after `--` on the command line (default: neko-smol,
# one thread).
set -euo pipefail
NEKO="${NEKO:-target/release/neko}"
DATA="${DATA:-../shared/data/synth/asr-whisper.dev.jsonl}"
N="${N:-40}"
PACE="${PACE:-0.5}"
[ "${1:-}" = "--" ] && shift
start="$(date +%s.%N)"
head -n "$N" "$DATA" \
    | while IFS= read -r line; do printf '%s\n' "$line"; sleep "$PACE"; done \
    | RAYON_NUM_THREADS=1 "$NEKO" correct --task asr --threads 1 "$@" - 2>/dev/null \
    | while IFS= read -r out; do
        printf '%s %s\n' "$(awk -v now="$(date +%s.%N)" -v t0="$start" 'BEGIN { printf "%.1f", now - t0 }')" "$out"
    done
