#!/usr/bin/env python3
"""The guard's margin (neko correct's `"margin"`) for answers decoded elsewhere, with the
PyTorch port of neko's model (scripts/train_torch.py) on the CPU.

`neko correct` scores an answer that passed the other guard checks:
log p(answer + end | prompt) - log p(baseline + end | prompt), in nats, where the baseline is
the answer with its word edits undone for ASR (src/guard.rs `undo_word_edits`, ported below
with rapidfuzz's alignment, which neko's reproduces) and the 1-best for other tasks
(`margin_baseline`; src/correct.rs `score_answers`). The answers that scripts/train_torch.py decoded on a GPU were
never scored, so this computes the same number for them; `scripts/score_torch_preds.sh` with
`MARGINS=FILE` then lets `neko guard` apply the margin. On 14 dev records this agrees with
`neko correct` to 1e-3 nats.

  python3 scripts/margins_torch.py --base models/smollm2-135m \\
      --adapter configs/neko-smol/adapter.safetensors --prompts .gpu/data/prompts \\
      --scored /tmp/s --variant task-moe.learned --sets dev-asr-whisper,hp-test_wsj_score \\
      --out margins.jsonl

--scored holds `VARIANT.SET.jsonl` (score_torch_preds.sh's guarded lines: the answers the edit
guard kept) and `VARIANT.SET.raw.jsonl` (the answers as the model wrote them, which are scored;
the guarded ASR lines are in the hypotheses' style); --prompts holds `SET.jsonl` (`neko correct --dump-prompts` lines). Writes one
`{"set", "id", "margin"}` line per scored answer; reruns skip what --out already has.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_torch as tt  # noqa: E402


def word_key(w):
    return "".join(c for c in w if c.isalnum()).lower()


def dress_like(word, like):
    """`word`'s letters with `like`'s punctuation around them and its capital first letter."""
    core = word.strip("".join({c for c in word if not c.isalnum()}))
    lead = like[: len(like) - len(like.lstrip("".join({c for c in like if not c.isalnum()})))]
    rest = like[len(lead):]
    tail = rest[len(rest.rstrip("".join({c for c in rest if not c.isalnum()}))):]
    if rest[:1].isupper() and core:
        core = core[0].upper() + core[1:]
    return lead + core + tail


def undo_word_edits(answer, best):
    """src/guard.rs `undo_word_edits`: the answer's words where they match the 1-best's (by
    letters and digits, lowercased), the 1-best's words where the answer changed them."""
    from rapidfuzz.distance import Levenshtein

    a, b = answer.split(), best.split()
    out = []
    for tag, i1, i2, j1, j2 in Levenshtein.opcodes([word_key(w) for w in b],
                                                    [word_key(w) for w in a]):
        if tag == "equal":
            out += a[j1:j2]
        elif tag == "replace":
            out += [dress_like(w, x) for w, x in zip(b[i1:i2], a[j1:j2])]
        elif tag == "delete":
            out += b[i1:i2]
    return " ".join(out)


def margin_baseline(task, answer, best):
    """src/guard.rs `margin_baseline`: ASR's word edits undone, else the 1-best."""
    return undo_word_edits(answer, best) if task == "asr" else best.strip()


def self_check():
    """The cases of src/guard.rs's unit test."""
    best = "you know they will not take paper that is shiny"
    formatted = "You know, they will not take paper that is shiny."
    assert undo_word_edits(formatted, best) == formatted
    got = undo_word_edits("You know, they won't take the paper that's shiny!", best)
    assert got == "You know, they will not take paper that is shiny!", got
    assert undo_word_edits("Shine.", "shiny") == "Shiny."
    assert undo_word_edits("", "a b") == "a b" and undo_word_edits("a b", "") == ""


def written_answers(scored, key):
    """The answers as the model wrote them, by id: score_torch_preds.sh's `KEY.raw.jsonl`.
    The guarded `KEY.jsonl` holds ASR answers in the hypotheses' style (`neko guard --style
    follow`), and neko correct's margin scores what the model wrote, not the restyled text."""
    path = os.path.join(scored, key + ".raw.jsonl")
    if not os.path.exists(path):
        return {}
    return {json.dumps(r["id"]): r["prediction"] for r in map(json.loads, open(path))}


@torch.no_grad()
def logprob(net, prompt, answer_ids):
    """Sum of log p over the answer's tokens and the end token, after the prompt."""
    target = answer_ids + [tt.EOS]
    hidden, _, _ = net(torch.tensor([prompt + target]))
    lp = net.logits(hidden[0, len(prompt) - 1 : -1]).float().log_softmax(-1)
    return lp[torch.arange(len(target)), torch.tensor(target)].sum().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", help="a converted Hugging Face folder (neko convert)")
    ap.add_argument("--gguf", help="the base GGUF instead of --base")
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--tokenizer", help="default: PROMPTS/../tokenizer.json")
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--scored", required=True)
    ap.add_argument("--variant", default="task-moe.learned")
    ap.add_argument("--sets", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    self_check()
    torch.set_num_threads(args.threads)
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(
        args.tokenizer or os.path.join(os.path.dirname(args.prompts.rstrip("/")), "tokenizer.json")
    )
    base = tt.load_gguf(args.gguf) if args.gguf else tt.load_safetensors(args.base)
    net = tt.Net(base, 4, 16, 16.0, 2, 0, torch.device("cpu"))
    net.load_adapter({k: v.astype(np.float32) for k, v in load_file(args.adapter).items()})
    net.eval()
    done = set()
    if os.path.exists(args.out):
        done = {(r["set"], r["id"]) for r in map(json.loads, open(args.out))}
    out = open(args.out, "a")
    for set_name in args.sets.split(","):
        prompts = {}
        for line in open(os.path.join(args.prompts, set_name + ".jsonl")):
            p = json.loads(line)
            prompts[p["id"]] = p["ids"]
        n = 0
        written = written_answers(args.scored, f"{args.variant}.{set_name}")
        for line in open(os.path.join(args.scored, f"{args.variant}.{set_name}.jsonl")):
            r = json.loads(line)
            answer = written.get(json.dumps(r["id"]), r["prediction"])
            if "guard" in r or answer == r["best"] or (set_name, r["id"]) in done:
                continue
            base = margin_baseline(r.get("task", "asr"), answer, r["best"])
            if base == answer:
                continue  # ASR formatting only: neko correct does not score it
            ids = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
            prompt = prompts[r["id"]]
            m = logprob(net, prompt, ids(answer)) - logprob(net, prompt, ids(base))
            out.write(json.dumps({"set": set_name, "id": r["id"], "margin": round(m, 4)}) + "\n")
            out.flush()
            n += 1
        tt.log(f"{set_name}: {n} answers scored")


if __name__ == "__main__":
    main()
