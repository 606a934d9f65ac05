#!/usr/bin/env python3
"""The guard's margin (neko correct's `"margin"`) for answers decoded elsewhere, with the
PyTorch port of neko's model (scripts/train_torch.py) on the CPU.

`neko correct` scores an answer that passed the other guard checks and differs from the 1-best:
log p(answer + end token | prompt) - log p(1-best + end token | prompt), in nats
(src/correct.rs, `score_answers`). The answers that scripts/train_torch.py decoded on a GPU were
never scored, so this computes the same number for them; `scripts/score_torch_preds.sh` with
`MARGINS=FILE` then lets `neko guard` apply the margin. On 14 dev records this agrees with
`neko correct` to 1e-3 nats.

  python3 scripts/margins_torch.py --base models/smollm2-135m \\
      --adapter configs/neko-smol/adapter.safetensors --prompts .gpu/data/prompts \\
      --scored /tmp/s --variant task-moe.learned --sets dev-asr-whisper,hp-test_wsj_score \\
      --out margins.jsonl

--scored holds `VARIANT.SET.jsonl` (score_torch_preds.sh's guarded lines: the answers the edit
guard kept); --prompts holds `SET.jsonl` (`neko correct --dump-prompts` lines). Writes one
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
        for line in open(os.path.join(args.scored, f"{args.variant}.{set_name}.jsonl")):
            r = json.loads(line)
            if "guard" in r or r["prediction"] == r["best"] or (set_name, r["id"]) in done:
                continue
            ids = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
            prompt = prompts[r["id"]]
            m = logprob(net, prompt, ids(r["prediction"])) - logprob(net, prompt, ids(r["best"]))
            out.write(json.dumps({"set": set_name, "id": r["id"], "margin": round(m, 4)}) + "\n")
            out.flush()
            n += 1
        tt.log(f"{set_name}: {n} answers scored")


if __name__ == "__main__":
    main()
