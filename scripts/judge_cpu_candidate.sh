#!/usr/bin/env bash
# Decode and judge a candidate adapter trained on this CPU (scripts/train_cpu.sh) by the rule
# of docs/training.md, "neko-smol-pick on this CPU": every synth dev split and the four
# HyPoradise-style ASR dev sets (flite out-of-domain dev, Piper 1-3), decoded as a user runs
# neko correct with that adapter, then scripts/judge_candidate.py against
# configs/train/neko-smol-pick.cpu.bounds.json. Dev sets only; no test set is read.
#
#   scripts/judge_cpu_candidate.sh runs/neko-smol-pick-s0 /tmp/judge-s0
#   python3 scripts/judge_candidate.py configs/train/neko-smol-pick.cpu.bounds.json \
#       /tmp/judge-s0/report.json /tmp/judge-s1/report.json          # both seeds, as the rule asks
#
# Resumable: run it again after a stop and each set goes on where it stopped (`--resume`: an
# answer file made from another adapter is refused; after a LIMIT run, OCR/MT/GEC go on, the
# ASR shards are refused as made from another input: use another OUT). ASR answers
# are decoded with every guard check but the N-best pick off and scored (raw.SET.jsonl: the
# pick is in them, as in a default run), then `neko guard --score` with the candidate applies
# the default guard, which gives what a default run gives. Some 9,000 records:
# several hours here, on both cores (stop the training first, or it waits at its low priority).
# LIMIT=N: the first N records of each set only (a check of the plumbing, not a judgement).
set -euo pipefail
# RUN and OUT are the caller's paths; the rest is the checkout's.
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
run="$(absolute "$1")" out="$(absolute "$2")"
case "${NEKO:-}" in */*) NEKO="$(absolute "$NEKO")" ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
# The rule's settings, not a job's: NEKO_* twins of flags would change decoding or scoring
# unseen (NEKO_EVAL_NORMALIZER=none moves a WER by five points). NEKO_CACHE only finds files.
for v in $(compgen -e | grep '^NEKO_'); do
    [ "$v" = NEKO_CACHE ] || unset "$v"
done
# The step the rule judges: a run still training would be judged at some other step.
step=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["step"])' "$run/checkpoint.json")
[ "$step" = "${STEP:-700}" ] || { echo "judge: $run is at step $step, not ${STEP:-700}" >&2; exit 2; }
neko="${NEKO:-target/release/neko}"
model=(--model models/neko-smol-lora --adapter "$run/adapter.safetensors")
data=../shared/data/synth
R=docs/results
# Always through cargo (a no-op when fresh): a stale binary would give stale numbers.
[ -n "${NEKO:-}" ] || cargo build --release --quiet
mkdir -p "$out"
# The first $LIMIT records of a JSONL file or a JSON array, copied into $out; else the file.
limited() { # NAME FILE
    if [ -z "${LIMIT:-}" ]; then echo "$2"; return; fi
    python3 - "$2" "$out/limit.$1" "$LIMIT" <<'PY'
import json, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(src).read()
if text.lstrip().startswith("["):
    open(dst, "w").write(json.dumps(json.loads(text)[:n]))
else:
    open(dst, "w").write("".join(text.splitlines(True)[:n]))
PY
    echo "$out/limit.$1"
}
# Raw ASR answers: nothing sent back, every margin and the base model's opinion left to neko guard.
raw_args=(--task asr --guard-max-edit 100 --guard-margin -1000 --guard-agreed free
    --guard-dropped free --guard-spacing free --guard-base-lm off)
asr() { # NAME INPUT
    set -- "$1" "$(limited "$1" "$2")"
    scripts/correct_sharded.sh "$2" "$out/raw.$1.jsonl" "${raw_args[@]}" "${model[@]}"
    "$neko" guard --score --margin 4 "${model[@]}" --input "$2" "$out/raw.$1.jsonl" \
        >"$out/cand.$1.jsonl"
}
for s in asr-whisper asr-sphinx; do
    asr "dev-$s" "$data/$s.dev.jsonl"
done
python3 scripts/hp_style.py $R/ood-asr-2026-11-26/ood-asr.dev.jsonl.gz "$out/in.ood-asr-hp.json"
python3 scripts/hp_style.py $R/piper-asr-2026-11-27/ood-asr.piper.jsonl.gz "$out/in.piper.json"
python3 scripts/hp_style.py $R/piper-asr-2026-11-27/ood-asr.piper2.jsonl.gz "$out/in.piper2.json"
python3 scripts/hp_style.py $R/dropped-2026-11-27/ood-asr.piper3.jsonl.gz "$out/in.piper3.json"
for s in ood-asr-hp piper piper2 piper3; do
    asr "$s" "$out/in.$s.json"
done
for s in ocr mt gec; do
    "$neko" correct "${model[@]}" "$(limited "dev-$s" "$data/$s.dev.jsonl")" \
        --resume -o "$out/cand.dev-$s.jsonl"
done
sets=(dev-asr-whisper dev-asr-sphinx dev-ocr dev-mt dev-gec ood-asr-hp piper piper2 piper3)
files=()
for s in "${sets[@]}"; do files+=("$out/cand.$s.jsonl"); done
"$neko" eval --group-by none --json "${files[@]}" >"$out/report.json"
"$neko" eval --group-by none --paired-bs "${files[@]}"
python3 scripts/judge_candidate.py configs/train/neko-smol-pick.cpu.bounds.json "$out/report.json"
