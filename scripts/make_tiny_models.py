#!/usr/bin/env python3
"""Build the tiny reference models used by neko's Rust tests.

Writes two Hugging Face model folders:

  tests/fixtures/tiny-mixtral/   MixtralForCausalLM, random, sharded safetensors
  tests/fixtures/tiny-llama/     LlamaForCausalLM, random, tied embeddings, one safetensors

each with the same byte-level BPE tokenizer (vocab 512) trained here on the
*training* splits of the shared data, plus a `reference.json` holding logits,
greedy continuations and (Mixtral) router choices computed with PyTorch in
float32 eager attention. See tests/fixtures/README.md for the schema.

Usage (see scripts/make_tiny_models.sh for the pinned environment):

  python scripts/make_tiny_models.py [--data /work/shared/data] [--out tests/fixtures]

Never reads anything under hyporadise/test.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import safetensors
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    PreTrainedTokenizerFast,
)

# ----------------------------------------------------------------------------
# constants

VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0, 1, 2, 3
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3

N_GREEDY = 20
MIN_MARGIN = 1e-2  # every greedy top1-top2 logit gap (and router top-k logit gap) must exceed this (brief asked > 1e-3; 10x stricter)
SIG_DIGITS = 6
MAX_SEED_TRIES = 200

TASK_EXPERTS = {"asr": 0, "st": 1, "mt": 1, "ocr": 2, "gec": 3}

HYPO_HEADER = (
    "Below is the best-hypotheses transcribed from speech recognition system. "
    "Please try to revise it using the words which are only included into "
    "other-hypothesis, and write the response for the true transcription."
)

# prompts[0]: short HyPoradise-like N-best prompt (full logits stored)
# prompts[1]: short prompt (full logits stored, router_top2 for Mixtral)
# prompts[2]: medium prompt (greedy only)
PROMPTS = [
    "Below is the best-hypotheses ...\n\n### Best-hypothesis:\nthe cat sat on the mat\n\n"
    "### Other-hypothesis:\nthe cat sat on a mat. \n\n### Response:\n",
    "His mind re-creates the entire world.",
    "### Instruction:\nCorrect the OCR output.\n\n### Input:\n"
    "J will sweep it all away.\n\n### Response:\n",
]
PROMPT_TOKEN_RANGE = (8, 80)  # inclusive, counted with the BOS

ROUNDTRIP_STRINGS = [
    "the cat sat on the mat",
    "His mind re-creates the entire world.",
    "  leading spaces, trailing spaces  ",
    "### Response:\n",
    "Café, naïve, coöperate — “quotes” and ‘single’… €5 ½ ü ß",
    "日本語のテキスト と 中文 和 한국어 🐱🚀",
    "tabs\tand\r\nnewlines\n\n\nend",
    "weird punctuation: !?@#$%^&*()_+-=[]{};':\",./<>\\|`~",
    "<s> looks special but </s> and <pad> are special tokens",
]


# ----------------------------------------------------------------------------
# tokenizer


def hyporadise_prompt(hyps: list[str]) -> str:
    best, others = hyps[0], hyps[1:]
    return (
        f"{HYPO_HEADER}\n\n### Best-hypothesis:\n{best}\n\n"
        f"### Other-hypothesis:\n" + "\n".join(others) + "\n\n### Response:\n"
    )


def corpus(data_dir: str) -> list[str]:
    texts: list[str] = []
    synth = sorted(glob.glob(os.path.join(data_dir, "synth", "*.train.jsonl")))
    if not synth:
        raise SystemExit(f"no synth/*.train.jsonl under {data_dir}")
    for path in synth:
        assert "/test" not in path
        with open(path, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                texts.append(rec["output"])
                texts.extend(rec["input"])
    atis = os.path.join(data_dir, "hyporadise", "train", "train_atis.json")
    with open(atis, encoding="utf-8") as f:
        recs = json.load(f)
    for i, rec in enumerate(recs):
        texts.append(rec["output"])
        texts.extend(rec["input"])
        # prompt scaffolding as ordinary text, so "### Response:" etc. get merges
        if i < 2000:
            texts.append(hyporadise_prompt(rec["input"]) + rec["output"])
    return texts


def train_tokenizer(texts: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = None  # no template: nothing (no BOS/EOS) is ever added automatically
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def check_tokenizer(tok: Tokenizer) -> None:
    for s in ROUNDTRIP_STRINGS + PROMPTS:
        ids = tok.encode(s).ids
        if "<s>" not in s:
            assert BOS_ID not in ids and EOS_ID not in ids, (s, ids)
        back = tok.decode(ids, skip_special_tokens=False)
        assert back == s, (s, back)
    # the tokenizer must not add BOS/EOS by itself
    enc = tok.encode("hello world", add_special_tokens=True)
    assert BOS_ID not in enc.ids and EOS_ID not in enc.ids, enc.ids


def save_tokenizer(tok: Tokenizer, folder: str) -> None:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        add_bos_token=False,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
    fast.save_pretrained(folder)
    # Make sure tokenizer.json is exactly the trained tokenizer (transformers may
    # rewrite it, e.g. attach a post-processor); keep transformers' files otherwise.
    tok.save(os.path.join(folder, "tokenizer.json"))
    # Spell out that nothing is added automatically (transformers v5 omits these keys).
    cfg_path = os.path.join(folder, "tokenizer_config.json")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["add_bos_token"] = False
    cfg["add_eos_token"] = False
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


# ----------------------------------------------------------------------------
# models


def mixtral_config() -> MixtralConfig:
    cfg = MixtralConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=512,
        rope_theta=10000.0,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        sliding_window=None,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        initializer_range=0.2,
        router_jitter_noise=0.0,
        hidden_act="silu",
    )
    cfg.task_experts = dict(TASK_EXPERTS)
    return cfg


def llama_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=100000.0,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        initializer_range=0.2,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )


def build(kind: str, seed: int):
    torch.manual_seed(seed)
    if kind == "mixtral":
        model = MixtralForCausalLM(mixtral_config())
    else:
        model = LlamaForCausalLM(llama_config())
    model = model.to(torch.float32).eval()
    model.config._attn_implementation = "eager"
    return model


def rope_theta_of(cfg) -> float:
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict) and "rope_theta" in rp:
        return float(rp["rope_theta"])
    return float(cfg.rope_theta)


# ----------------------------------------------------------------------------
# reference computations


@torch.no_grad()
def full_logits(model, ids: list[int]) -> torch.Tensor:
    out = model(torch.tensor([ids]), use_cache=False)
    return out.logits[0].float()  # (seq, vocab)


@torch.no_grad()
def greedy(model, ids: list[int], n: int):
    """Manual argmax loop, full recompute every step, EOS ignored."""
    seq = list(ids)
    new, margins = [], []
    for _ in range(n):
        logits = full_logits(model, seq)[-1]
        top = torch.topk(logits, 2)
        tok = int(top.indices[0])
        margins.append(float(top.values[0] - top.values[1]))
        new.append(tok)
        seq.append(tok)
    return new, margins


@torch.no_grad()
def greedy_generate(model, ids: list[int], n: int) -> list[int]:
    """Cross-check the manual loop with model.generate (KV cache path)."""
    out = model.generate(
        torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        do_sample=False,
        max_new_tokens=n,
        min_new_tokens=n,
        eos_token_id=None,
        pad_token_id=PAD_ID,
    )
    return out[0, len(ids):].tolist()


@torch.no_grad()
def router_info(model, ids: list[int], layer: int):
    out = model(torch.tensor([ids]), use_cache=False, output_router_logits=True)
    rl = out.router_logits[layer]
    rl = rl.reshape(-1, rl.shape[-1]).float()  # (seq, experts)
    probs = torch.softmax(rl, dim=-1)
    k = model.config.num_experts_per_tok
    vals, idx = torch.topk(probs, k + 1 if k + 1 <= probs.shape[-1] else k, dim=-1)
    # gaps between consecutive ranks down to rank k+1 (order and membership of top-k)
    gaps = (vals[:, :-1] - vals[:, 1:]).min(dim=-1).values
    logit_gaps = []
    for t in range(rl.shape[0]):
        s = torch.sort(rl[t], descending=True).values
        logit_gaps.append(float((s[: k] - s[1 : k + 1]).min()))
    return idx[:, :k].tolist(), rl, float(gaps.min()), min(logit_gaps)


def rnd(x: float) -> float:
    return float(f"{x:.{SIG_DIGITS}g}")


def rnd_matrix(t: torch.Tensor) -> list[list[float]]:
    return [[rnd(v) for v in row] for row in t.tolist()]


def evaluate(model, kind: str, prompt_ids: list[list[int]]):
    greedy_out = []
    for ids in prompt_ids:
        toks, margins = greedy(model, ids, N_GREEDY)
        greedy_out.append((toks, margins))
    router = None
    if kind == "mixtral":
        router = router_info(model, prompt_ids[1], 0)
    return greedy_out, router


def acceptable(kind, greedy_out, router) -> tuple[bool, str]:
    mins = [min(m) for _, m in greedy_out]
    if min(mins) <= MIN_MARGIN:
        return False, f"greedy margin {min(mins):.2e}"
    # non-degenerate: the continuation should not be one token repeated
    for toks, _ in greedy_out:
        if len(set(toks)) < 3:
            return False, f"degenerate greedy {toks}"
    if router is not None:
        _, _, pgap, lgap = router
        if lgap <= MIN_MARGIN:
            return False, f"router logit gap {lgap:.2e}"
    return True, "ok"


# ----------------------------------------------------------------------------
# main


def folder_size(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


def make_model(kind: str, out_dir: str, tok: Tokenizer, tok_dir: str, prompt_ids, seed0: int):
    name = {"mixtral": "tiny-mixtral", "llama": "tiny-llama"}[kind]
    folder = os.path.join(out_dir, name)

    seed, tried = seed0, []
    while True:
        model = build(kind, seed)
        greedy_out, router = evaluate(model, kind, prompt_ids)
        ok, why = acceptable(kind, greedy_out, router)
        if ok:
            break
        tried.append((seed, why))
        print(f"[{name}] seed {seed} rejected: {why}", file=sys.stderr)
        seed += 1
        if seed - seed0 > MAX_SEED_TRIES:
            raise SystemExit(f"no acceptable seed for {name}")
    print(f"[{name}] seed {seed} ok ({len(tried)} rejected)", file=sys.stderr)

    # cross-check manual greedy with generate() (KV-cache path)
    for ids, (toks, _) in zip(prompt_ids, greedy_out):
        gen = greedy_generate(model, ids, N_GREEDY)
        assert gen == toks, (name, gen, toks)

    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    if kind == "mixtral":
        model.save_pretrained(folder, safe_serialization=True, max_shard_size="200KB")
    else:
        model.save_pretrained(folder, safe_serialization=True)
    for f in os.listdir(tok_dir):
        shutil.copy(os.path.join(tok_dir, f), os.path.join(folder, f))

    logits = [full_logits(model, ids) for ids in prompt_ids[:2]]

    ref = {
        "model": name,
        "architecture": type(model).__name__,
        "seed": seed,
        "rejected_seeds": [s for s, _ in tried],
        "dtype": "float32",
        "attn_implementation": "eager",
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        "rope_theta": rope_theta_of(model.config),
        "significant_digits": SIG_DIGITS,
        "prompts": PROMPTS,
        "input_ids": prompt_ids,
        "prompt_tokens": [[tok.id_to_token(i) for i in ids] for ids in prompt_ids],
        "logits": [
            {"prompt": p, "positions": list(range(len(prompt_ids[p]))), "values": rnd_matrix(logits[p])}
            for p in range(2)
        ],
        "greedy": [
            {
                "prompt": p,
                "method": "manual argmax loop, full recompute each step, EOS ignored; "
                "checked equal to model.generate(do_sample=False, min_new_tokens=max_new_tokens=20)",
                "new_tokens": toks,
                "margins": [rnd(m) for m in margins],
                "min_margin": rnd(min(margins)),
                "text": tok.decode(toks, skip_special_tokens=False),
            }
            for p, (toks, margins) in enumerate(greedy_out)
        ],
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
    }
    if kind == "mixtral":
        top2, rl, pgap, lgap = router
        ref["router_top2"] = {
            "prompt": 1,
            "layer": 0,
            "experts": top2,
            "order": "descending router probability (softmax of gate logits)",
            "router_logits": rnd_matrix(rl),
            "min_logit_gap": rnd(lgap),
        }
        ref["task_experts"] = TASK_EXPERTS

    with open(os.path.join(folder, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")

    verify(folder, kind, ref, logits)
    return folder, ref


def verify(folder: str, kind: str, ref: dict, logits) -> None:
    """Reload the saved folder from disk and check everything is reproduced."""
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    assert type(model).__name__ == ref["architecture"]
    assert abs(rope_theta_of(model.config) - ref["rope_theta"]) < 1e-6
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    check_tokenizer(tok)
    for p, ids in enumerate(ref["input_ids"]):
        assert [BOS_ID] + tok.encode(ref["prompts"][p]).ids == ids
    for p in range(2):
        again = full_logits(model, ref["input_ids"][p])
        assert torch.allclose(again, logits[p], atol=1e-5, rtol=0), float((again - logits[p]).abs().max())
        stored = torch.tensor(ref["logits"][p]["values"])
        err = float((stored - again).abs().max())
        assert err < 1e-4, err
    for p, g in enumerate(ref["greedy"]):
        toks, _ = greedy(model, ref["input_ids"][p], N_GREEDY)
        assert toks == g["new_tokens"], (p, toks, g["new_tokens"])
    if kind == "mixtral":
        top2, _, _, _ = router_info(model, ref["input_ids"][1], 0)
        assert top2 == ref["router_top2"]["experts"]
        cfg = json.load(open(os.path.join(folder, "config.json")))
        assert cfg["task_experts"] == TASK_EXPERTS
        assert os.path.exists(os.path.join(folder, "model.safetensors.index.json"))
        assert len(glob.glob(os.path.join(folder, "model-*.safetensors"))) >= 2
    else:
        assert os.path.exists(os.path.join(folder, "model.safetensors"))
    # fast tokenizer through transformers too: must not add BOS
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert hf_tok(ref["prompts"][1])["input_ids"] == ref["input_ids"][1][1:], hf_tok(ref["prompts"][1])
    print(f"[{ref['model']}] reload verified", file=sys.stderr)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"))
    ap.add_argument("--mixtral-seed", type=int, default=1235)
    ap.add_argument("--llama-seed", type=int, default=4325)
    args = ap.parse_args()
    out_dir = os.path.abspath(args.out)

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    texts = corpus(args.data)
    print(f"tokenizer corpus: {len(texts)} strings", file=sys.stderr)
    tok = train_tokenizer(texts)
    tok2 = train_tokenizer(texts)
    assert tok.to_str() == tok2.to_str(), "tokenizer training is not deterministic"
    check_tokenizer(tok)

    prompt_ids = [[BOS_ID] + tok.encode(p).ids for p in PROMPTS]
    for p, ids in zip(PROMPTS, prompt_ids):
        assert PROMPT_TOKEN_RANGE[0] <= len(ids) <= PROMPT_TOKEN_RANGE[1], (len(ids), p)
    print("prompt lengths (with BOS):", [len(i) for i in prompt_ids], file=sys.stderr)

    with tempfile.TemporaryDirectory() as tok_dir:
        save_tokenizer(tok, tok_dir)
        os.makedirs(out_dir, exist_ok=True)
        results = [
            make_model("mixtral", out_dir, tok, tok_dir, prompt_ids, args.mixtral_seed),
            make_model("llama", out_dir, tok, tok_dir, prompt_ids, args.llama_seed),
        ]

    for folder, ref in results:
        print(
            f"{folder}: {folder_size(folder)} bytes, reference.json "
            f"{os.path.getsize(os.path.join(folder, 'reference.json'))} bytes, seed {ref['seed']}, "
            f"min greedy margin {min(g['min_margin'] for g in ref['greedy'])}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
