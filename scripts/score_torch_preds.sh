#!/usr/bin/env bash
# Score the answers that scripts/train_torch.py decoded on a GPU with neko's own tools: each
# answer becomes a `neko correct`-style line (1-best when the token limit cut it, as neko's
# guard does), `neko guard` applies the over-correction guard, `neko eval` scores it.
#
#   scripts/score_torch_preds.sh RUN/preds.jsonl OUT [MAX_EDIT]   # default: each task's guard
#   scripts/score_torch_preds.sh docs/results/neko-smol-2026-11-26/neko-smol.preds.jsonl.gz /tmp/s
#   MARGINS=docs/results/neko-smol-2026-11-26/margins.jsonl.gz scripts/score_torch_preds.sh ...
#
# STYLE=follow: ASR answers in their N-best's style before the guard (neko guard --style).
# AGREED=free: no agreement check (neko guard --agreed free), as the guard was before it.
# NBEST=pick|free: neko guard --nbest (ASR answers must be one of their hypotheses, or not).
# MARGINS: `{"set", "id", "margin"}` lines (scripts/margins_torch.py) added to the answers, so
# that neko guard applies each task's margin as neko correct does; without it, the edit limit
# and the other checks only.
# SCORE=1: neko guard --score: answers that need a margin and have none in MARGINS (after a
# change to what the guard counts as a word edit) are scored with the shipped model here.
#
# Sets: `dev-*` (synth dev splits), `hp-*` (HyPoradise test sets) and `ood-asr-hp` (the
# out-of-domain ASR dev split). Writes OUT/VARIANT.ROUTING.SET.jsonl (guarded predictions) and
# OUT/VARIANT.ROUTING.report.json (neko eval --json over that variant's sets); prints the
# tables. Needs ../shared/data (the inputs and references) and python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
preds="$1"
out="$2"
max_edit="${3:-}"
# The PyTorch port decodes freely: ASR's margin for free answers (1.5 nats), not the
# constrained default's 4.
guard_args=(--decoded free)
[ -n "$max_edit" ] && guard_args+=(--max-edit "$max_edit")
[ -n "${STYLE:-}" ] && guard_args+=(--style "$STYLE")
[ -n "${AGREED:-}" ] && guard_args+=(--agreed "$AGREED")
[ -n "${NBEST:-}" ] && guard_args+=(--nbest "$NBEST")
[ -n "${SCORE:-}" ] && guard_args+=(--score)
neko="${NEKO:-target/release/neko}"
# Always through cargo (a no-op when fresh): a stale binary would give stale numbers.
[ -n "${NEKO:-}" ] || cargo build --release --quiet
mkdir -p "$out"
# The out-of-domain ASR dev split in HyPoradise style (set `ood-asr-hp`), as ood_dev.sh makes it.
ood="$out/hp-ood.json"
python3 scripts/hp_style.py docs/results/ood-asr-2026-11-26/ood-asr.dev.jsonl.gz "$ood"
python3 - "$preds" "$out" "${MARGINS:-}" "$ood" <<'PY'
import gzip, json, os, sys
preds, out, margins_path, ood = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def lines(path):
    return gzip.open(path, "rt") if path.endswith(".gz") else open(path)

margins = {}
if margins_path:
    margins = {(m["set"], m["id"]): m["margin"] for m in map(json.loads, lines(margins_path))}

def source(set_name):
    if set_name == "ood-asr-hp":
        return ood
    if set_name.startswith("dev-"):
        return f"../shared/data/synth/{set_name[4:]}.dev.jsonl"
    return f"../shared/data/hyporadise/test/{set_name[3:]}.json"

def records(path):
    if path.endswith(".json"):
        # neko names an array element by its `id`, else by its position.
        return {r.get("id", i): r for i, r in enumerate(json.load(open(path)))}
    rs = [json.loads(l) for l in open(path) if l.strip()]
    return {r["id"]: r for r in rs}

inputs, files = {}, {}
for line in lines(preds):
    p = json.loads(line)
    s = p["set"]
    if s not in inputs:
        inputs[s] = records(source(s))
    r = inputs[s][p["id"]]
    hyps = r["input"] if isinstance(r["input"], list) else [r["input"]]
    best = hyps[0] if hyps else ""
    rec = {"id": p["id"], "task": r.get("task", "asr"), "prediction": p["text"],
           "best": best, "output": r["output"]}
    if p["finish"] == "length":
        rec["prediction"], rec["guard"] = best, "fallback:length"
    elif p["variant"] == "task-moe" and p["routing"] == "learned" and (s, p["id"]) in margins:
        rec["margin"] = margins[(s, p["id"])]
    key = f'{p["variant"]}.{p["routing"]}.{s}'
    if key not in files:
        files[key] = open(os.path.join(out, key + ".raw.jsonl"), "w")
    files[key].write(json.dumps(rec) + "\n")
for f in files.values():
    f.close()
PY
for raw in "$out"/*.raw.jsonl; do
    key="$(basename "$raw" .raw.jsonl)"
    set_name="${key##*.}"
    case "$set_name" in
        dev-*) input="../shared/data/synth/${set_name#dev-}.dev.jsonl" ;;
        hp-*) input="../shared/data/hyporadise/test/${set_name#hp-}.json" ;;
        ood-asr-hp) input="$ood" ;;
    esac
    "$neko" guard --input "$input" "${guard_args[@]}" "$raw" >"$out/$key.jsonl"
done
for group in $(ls "$out"/*.raw.jsonl | xargs -n1 basename | cut -d. -f1,2 | sort -u); do
    files=$(ls "$out/$group".*.jsonl | grep -v '\.raw\.jsonl$')
    "$neko" eval --json $files >"$out/$group.report.json"
    echo "== $group (guard ${max_edit:-per task}${MARGINS:+, margins from $MARGINS}${STYLE:+, style $STYLE})"
    "$neko" eval $files
done
