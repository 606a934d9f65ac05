#!/usr/bin/env python3
"""Pack `neko train --export-examples` output into the train.npz that scripts/train_torch.py reads
(uint16 ids: the vocabulary has 49152 entries), all of it or a mix for continuing a trained
adapter: N examples drawn from those at index >= NEW_FROM (the data added to the config) and M
replayed from those before it (so the other tasks are not forgotten). Deterministic given --seed.

  python3 scripts/pack_examples.py EXAMPLES.jsonl OUT.npz
  python3 scripts/pack_examples.py EXAMPLES.jsonl OUT.npz --new-from 25940 --new 1600 --replay 1600
"""
import argparse
import json
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("examples")
    ap.add_argument("out")
    ap.add_argument("--new-from", type=int, default=None, help="index of the first new example")
    ap.add_argument("--new", type=int, default=0, help="new examples drawn (0: all of them)")
    ap.add_argument("--replay", type=int, default=0, help="earlier examples drawn")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.examples)]
    if args.new_from is not None:
        rng = np.random.default_rng(args.seed)
        new = np.arange(args.new_from, len(rows))
        new = rng.choice(new, size=args.new, replace=False) if args.new else new
        old = rng.choice(args.new_from, size=args.replay, replace=False)
        rows = [rows[i] for i in sorted(np.concatenate([new, old]).tolist())]
    ids, off, ans, exp = [], [0], [], []
    for r in rows:
        ids += r["ids"]
        off.append(len(ids))
        ans.append(r["answer_start"])
        exp.append(r["expert"])
    np.savez_compressed(args.out, ids=np.array(ids, dtype=np.uint16),
                        off=np.array(off, dtype=np.int64), ans=np.array(ans, dtype=np.int32),
                        exp=np.array(exp, dtype=np.int8))
    print(f"{args.out}: {len(ans)} examples, {len(ids)} tokens", file=sys.stderr)


if __name__ == "__main__":
    main()
