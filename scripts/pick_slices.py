#!/usr/bin/env python3
"""What kind of ASR answers a guarded run kept, and whether each kind helped: how the N-best pick
and its length check were found and checked on dev and held-out data (docs/training.md,
"Picked, not written"). Dev and held-out sets only: never point it at a test file.

  scripts/pick_slices.py INPUT GUARDED      # INPUT: records (JSONL or a JSON array)
                                            # GUARDED: `neko guard` / `neko correct` lines

Each answer whose words differ from its 1-best is put in one slice: a hypothesis longer than
the 1-best, as long, or shorter; a new combination of the hypotheses' words; or one with a
word no hypothesis has. Words are compared by letters and digits, lowercased (as the guard
compares them). For each slice: answers, how many are better / worse than the 1-best against
the reference (word edits), and the net change in word errors (negative is good).
"""
import json
import re
import sys


def words(text):
    keys = (re.sub(r"[^a-z0-9]", "", w) for w in text.lower().split())
    return [k for k in keys if k]


def edits(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def records(path):
    if path.endswith(".json"):
        return {r.get("id", i): r for i, r in enumerate(json.load(open(path)))}
    return {r["id"]: r for r in map(json.loads, filter(str.strip, open(path)))}


def slice_of(answer, best, hyps):
    if answer in hyps:
        return "hypothesis, " + ("longer" if len(answer) > len(best)
                                 else "shorter" if len(answer) < len(best) else "as long")
    vocab = {w for h in hyps for w in h}
    return "new word" if any(w not in vocab for w in answer) else "new combination"


def main():
    inputs = records(sys.argv[1])
    slices = {}
    for line in filter(str.strip, open(sys.argv[2])):
        g = json.loads(line)
        r = inputs[g["id"]]
        hyps = [words(h) for h in (r["input"] if isinstance(r["input"], list) else [r["input"]])]
        best, answer, ref = hyps[0], words(g["prediction"]), words(r["output"])
        if answer == best:
            continue
        change = edits(answer, ref) - edits(best, ref)
        s = slices.setdefault(slice_of(answer, best, hyps), [0, 0, 0, 0])
        s[0] += 1
        s[1] += change < 0
        s[2] += change > 0
        s[3] += change
    print(f"{'answer':<28}{'answers':>8}{'better':>8}{'worse':>8}{'net':>6}")
    for name, (n, better, worse, net) in sorted(slices.items()):
        print(f"{name:<28}{n:>8}{better:>8}{worse:>8}{net:>+6}")


if __name__ == "__main__":
    main()
