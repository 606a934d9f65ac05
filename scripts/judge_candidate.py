#!/usr/bin/env python3
"""Judge a trained candidate against the bounds its rule fixed beforehand, on dev sets only.

A candidate's rule (docs/training.md) names, per dev set, the score each seed's GPU answers must
reach (learned routing, `scripts/score_torch_preds.sh` without margins). This reads the reports
that script wrote, one per seed, and prints each bound with each seed's score and a verdict. It
refuses a report holding a HyPoradise test set: test answers are scored only after a candidate
passes, once, as its rule says.

  grep -v '"set": "hp-' RUN0/preds.jsonl >/tmp/p0.jsonl          # the dev sets' answers only
  grep -v '"set": "hp-' RUN1/preds.jsonl >/tmp/p1.jsonl
  scripts/score_torch_preds.sh /tmp/p0.jsonl /tmp/j0
  scripts/score_torch_preds.sh /tmp/p1.jsonl /tmp/j1
  python3 scripts/judge_candidate.py configs/train/neko-smol-pick.bounds.json \\
      /tmp/j0/task-moe.learned.report.json /tmp/j1/task-moe.learned.report.json

BOUNDS is a JSON object: set name (as in score_torch_preds.sh's file names, e.g.
`dev-asr-whisper`, `ood-asr-hp`) -> {"metric": "wer"|"cer"|"bleu"|"gleu", "max" or "min": N,
optionally "records": N}. With "records", the set's file must hold exactly N records, every one
scored and none failed (an error line is scored as its 1-best and could meet a bound by itself):
a partial or failed decode is no verdict. Exit code 0 when every seed meets every bound, 1 when
one does not, 2 on bad input.

>>> bound_met({"metric": "wer", "max": 9.2}, 9.2), bound_met({"metric": "bleu", "min": 84.18}, 84.1)
(True, False)
"""
import json
import math
import re
import sys


def fail(message):
    print(f"judge_candidate: {message}", file=sys.stderr)
    sys.exit(2)

# Where each metric's corrected score sits in a `neko eval --json` group, and its field.
FIELDS = {"wer": ("wer", "rate"), "cer": ("cer", "rate"), "bleu": ("bleu", "score"),
          "gleu": ("gleu", "score")}


def number(v):
    """A finite number (not a bool, not null, not NaN)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def bound_met(bound, score):
    """Scores are compared at the two decimals the tables print, as the rules were written."""
    score = round(score, 2)
    if "max" in bound:
        return score <= bound["max"]
    return score >= bound["min"]


def load(path):
    """A JSON file, or exit 2 naming it: bad input is no verdict."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")


def check_bounds(bounds, path):
    """Every bound names a known metric and exactly one numeric max or min.

    >>> check_bounds({"dev-ocr": {"metric": "cer", "max": 9.95}}, "b.json")
    """
    if not isinstance(bounds, dict) or not bounds:
        fail(f"{path}: not a JSON object of set -> bound (an empty one would pass anything)")
    for name, bound in bounds.items():
        limits = [k for k in ("max", "min") if k in (bound if isinstance(bound, dict) else {})]
        extra = set(bound) - {"metric", "max", "min", "records"} if isinstance(bound, dict) else {1}
        if not isinstance(bound, dict) or bound.get("metric") not in FIELDS or len(limits) != 1 \
                or not number(bound[limits[0]]) or extra \
                or not isinstance(bound.get("records", 1), int) or bound.get("records", 1) < 1:
            fail(f"{path}: {name}: {bound!r}: want {{\"metric\": one of {sorted(FIELDS)}, "
                 f"\"max\" or \"min\": a finite number, optionally \"records\": a count}}")


def scores(report_path):
    """{set name: (its file's report, whole-file group)} of one report; refuses test sets."""
    report = load(report_path)
    try:
        files = [(f["path"], f, f["groups"][0]) for f in report["runs"][0]["files"]]
    except (KeyError, IndexError, TypeError):
        fail(f"{report_path}: not a `neko eval --json` report")
    out = {}
    for path, file, group in files:
        name = re.sub(r"\.jsonl$", "", path).rsplit(".", 1)[-1]
        base = path.rsplit("/", 1)[-1]
        if name.startswith("hp-") or base.startswith(("test_", "hp-")) or "/test/" in path:
            fail(f"{report_path} holds the test set {path}: judge on dev sets only")
        if name in out:
            fail(f"{report_path}: two files of the set {name}: which one is judged?")
        out[name] = (file, group)
    return out


def check_count(name, bound, file, report_path):
    """The set's file holds the records its bound expects, each scored, none failed.

    >>> check_count("s", {"records": 2}, {"entries": 2, "unscored": [], "fallbacks": []}, "r")
    >>> check_count("s", {"records": 2}, {"entries": 1, "unscored": [], "fallbacks": []}, "r")
    Traceback (most recent call last):
    SystemExit: 2
    >>> check_count("s", {"records": 2}, {"entries": 2, "unscored": [], "fallbacks": [{}]}, "r")
    Traceback (most recent call last):
    SystemExit: 2
    """
    want = bound.get("records")
    if want is None:
        return
    entries, unscored, failed = file.get("entries"), file.get("unscored"), file.get("fallbacks")
    if entries != want or unscored or failed:
        fail(f"{report_path}: {name}: {entries} records ({len(unscored or [])} unscored, "
             f"{len(failed or [])} failed or without a prediction), where the rule expects "
             f"{want}, each corrected: a partial or failed decode is no verdict")


def main():
    if len(sys.argv) < 3:
        fail("usage: judge_candidate.py BOUNDS REPORT [REPORT ...]")
    bounds = load(sys.argv[1])
    check_bounds(bounds, sys.argv[1])
    seeds = [scores(p) for p in sys.argv[2:]]
    passed = True
    print(f"{'set':<18}{'bound':>14}" + "".join(f"{'seed ' + str(i):>10}" for i in range(len(seeds))))
    for name, bound in bounds.items():
        metric, field = FIELDS[bound["metric"]]
        limit = f"{bound['metric']} {'<=' if 'max' in bound else '>='} {bound.get('max', bound.get('min'))}"
        cells = []
        for s, report_path in zip(seeds, sys.argv[2:]):
            if name not in s:
                cells.append("missing")
                passed = False
                continue
            file, group = s[name]
            check_count(name, bound, file, report_path)
            try:
                score = group[metric]["corrected"][field]
            except (KeyError, TypeError):
                score = None
            if not number(score):
                fail(f"{name}: the report has no corrected {metric} (is it a `neko eval --json` "
                     "report of corrected files, and the set of that task?)")
            ok = bound_met(bound, score)
            passed &= ok
            cells.append(f"{score:.2f} {'ok' if ok else 'NO'}")
        print(f"{name:<18}{limit:>14}" + "".join(f"{c:>10}" for c in cells))
    print("verdict:", "passes" if passed else "fails")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
