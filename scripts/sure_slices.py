#!/usr/bin/env python3
"""Kept ASR picks by how sure the recogniser was of its 1-best (docs/training.md, "Where the
recogniser was sure"). Dev and held-out sets only: never point it at a test file.

  scripts/sure_slices.py SCORED GUARDED [GUARDED ...]
      SCORED: the synth-format records (JSONL with `scores`, the recogniser's per-token
              log-probabilities, and `output`, the reference)
      GUARDED: `neko guard` / `neko correct` lines of the same records (e.g. one per margin)

The records are cut into quarters by the recogniser's score of its 1-best minus its second
hypothesis's (a record with one hypothesis is surest); for each GUARDED file and quarter,
least sure first: the net change in word errors of the answers whose words differ from the
1-best (negative is good), and how many are better / worse than it. Words are lowercased
letters, digits and apostrophes.
"""
import json
import math
import re
import sys

# The word-level edit distance of the other slice counts.
from pick_slices import edits


def words(text):
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def gap(record):
    scores = record.get("scores") or []
    return scores[0] - scores[1] if len(scores) > 1 else math.inf


def main(scored, guarded):
    gaps = {r["id"]: gap(r) for r in lines(scored)}
    order = sorted(gaps.values())
    cuts = [order[len(order) * k // 4] for k in (1, 2, 3)]
    for path in guarded:
        quarters = [[0, 0, 0] for _ in range(4)]
        for r in lines(path):
            ref, pick, best = (words(r[k]) for k in ("output", "prediction", "best"))
            if pick == best:
                continue
            d = edits(ref, pick) - edits(ref, best)
            q = quarters[sum(gaps[r["id"]] >= c for c in cuts)]
            q[0], q[1], q[2] = q[0] + d, q[1] + (d < 0), q[2] + (d > 0)
        cells = "  ".join(f"{n:+d} ({b}/{w})" for n, b, w in quarters)
        print(f"{path}: {cells}  all {sum(q[0] for q in quarters):+d}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
