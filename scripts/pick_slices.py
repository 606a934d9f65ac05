#!/usr/bin/env python3
"""What kind of ASR answers a guarded run kept, and whether each kind helped: how the N-best pick
and its length check were found and checked on dev and held-out data (docs/training.md,
"Picked, not written"). Dev and held-out sets only: never point it at a test file.

  scripts/pick_slices.py INPUT GUARDED      # INPUT: records (JSONL or a JSON array)
                                            # GUARDED: `neko guard` / `neko correct` lines
  scripts/pick_slices.py --features INPUT GUARDED   # slices a rule could see without a reference

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


def features(answer, best, hyps, margin):
    """What a guard could see of a changed answer without a reference (twelfth session)."""
    others = [h for h in hyps[1:] if h != best]
    spread = sum(edits(h, best) for h in others) / max(1, len(others)) / max(1, len(best))
    closer = sum(edits(h, answer) < edits(h, best) for h in hyps)
    farther = sum(edits(h, best) < edits(h, answer) for h in hyps)
    return {
        "hypotheses' spread": "< 0.1" if spread < 0.1 else "< 0.2" if spread < 0.2 else ">= 0.2",
        "1-best words": "< 10" if len(best) < 10 else "< 20" if len(best) < 20 else ">= 20",
        "distinct hypotheses": str(len({tuple(h) for h in hyps})),
        "rank of the pick": str(hyps.index(answer) + 1) if answer in hyps else "none",
        "votes pick - 1-best": str(max(-2, min(2, closer - farther))),
        "margin": "none" if margin is None else "< 3" if margin < 3 else "< 6" if margin < 6
        else ">= 6",
    }


def main():
    by_features = sys.argv[1] == "--features"
    args = sys.argv[2:] if by_features else sys.argv[1:]
    inputs = records(args[0])
    slices = {}
    for line in filter(str.strip, open(args[1])):
        g = json.loads(line)
        r = inputs[g["id"]]
        hyps = [words(h) for h in (r["input"] if isinstance(r["input"], list) else [r["input"]])]
        best, answer, ref = hyps[0], words(g["prediction"]), words(r["output"])
        if answer == best:
            continue
        change = edits(answer, ref) - edits(best, ref)
        if by_features:
            names = [f"{k}: {v}" for k, v in features(answer, best, hyps, g.get("margin")).items()]
        else:
            names = [slice_of(answer, best, hyps)]
        for name in names:
            s = slices.setdefault(name, [0, 0, 0, 0])
            s[0] += 1
            s[1] += change < 0
            s[2] += change > 0
            s[3] += change
    print(f"{'answer':<32}{'answers':>8}{'better':>8}{'worse':>8}{'net':>6}")
    for name, (n, better, worse, net) in sorted(slices.items()):
        print(f"{name:<32}{n:>8}{better:>8}{worse:>8}{net:>+6}")


if __name__ == "__main__":
    main()
