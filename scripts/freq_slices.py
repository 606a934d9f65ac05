#!/usr/bin/env python3
"""Kept ASR picks by how common the words they bring in are, against the 1-best's words they
replace (docs/training.md, "Common words for rare ones"). Dev and held-out sets only: never
point it at a test file. Needs `pip install wordfreq` (word frequencies, Zipf scale).

  scripts/freq_slices.py GUARDED [GUARDED ...]
      GUARDED: `neko guard` / `neko correct` lines with `prediction`, `best` and `output`

For each answer whose words differ from its 1-best, the words it changes are found by a word
alignment; the rarest 1-best word it replaces and the rarest word it brings in are compared on
wordfreq's Zipf scale (a word seen once per billion words is 0, the commonest are about 7).
For each slice: answers, how many are better / worse than the 1-best against the reference
(word edits), and the net change in word errors (negative is good).
"""
import json
import sys

from wordfreq import zipf_frequency

# The words and edit distance of the other slice counts.
from pick_slices import edits, words


def changed(best, answer):
    """The 1-best's words an answer replaces or drops, and the words it brings in."""
    n, m = len(best), len(answer)
    d = [[i + j if i * j == 0 else 0 for j in range(m + 1)] for i in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + (best[i - 1] != answer[j - 1]))
    old, new, i, j = [], [], n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (best[i - 1] != answer[j - 1]):
            if best[i - 1] != answer[j - 1]:
                old.append(best[i - 1])
                new.append(answer[j - 1])
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            old.append(best[i - 1])
            i -= 1
        else:
            new.append(answer[j - 1])
            j -= 1
    return old, new


def picks(paths):
    """(rarest replaced word's Zipf, rarest new word's Zipf, change in word errors) per answer."""
    for path in paths:
        with open(path) as f:
            for r in map(json.loads, filter(str.strip, f)):
                if r.get("output") is None or r.get("prediction") is None:
                    continue
                answer, best, ref = (words(r[k]) for k in ("prediction", "best", "output"))
                if answer == best:
                    continue
                old, new = changed(best, answer)
                zipf = lambda ws: min((zipf_frequency(w, "en") for w in ws), default=None)
                yield zipf(old), zipf(new), edits(answer, ref) - edits(best, ref)


def row(name, rows):
    better = sum(g < 0 for *_, g in rows)
    worse = sum(g > 0 for *_, g in rows)
    print(f"{name:52s} {len(rows):4d} {better:4d} / {worse:3d} {sum(g for *_, g in rows):+5d}")


def main():
    rows = list(picks(sys.argv[1:]))
    print(f"{'slice':52s} {'kept':>4s} better/worse   net")
    row("all", rows)
    both = [r for r in rows if r[0] is not None and r[1] is not None]
    for lo, hi, name in [(-99, -1, "new word rarer by > 1"), (-1, -0.3, "rarer by 0.3-1"),
                         (-0.3, 0.3, "about as common"), (0.3, 1, "commoner by 0.3-1"),
                         (1, 99, "commoner by > 1")]:
        row(name, [r for r in both if lo <= r[1] - r[0] < hi])
    row("only words dropped or added", [r for r in rows if r[0] is None or r[1] is None])
    # Where the 1-best's words are real words, as a strong recogniser's mostly are.
    real = [r for r in both if r[0] >= 3]
    row("1-best's replaced words all Zipf >= 3", real)
    row("  ... and the new word commoner by > 0.3", [r for r in real if r[1] - r[0] > 0.3])
    row("  ... and not", [r for r in real if r[1] - r[0] <= 0.3])


if __name__ == "__main__":
    main()
