#!/usr/bin/env python3
"""A HyPoradise-style copy of a synth ASR split: a dev proxy for HyPoradise's conditions.

HyPoradise writes transcripts lower-case without punctuation and always gives 5 hypotheses
(short lists padded with duplicates); synth's Whisper N-best is cased and punctuated. This
writes a split the HyPoradise way (a JSON array of {id, input, output}): each hypothesis and
the reference lower-cased, punctuation dropped (apostrophes kept, dashes made spaces), the
N-best padded to 5 by repeating its hypotheses in order. Used to choose `neko correct --style`
on dev (docs/training.md, "The style"); never point it at a test file.

  python3 scripts/hp_style.py ../shared/data/synth/asr-whisper.dev.jsonl /tmp/hp-whisper-dev.json
  python3 scripts/hp_style.py docs/results/ood-asr-2026-11-26/ood-asr.dev.jsonl.gz /tmp/hp-ood.json

A source ending in .gz is read through gzip.
"""
import gzip
import json
import re
import sys


def hp(text):
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", "", text)
    return " ".join(text.split())


def main():
    src, dest = sys.argv[1], sys.argv[2]
    out = []
    for line in gzip.open(src, "rt") if src.endswith(".gz") else open(src):
        if not line.strip():
            continue
        r = json.loads(line)
        hyps = [hp(h) for h in r["input"]]
        n = len(hyps)
        while 0 < len(hyps) < 5:
            hyps.append(hyps[len(hyps) % n])
        out.append({"id": r["id"], "input": hyps[:5], "output": hp(r["output"])})
    with open(dest, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
