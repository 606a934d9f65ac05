#!/usr/bin/env python3
"""Scores ASR picks by a plain language model (a GGUF, run by llama-cpp-python), to ask
whether it would be a better second opinion than neko-smol's base (docs/training.md, "A
stronger plain model as the second opinion").

For every record whose default-guarded line (`neko guard --score --margin 4 ...`) kept a pick
that changes words, or sent it back as `fallback:base-lm`, it writes the pick (taken from the
raw answers), its 1-best, neko's `base_lm`, the model's log p(pick) - log p(1-best) (each text
alone, `<bos>` text `<eos>`), and how many more word errors than the 1-best the pick makes
(`pick_slices.py`'s rough normaliser, for counting only).

  pip install llama-cpp-python==0.3.36
  python3 scripts/lm_veto.py --model gemma-3-270m-q4_k_m.gguf --input hp-piper.json \\
      --guarded piper.default.jsonl --raw piper.raw.jsonl > piper.veto.jsonl

Dev sets only: it reads references.
"""
import argparse
import json

import numpy as np

# The same rough normaliser and edit distance as the other slice counts.
from pick_slices import edits, words


def log_prob(model, text):
    tokens = [model.token_bos()] + model.tokenize(text.encode(), add_bos=False, special=False)
    tokens.append(model.token_eos())
    model.reset()
    model.eval(tokens)
    logits = np.array(model.scores[:len(tokens) - 1], dtype=np.float64)
    logits -= logits.max(1, keepdims=True)
    logits -= np.log(np.exp(logits).sum(1, keepdims=True))
    return float(sum(logits[i, tokens[i + 1]] for i in range(len(tokens) - 1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a GGUF language model")
    ap.add_argument("--input", required=True, help="the HyPoradise-style records (references)")
    ap.add_argument("--guarded", required=True, help="answers re-guarded by the default")
    ap.add_argument("--raw", required=True, help="the raw answers they were guarded from")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from llama_cpp import Llama
    model = Llama(model_path=args.model, logits_all=True, n_ctx=512, verbose=False,
                  n_threads=args.threads)
    refs = {r["id"]: r["output"] for r in json.load(open(args.input))}
    raw = {o["id"]: o["prediction"] for o in map(json.loads, open(args.raw))}
    for line in open(args.guarded):
        o = json.loads(line)
        if o.get("guard") not in (None, "fallback:base-lm") or o.get("base_lm") is None:
            continue
        pick = raw[o["id"]] if o.get("guard") else o["prediction"]
        best, ref = words(o["best"]), words(refs[o["id"]])
        if words(pick) == best:
            continue
        print(json.dumps({
            "id": o["id"], "pick": pick, "best": o["best"], "base_lm": o["base_lm"],
            "lm": round(log_prob(model, pick) - log_prob(model, o["best"]), 4),
            "extra_errors": edits(words(pick), ref) - edits(best, ref),
        }))


if __name__ == "__main__":
    main()
