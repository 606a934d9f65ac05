#!/usr/bin/env python3
"""neko train's objective, ported to PyTorch for a lent GPU.

neko trains on candle (`neko train`); its CUDA build needs a Rust toolchain and the crates
registry, which the GPU machines lent to this project lack. This script trains the same
low-rank-expert MoE (neko's `neko_lora_mixtral`: a frozen SmolLM2 FFN shared by E LoRA experts,
a linear top-k gate) with the same losses, on the examples neko renders
(`neko train --export-examples`), and writes the adapter under neko's tensor names, so
`neko correct --model models/neko-smol-lora --adapter ADAPTER` runs it on the CPU.

What matches neko (src/model/transformer.rs, src/train/mod.rs):
- the MoE block: gate logits (a bf16 matmul under autocast, where neko computes them in f32),
  softmax in f32, top-k by probability (a forced task expert gets
  +2 so it is always chosen), weights = the chosen probabilities renormalised; expert e's FFN is
  (W2 + s·B2A2)(silu((W1 + s·B1A1)x) * (W3 + s·B3A3)x), s = alpha / rank;
- routing losses: forced task expert ("task"), router cross-entropy toward the task's expert
  over all real tokens, averaged over layers ("aux"), both ("both"), Switch load balance;
- loss on the answer tokens only, summed and divided by the step's answer tokens; AdamW,
  linear warm-up then cosine decay to min_lr_ratio, gradient clipping by global norm.
Differences: bf16 autocast on the GPU (and on the CPU with --bf16); steps of many examples of
mixed tasks (the forced expert is chosen per row, so one forward pass can hold several tasks).

Also decodes (greedy, neko's stop rules: EOS or a newline after the answer's first
non-space character, the per-record token limit of `neko correct --dump-prompts`) so variants can
be compared on the dev splits without the CPU.

  python3 scripts/train_torch.py --gguf BASE.gguf --data DIR --out OUT [--budget-s 480]
  python3 scripts/train_torch.py --base models/smollm2-135m --parity ADAPTER --data DIR  # CPU
  # Continue a trained adapter on a new mix (CPU or GPU), no decoding, a checkpoint every 25 steps:
  python3 scripts/train_torch.py --base models/smollm2-135m --data DIR --out OUT \
      --variants task-moe --init-adapter configs/neko-smol/adapter.safetensors \
      --steps 200 --batch-size 16 --lr 2e-4 --warmup 10 --save-every 25 --no-decode
  # A long run on a CPU: 8 rows per forward pass, a resumable state every 5 steps; after a
  # stop, the same command with --resume goes on from the last state (same batches, same
  # optimizer moments):
  python3 scripts/train_torch.py --base models/smollm2-135m --data DIR --out OUT \
      --variants task-moe --steps 700 --batch-size 64 --lr 5e-4 --micro-batch 8 \
      --recompute-moe --save-every 5 --no-decode --budget-s 1e9 [--resume]
"""
import argparse
import gzip
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.checkpoint

H, LAYERS, HEADS, KV_HEADS, HEAD_DIM, INTER = 576, 30, 9, 3, 64, 1536
VOCAB, EPS, THETA, EOS = 49152, 1e-5, 100000.0, 2


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- base weights


def unpermute(w, n_head):
    """Undo llama.cpp's q/k row permutation (convert_hf_to_gguf.py's `permute`)."""
    rows = w.shape[0]
    return (
        w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def load_gguf(path):
    """SmolLM2's GGUF as Hugging Face Llama tensors (f32 numpy)."""
    import gguf
    from gguf.quants import dequantize

    r = gguf.GGUFReader(path)
    names = {
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    out = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        w = w.reshape(shape)
        if t.name == "token_embd.weight":
            out["model.embed_tokens.weight"] = w
        elif t.name == "output_norm.weight":
            out["model.norm.weight"] = w
        elif t.name.startswith("blk."):
            _, layer, kind, _ = t.name.split(".")
            if kind == "attn_q":
                w = unpermute(w, HEADS)
            elif kind == "attn_k":
                w = unpermute(w, KV_HEADS)
            out[f"model.layers.{layer}.{names[kind]}.weight"] = w
    return out


def load_safetensors(folder):
    from safetensors.numpy import load_file

    return load_file(os.path.join(folder, "model.safetensors"))


def random_base(seed=0):
    """Random weights of SmolLM2-135M's shapes: for timing runs without the GGUF (--random-base)."""
    rng = np.random.default_rng(seed)
    att = {"q": HEADS * HEAD_DIM, "k": KV_HEADS * HEAD_DIM, "v": KV_HEADS * HEAD_DIM}
    out = {"model.embed_tokens.weight": (VOCAB, H), "model.norm.weight": (H,)}
    for layer in range(LAYERS):
        p = f"model.layers.{layer}."
        out[p + "input_layernorm.weight"] = (H,)
        out[p + "post_attention_layernorm.weight"] = (H,)
        for n, rows in att.items():
            out[p + f"self_attn.{n}_proj.weight"] = (rows, H)
        out[p + "self_attn.o_proj.weight"] = (H, HEADS * HEAD_DIM)
        out[p + "mlp.gate_proj.weight"] = (INTER, H)
        out[p + "mlp.up_proj.weight"] = (INTER, H)
        out[p + "mlp.down_proj.weight"] = (H, INTER)
    return {
        n: rng.standard_normal(shape, dtype=np.float32) * 0.02 if len(shape) == 2
        else np.ones(shape, np.float32)
        for n, shape in out.items()
    }


# ---------------------------------------------------------------- model


def rms_norm(x, w):
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)
    return (xf * w.float()).to(x.dtype)


def rope_tables(positions, device):
    inv = 1.0 / (THETA ** (torch.arange(0, HEAD_DIM, 2, device=device).float() / HEAD_DIM))
    f = positions.float()[..., None] * inv  # (..., dim/2)
    emb = torch.cat([f, f], -1)
    return emb.cos(), emb.sin()


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


def moe_ffn(x, gate, a1, b1, a3, b3, a2, b2, w1, w3, w2, forced, experts, top_k, s):
    """One layer's MoE FFN (a function of tensors alone, so that --compile makes one graph for
    every layer). Returns (out, gate logits, chosen ids)."""
    dt = x.dtype
    logits = (x @ gate.to(dt).t()).float()
    probs = logits.softmax(-1)
    sel = probs
    if forced is not None:
        sel = probs + 2.0 * F.one_hot(forced, experts).float()
    top = sel.topk(top_k, -1).indices
    w = probs.gather(-1, top)
    w = w / w.sum(-1, keepdim=True)
    route = torch.zeros_like(probs).scatter(-1, top, w).to(dt)  # (N, E)
    a1, b1, a3, b3, a2, b2 = [p.to(dt) for p in (a1, b1, a3, b3, a2, b2)]
    g = x @ w1.to(dt).t()
    u = x @ w3.to(dt).t()
    dg = torch.einsum("ner,eir->nei", torch.einsum("nh,erh->ner", x, a1), b1) * s
    du = torch.einsum("ner,eir->nei", torch.einsum("nh,erh->ner", x, a3), b3) * s
    h = F.silu(g[:, None, :] + dg) * (u[:, None, :] + du)  # (N, E, I)
    # W2 is shared, so Σ_e w_e W2 h_e = W2 Σ_e w_e h_e: one down projection per token.
    mixed = torch.einsum("ne,nei->ni", route, h)
    out = mixed @ w2.to(dt).t()
    low = torch.einsum("nei,eri->ner", h, a2) * route[:, :, None]
    out = out + torch.einsum("ner,ehr->nh", low, b2) * s
    return out, logits, top


MOE_FFN = moe_ffn  # main() swaps in torch.compile(moe_ffn) with --compile
RECOMPUTE_MOE = False  # --recompute-moe
# --bf16: autocast to bf16 on the CPU as on the GPU (always there). On this AVX-512-BF16 CPU a
# step is 2.5x faster, and the loss moves in the third digit (1.4715 against 1.4752 on 16 rows).
AUTOCAST_CPU = False


class Net(torch.nn.Module):
    """SmolLM2 with neko's low-rank-expert MoE FFN. Base tensors frozen; LoRA and gates train."""

    def __init__(self, base, experts, rank, alpha, top_k, seed, device):
        super().__init__()
        self.E, self.rank, self.k, self.scale = experts, rank, top_k, alpha / rank
        t = lambda n: torch.from_numpy(base[n]).to(device)  # noqa: E731
        self.embed = t("model.embed_tokens.weight")
        self.norm = t("model.norm.weight")
        self.base = []
        for layer in range(LAYERS):
            p = f"model.layers.{layer}."
            self.base.append(
                {
                    k: t(p + n)
                    for k, n in [
                        ("ln1", "input_layernorm.weight"),
                        ("ln2", "post_attention_layernorm.weight"),
                        ("q", "self_attn.q_proj.weight"),
                        ("k", "self_attn.k_proj.weight"),
                        ("v", "self_attn.v_proj.weight"),
                        ("o", "self_attn.o_proj.weight"),
                        ("w1", "mlp.gate_proj.weight"),
                        ("w3", "mlp.up_proj.weight"),
                        ("w2", "mlp.down_proj.weight"),
                    ]
                }
            )
        g = torch.Generator().manual_seed(seed)

        def lora_a(in_dim):
            bound = 1.0 / math.sqrt(in_dim)
            return (torch.rand(experts, rank, in_dim, generator=g) * 2 - 1) * bound

        self.gate = torch.nn.ParameterList()
        self.lora = torch.nn.ParameterList()  # per layer: A1, B1, A3, B3, A2, B2
        for _ in range(LAYERS):
            self.gate.append(torch.nn.Parameter(torch.zeros(experts, H)))
            for in_dim, out_dim in [(H, INTER), (H, INTER), (INTER, H)]:
                self.lora.append(torch.nn.Parameter(lora_a(in_dim)))
                self.lora.append(torch.nn.Parameter(torch.zeros(experts, out_dim, rank)))
        self.to(device)

    # -- adapter in neko's names

    def adapter(self):
        out = {}
        for layer in range(LAYERS):
            p = f"model.layers.{layer}.block_sparse_moe"
            out[f"{p}.gate.weight"] = self.gate[layer]
            for j, w in enumerate(["w1", "w3", "w2"]):
                a, b = self.lora[layer * 6 + 2 * j], self.lora[layer * 6 + 2 * j + 1]
                for e in range(self.E):
                    out[f"{p}.experts.{e}.{w}.lora_A.weight"] = a[e]
                    out[f"{p}.experts.{e}.{w}.lora_B.weight"] = b[e]
        return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}

    def load_adapter(self, tensors):
        with torch.no_grad():
            for layer in range(LAYERS):
                p = f"model.layers.{layer}.block_sparse_moe"
                self.gate[layer].copy_(torch.from_numpy(tensors[f"{p}.gate.weight"]))
                for j, w in enumerate(["w1", "w3", "w2"]):
                    for e in range(self.E):
                        a = tensors[f"{p}.experts.{e}.{w}.lora_A.weight"]
                        b = tensors[f"{p}.experts.{e}.{w}.lora_B.weight"]
                        self.lora[layer * 6 + 2 * j][e].copy_(torch.from_numpy(a))
                        self.lora[layer * 6 + 2 * j + 1][e].copy_(torch.from_numpy(b))

    # -- forward

    def moe(self, layer, x, forced):
        """x (N, H); forced (N,) expert ids or None. Returns (out, gate logits, chosen ids)."""
        b = self.base[layer]
        args = (x, self.gate[layer], *self.lora[layer * 6 : layer * 6 + 6],
                b["w1"], b["w3"], b["w2"], forced, self.E, self.k, self.scale)
        if RECOMPUTE_MOE and torch.is_grad_enabled():
            # Keep only the layer's input for the backward pass and compute the experts' (N, E,
            # I) activations again there: far less memory, one more forward of the FFN.
            return torch.utils.checkpoint.checkpoint(MOE_FFN, *args, use_reentrant=False)
        return MOE_FFN(*args)

    def attention(self, layer, x, cos, sin, mask, cache=None, at=None):
        b = self.base[layer]
        bsz, q_len, _ = x.shape
        dt = x.dtype
        q = (x @ b["q"].to(dt).t()).view(bsz, q_len, HEADS, HEAD_DIM).transpose(1, 2)
        k = (x @ b["k"].to(dt).t()).view(bsz, q_len, KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = (x @ b["v"].to(dt).t()).view(bsz, q_len, KV_HEADS, HEAD_DIM).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if cache is not None:
            kc, vc = cache
            kc[:, :, at : at + q_len] = k
            vc[:, :, at : at + q_len] = v
            k, v = kc[:, :, : at + q_len], vc[:, :, : at + q_len]
        rep = HEADS // KV_HEADS
        k = k.repeat_interleave(rep, 1)
        v = v.repeat_interleave(rep, 1)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(bsz, q_len, H)
        return y @ b["o"].to(dt).t()

    def forward(self, ids, forced_rows=None, mask=None, positions=None, caches=None, at=None):
        """ids (B, T). forced_rows (B,) expert per row or None. Returns hidden, gate logits and
        chosen experts per layer."""
        bsz, q_len = ids.shape
        x = self.embed[ids]
        if positions is None:
            positions = torch.arange(q_len, device=ids.device).expand(bsz, q_len)
        cos, sin = rope_tables(positions, ids.device)
        cos, sin = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)
        forced = None
        if forced_rows is not None:
            forced = forced_rows[:, None].expand(bsz, q_len).reshape(-1)
        gates, chosen = [], []
        for layer in range(LAYERS):
            b = self.base[layer]
            cache = caches[layer] if caches is not None else None
            x = x + self.attention(layer, rms_norm(x, b["ln1"]), cos, sin, mask, cache, at)
            y, g, top = self.moe(layer, rms_norm(x, b["ln2"]).reshape(-1, H), forced)
            x = x + y.view(bsz, q_len, H)
            gates.append(g)
            chosen.append(top)
        return rms_norm(x, self.norm), gates, chosen

    def logits(self, hidden):
        return hidden @ self.embed.to(hidden.dtype).t()


# ---------------------------------------------------------------- data and training


def load_examples(path):
    d = np.load(path)
    # Each d[...] reads its array from the archive again: take each once (16 s -> 0.05 s here).
    ids, off = d["ids"].astype(np.int64), d["off"]
    ans, exp = d["ans"].tolist(), d["exp"].tolist()
    return [(ids[off[i] : off[i + 1]], ans[i], exp[i]) for i in range(len(ans))]


def make_batches(examples, batch_size, seed, epoch):
    """Shuffled each epoch; neighbours of similar length batched together (less padding)."""
    rng = np.random.default_rng(seed * 1000003 + epoch)
    order = rng.permutation(len(examples))
    chunk = batch_size * 16
    batches = []
    for c in range(0, len(order), chunk):
        part = sorted(order[c : c + chunk], key=lambda i: len(examples[i][0]))
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def step_loss(net, examples, batch, cfg, device, of=None):
    """The step's loss over `batch`, or this micro-batch's share of it: `of` is the whole step's
    (answer tokens, real tokens), so micro-batches' losses add up to the whole batch's (the LM
    and router terms exactly; the load balance, not linear in the batch, approximately)."""
    rows = [examples[i] for i in batch]
    width = max(len(r[0]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    real = torch.zeros(len(rows), width, dtype=torch.bool)
    target = torch.full((len(rows), width), -100, dtype=torch.long)
    for b, (x, ans, _) in enumerate(rows):
        ids[b, : len(x)] = torch.from_numpy(x)
        real[b, : len(x)] = True
        # Position i-1 predicts token i, for the answer tokens.
        target[b, ans - 1 : len(x) - 1] = torch.from_numpy(x[ans:])
    ids, real, target = ids.to(device), real.to(device), target.to(device)
    experts = torch.tensor([r[2] for r in rows], device=device)
    forced = experts if cfg["routing"] in ("task", "both") else None
    bf16 = device.type == "cuda" or AUTOCAST_CPU
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        hidden, gates, chosen = net(ids, forced)
        pos = target.view(-1) != -100
        logits = net.logits(hidden.reshape(-1, H)[pos]).float()
    n_answer = int(pos.sum())
    keep = real.view(-1)
    all_answer, all_real = of or (n_answer, int(keep.sum()))
    lm = F.cross_entropy(logits, target.view(-1)[pos], reduction="sum") / max(all_answer, 1)
    share = int(keep.sum()) / max(all_real, 1)
    tok_expert = experts[:, None].expand_as(real).reshape(-1)[keep]
    aux = torch.zeros((), device=device)
    bal = torch.zeros((), device=device)
    for g, top in zip(gates, chosen):
        g = g[keep]
        if cfg["routing"] in ("aux", "both") and cfg["aux_weight"] > 0:
            aux = aux + F.cross_entropy(g, tok_expert) / LAYERS
        if cfg["balance_weight"] > 0 and net.E > 1:
            p = g.softmax(-1).mean(0)
            f = torch.bincount(top[keep].reshape(-1), minlength=net.E).float()
            f = f / f.sum()
            bal = bal + net.E * (f * p).sum() / LAYERS
    aux, bal = aux * share, bal * share
    total = lm + cfg["aux_weight"] * aux + cfg["balance_weight"] * bal
    return total, lm.item(), aux.item(), bal.item(), int(keep.sum()), n_answer


def accumulate(net, examples, batch, cfg, device):
    """Forward and backward over the step's batch in micro-batches of cfg["micro_batch"] rows
    (0: all at once), so a CPU holds the activations of a few rows, not of 64."""
    size = cfg.get("micro_batch") or len(batch)
    of = (sum(len(examples[i][0]) - examples[i][1] for i in batch),
          sum(len(examples[i][0]) for i in batch))
    sums = [0.0, 0.0, 0.0, 0.0, 0, 0]
    for c in range(0, len(batch), size):
        total, *parts = step_loss(net, examples, batch[c : c + size], cfg, device, of)
        total.backward()
        sums = [a + b for a, b in zip(sums, [total.item(), *parts])]
    return sums


def lr_at(cfg, step):
    if step <= cfg["warmup"]:
        return cfg["lr"] * step / max(cfg["warmup"], 1)
    span = max(cfg["steps"] - cfg["warmup"], 1)
    prog = min((step - cfg["warmup"]) / span, 1.0)
    lo = cfg["lr"] * cfg["min_lr_ratio"]
    return lo + 0.5 * (cfg["lr"] - lo) * (1 + math.cos(math.pi * prog))


def train(net, examples, cfg, device, logf, deadline, checkpoint=None, resume=None):
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    step, epoch, started = 0, 0, time.time()
    if resume:
        opt.load_state_dict(resume["opt"])
        step = resume["step"]
        started -= resume["seconds"]
        log(f"{cfg['name']}: resumed at step {step}")
    seen = 0  # steps the batches so far stand for: a resumed run skips to its step
    while step < cfg["steps"]:
        for batch in make_batches(examples, cfg["batch_size"], cfg["seed"], epoch):
            seen += 1
            if seen <= step:
                continue
            if step >= cfg["steps"]:
                break
            if time.time() > deadline:
                log(f"{cfg['name']}: out of time at step {step}")
                if checkpoint and cfg["save_every"]:
                    checkpoint(step, opt, time.time() - started)
                return step
            step += 1
            for grp in opt.param_groups:
                grp["lr"] = lr_at(cfg, step)
            opt.zero_grad(set_to_none=True)
            total, lm, aux, bal, toks, ans = accumulate(net, examples, batch, cfg, device)
            norm = torch.nn.utils.clip_grad_norm_(params, cfg["max_grad_norm"])
            opt.step()
            rec = {
                "variant": cfg["name"], "step": step, "epoch": epoch, "loss": total,
                "lm_loss": lm, "aux_loss": aux, "balance_loss": bal, "lr": lr_at(cfg, step),
                "grad_norm": float(norm), "tokens": toks, "answer_tokens": ans,
                "seconds": round(time.time() - started, 2),
            }
            logf.write(json.dumps(rec) + "\n")
            if step % 25 == 0 or step == 1:
                logf.flush()
                log(f"{cfg['name']} step {step}/{cfg['steps']} lm {lm:.4f} aux {aux:.4f} "
                    f"bal {bal:.4f} lr {rec['lr']:.2e} {rec['seconds']:.0f}s")
            if checkpoint and cfg["save_every"] and step % cfg["save_every"] == 0:
                logf.flush()
                os.fsync(logf.fileno())
                checkpoint(step, opt, rec["seconds"])
        epoch += 1
    return step


# ---------------------------------------------------------------- greedy decoding


_NEWLINE_TOKENS = {}


def newline_tokens(tok):
    """Ids whose text holds a newline: only after one can the answer have reached neko's stop."""
    if id(tok) not in _NEWLINE_TOKENS:
        _NEWLINE_TOKENS[id(tok)] = {
            i for i in range(VOCAB) if "\n" in tok.decode([i], skip_special_tokens=True)
        }
    return _NEWLINE_TOKENS[id(tok)]


@torch.no_grad()
def decode(net, tok, prompts, forced_expert, device, rows=384, dtype=torch.float32):
    """Greedy answers of neko's prompts: [(id, text, finish)] in input order."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]["ids"]))
    out = [None] * len(prompts)
    nl = newline_tokens(tok)
    for start in range(0, len(order), rows):
        part = order[start : start + rows]
        bsz = len(part)
        lens = [len(prompts[i]["ids"]) for i in part]
        width = max(lens)
        limit = [prompts[i]["max_new_tokens"] for i in part]
        total = width + max(limit)
        ids = torch.zeros(bsz, width, dtype=torch.long)
        valid = torch.zeros(bsz, total, dtype=torch.bool)
        for b, i in enumerate(part):
            ids[b, width - lens[b] :] = torch.tensor(prompts[i]["ids"])
            valid[b, width - lens[b] : width] = True
        ids, valid = ids.to(device), valid.to(device)
        caches = [
            (torch.zeros(bsz, KV_HEADS, total, HEAD_DIM, device=device, dtype=dtype),
             torch.zeros(bsz, KV_HEADS, total, HEAD_DIM, device=device, dtype=dtype))
            for _ in range(LAYERS)
        ]
        pos = (valid[:, :width].long().cumsum(-1) - 1).clamp(min=0)
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        # Pad rows attend to themselves only (an all-masked row would give NaN, and NaN times a
        # zero attention weight still poisons the real rows).
        eye = torch.eye(width, dtype=torch.bool, device=device)
        mask = ((causal[None] & valid[:, None, :width]) | eye)[:, None]
        forced = None
        if forced_expert is not None:
            forced = torch.full((bsz,), forced_expert, device=device)
        hidden, _, _ = net(ids, forced, mask, pos, caches, 0)
        nxt = net.logits(hidden[:, -1]).float().argmax(-1)
        gen = [[] for _ in range(bsz)]
        done = [None] * bsz
        cur = pos[:, -1]
        for t in range(max(limit)):
            toks = nxt.tolist()
            for b in range(bsz):
                if done[b]:
                    continue
                if toks[b] == EOS:
                    done[b] = "eos"
                    continue
                gen[b].append(toks[b])
                if toks[b] in nl and "\n" in tok.decode(gen[b], skip_special_tokens=True).lstrip():
                    done[b] = "stop"
                elif len(gen[b]) >= limit[b]:
                    done[b] = "length"
            if all(done):
                break
            at = width + t
            valid[:, at] = True
            cur = cur + 1
            m = valid[:, None, None, : at + 1]
            hidden, _, _ = net(nxt[:, None], forced, m, cur[:, None], caches, at)
            nxt = net.logits(hidden[:, -1]).float().argmax(-1)
        for b, i in enumerate(part):
            text = tok.decode(gen[b], skip_special_tokens=True).lstrip()
            text = text.split("\n")[0].strip()
            out[i] = (prompts[i]["id"], text, done[b] or "length")
    return out


def read_prompts(folder):
    sets = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".jsonl.gz") or name.endswith(".jsonl"):
            op = gzip.open if name.endswith(".gz") else open
            with op(os.path.join(folder, name), "rt") as f:
                sets[name.split(".jsonl")[0]] = [json.loads(x) for x in f]
    return sets


def set_expert(name):
    for key, e in [("asr", 0), ("hp-", 0), ("mt", 1), ("ocr", 2), ("gec", 3)]:
        if key in name:
            return e
    raise ValueError(name)


# ---------------------------------------------------------------- main


VARIANTS = {
    # name: experts, rank, top_k, routing, aux_weight, balance_weight
    "task-moe": (4, 16, 2, "both", 0.1, 0.0),
    "plain-moe": (4, 16, 2, "learned", 0.0, 0.01),
    "dense-lora": (1, 32, 1, "learned", 0.0, 0.0),
}


def open_log(path, state_path):
    """The per-step log; a resumed run keeps the records up to its state's step, so the log
    reads as one run's."""
    if not state_path or not os.path.exists(state_path) or not os.path.exists(path):
        return open(path, "w")
    step = torch.load(state_path, weights_only=False)["step"]

    def before(line):  # a line cut off by the stop is dropped with the steps after the state
        try:
            return json.loads(line)["step"] <= step
        except (ValueError, KeyError):
            return False

    with open(path) as f:
        kept = [line for line in f if before(line)]
    logf = open(path, "w")
    logf.writelines(kept)
    return logf


def synced(path):
    """Forces a written file to disk. This project's machines stop between sessions without
    a clean shutdown: once the run kept the state of step 135 but its log only to step 115,
    the lines between (written and flushed, not synced) lost."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def save_adapter(net, path, parts=1):
    from safetensors.torch import save_file

    tensors = {k: v.half() for k, v in net.adapter().items()}
    names = sorted(tensors)
    for p in range(parts):
        chunk = {k: tensors[k] for k in names[p::parts]}
        save_file(chunk, f"{path}.{p}.safetensors" if parts > 1 else path,
                  metadata={"source": "scripts/train_torch.py", "dtype": "f16"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf")
    ap.add_argument("--base", help="a converted Hugging Face folder instead of --gguf")
    ap.add_argument("--data", required=True, help="train.npz, tokenizer.json, prompts/")
    ap.add_argument("--out", default="out")
    ap.add_argument("--budget-s", type=float, default=480)
    ap.add_argument("--variants", default="task-moe,plain-moe,dense-lora")
    ap.add_argument("--steps", type=int, default=0, help="0: fit the budget")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--max-records", type=int, default=0, help="per prompt set (smoke tests)")
    ap.add_argument("--decode-share", type=float, default=0.3)
    ap.add_argument("--parity", help="decode with this neko adapter and stop (CPU check)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-adapter", help="start task-moe from this neko adapter (f16 or f32)")
    ap.add_argument("--warmup", type=int, default=0, help="warm-up steps (0: steps / 20)")
    ap.add_argument("--save-every", type=int, default=0,
                    help="write OUT/adapter.safetensors (and its step) every N steps")
    ap.add_argument("--no-decode", action="store_true", help="train only; decode with neko")
    ap.add_argument("--random-base", action="store_true",
                    help="random weights of the base's shapes (timing runs only)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the MoE FFN")
    ap.add_argument("--recompute-moe", action="store_true",
                    help="recompute the MoE FFN in the backward pass (less memory)")
    ap.add_argument("--aux-weight", type=float,
                    help="task-moe's router cross-entropy weight instead of VARIANTS' 0.1")
    ap.add_argument("--no-task-decode", action="store_true",
                    help="decode with the learned gate only (no forced-expert pass)")
    ap.add_argument("--micro-batch", type=int, default=0,
                    help="rows per forward pass, gradients summed over the step (0: the batch)")
    ap.add_argument("--bf16", action="store_true",
                    help="bf16 autocast on the CPU too (the GPU always uses it)")
    ap.add_argument("--resume", action="store_true",
                    help="go on from OUT/state.pt (written with each --save-every checkpoint)")
    args = ap.parse_args()
    t0 = time.time()
    deadline = t0 + args.budget_s
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    os.makedirs(args.out, exist_ok=True)
    global MOE_FFN, RECOMPUTE_MOE, AUTOCAST_CPU
    if args.compile:
        MOE_FFN = torch.compile(moe_ffn, dynamic=True)
    RECOMPUTE_MOE = args.recompute_moe
    AUTOCAST_CPU = args.bf16
    if args.random_base:
        base = random_base(args.seed)
    else:
        base = load_gguf(args.gguf) if args.gguf else load_safetensors(args.base)
    log(f"base loaded ({len(base)} tensors) on {device}")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(args.data, "tokenizer.json"))
    prompts = read_prompts(os.path.join(args.data, "prompts"))
    if args.max_records:
        prompts = {k: v[: args.max_records] for k, v in prompts.items()}

    if args.parity:
        from safetensors.numpy import load_file

        net = Net(base, 4, 16, 16.0, 2, 0, device)
        net.load_adapter({k: v.astype(np.float32) for k, v in load_file(args.parity).items()})
        with open(os.path.join(args.out, "parity.jsonl"), "w") as f:
            for name, ps in prompts.items():
                for pid, text, fin in decode(net, tok, ps, None, device):
                    f.write(json.dumps({"set": name, "id": pid, "text": text, "finish": fin}) + "\n")
        log("parity predictions written")
        return

    examples = load_examples(os.path.join(args.data, "train.npz"))
    log(f"{len(examples)} examples, {sum(len(e[0]) for e in examples)} tokens")
    # What --resume checks besides the settings: other data would go on with other batches.
    with open(os.path.join(args.data, "train.npz"), "rb") as f:
        data_sha = hashlib.sha256(f.read()).hexdigest()[:16]
    variants = args.variants.split(",")
    # A run past its first state is gone on with (--resume) or left alone, never written
    # over; one stopped before it has nothing to lose and starts anew.
    if not args.resume and os.path.exists(os.path.join(args.out, "state.pt")):
        sys.exit(f"{args.out} holds a run: --resume goes on with it; another --out starts anew")
    preds = open(os.path.join(args.out, "preds.jsonl"), "a" if args.resume else "w")
    state_path = os.path.join(args.out, "state.pt")
    logf = open_log(os.path.join(args.out, "train.jsonl"), state_path if args.resume else None)
    summary = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}

    steps = args.steps
    if not steps:
        # Time a few steps, then fit every variant's training into its share of the budget.
        probe = Net(base, 4, 16, 16.0, 2, args.seed, device)
        for p in probe.parameters():
            p.requires_grad_(True)
        cfg = dict(name="probe", routing="both", aux_weight=0.1, balance_weight=0.0)
        batches = make_batches(examples, args.batch_size, 99, 0)
        for i in range(8):
            if i == 3:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                tp = time.time()
            total, *_ = step_loss(probe, examples, batches[i], cfg, device)
            total.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        per_step = (time.time() - tp) / 5 * 1.15  # + optimizer and logging
        del probe
        left = deadline - time.time()
        train_share = left * (1 - args.decode_share) / len(variants)
        steps = max(10, int(train_share / per_step))
        summary["probe_seconds_per_step"] = per_step
        log(f"{per_step:.3f} s/step -> {steps} steps per variant "
            f"({steps * args.batch_size / len(examples):.2f} epochs)")
    summary["steps"] = steps
    summary["batch_size"] = args.batch_size
    summary["lr"] = args.lr

    train_share = (deadline - time.time()) * (1 - args.decode_share) / len(variants)
    main_net = None

    def decode_sets(net, name, mode, keep):
        for set_name, ps in prompts.items():
            if not keep(set_name):
                continue
            if time.time() > deadline + 60:
                log(f"{name}/{mode}: out of time, {set_name} not decoded")
                continue
            forced = set_expert(set_name) if mode == "task" else None
            td = time.time()
            for pid, text, fin in decode(net, tok, ps, forced, device):
                preds.write(json.dumps({"variant": name, "routing": mode, "set": set_name,
                                        "id": pid, "text": text, "finish": fin}) + "\n")
            preds.flush()
            log(f"{name}/{mode} decoded {set_name} ({len(ps)}) in {time.time() - td:.1f}s")

    dev = lambda s: s.startswith("dev-")  # noqa: E731
    for name in variants:
        experts, rank, top_k, routing, aux_w, bal_w = VARIANTS[name]
        if name == "task-moe" and args.aux_weight is not None:
            aux_w = args.aux_weight
        cfg = dict(
            name=name, routing=routing, aux_weight=aux_w, balance_weight=bal_w,
            steps=steps, batch_size=args.batch_size, lr=args.lr, min_lr_ratio=0.1,
            warmup=args.warmup or max(1, steps // 20), max_grad_norm=1.0, seed=args.seed,
            experts=experts, rank=rank, alpha=float(rank), top_k=top_k,
            micro_batch=args.micro_batch, bf16=AUTOCAST_CPU or device.type == "cuda",
            save_every=args.save_every if name == "task-moe" else 0,
            init_adapter=args.init_adapter if name == "task-moe" else None,
            data_sha256=data_sha,
        )
        summary[name] = {"config": cfg}
        torch.manual_seed(args.seed)
        net = Net(base, experts, rank, float(rank), top_k, args.seed, device)
        if cfg["init_adapter"]:
            from safetensors.numpy import load_file

            start = load_file(cfg["init_adapter"])
            net.load_adapter({k: v.astype(np.float32) for k, v in start.items()})
            log(f"{name}: started from {cfg['init_adapter']}")

        resume = None
        if args.resume and name == "task-moe" and os.path.exists(state_path):
            resume = torch.load(state_path, weights_only=False)
            # A state from before the data was recorded goes on (its data is not known).
            if {"data_sha256": data_sha, **resume["config"]} != cfg:
                sys.exit(f"{state_path} was written by another run: {resume['config']} "
                         f"against {cfg}")
            trainable = dict(net.named_parameters())
            with torch.no_grad():
                for k, v in resume["params"].items():
                    trainable[k].copy_(v)

        def checkpoint(step, opt=None, seconds=0.0, net=net, cfg=cfg):
            # One file (not the GPU run's two parts): a CPU run needs no small transfers.
            # Written aside and renamed: a run killed mid-write keeps its last whole checkpoint.
            path = os.path.join(args.out, "adapter.safetensors")
            save_adapter(net, path + ".partial")
            synced(path + ".partial")
            os.replace(path + ".partial", path)
            if opt is not None:
                # What --resume needs to go on as if never stopped: the trainable weights in
                # f32 (the adapter file is f16), the optimizer's moments, the step.
                params = {k: v.detach().clone() for k, v in net.named_parameters()
                          if v.requires_grad}
                torch.save({"config": cfg, "step": step, "seconds": seconds, "params": params,
                            "opt": opt.state_dict()}, state_path + ".partial")
                synced(state_path + ".partial")
                os.replace(state_path + ".partial", state_path)
            with open(os.path.join(args.out, "checkpoint.json"), "w") as f:
                json.dump({"step": step}, f)
            log(f"{name}: adapter of step {step} written")

        ts = time.time()
        done = train(net, examples, cfg, device, logf, ts + train_share, checkpoint, resume)
        logf.flush()
        summary[name]["steps_done"] = done
        # Over every process of a resumed run, as the log's clock counts (this one's alone
        # was the last session's share).
        before = resume["seconds"] if resume else 0.0
        summary[name]["train_seconds"] = round(before + time.time() - ts, 1)
        net.eval()
        if name == "task-moe":
            if args.no_decode:
                checkpoint(done)
            else:
                save_adapter(net, os.path.join(args.out, "adapter"), parts=2)
                main_net = net
        if args.no_decode:
            continue
        decode_sets(net, name, "learned", dev)
        if name != "task-moe":
            del net
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
    if main_net is not None:
        if not args.no_task_decode:
            decode_sets(main_net, "task-moe", "task", dev)
        # The HyPoradise test sets, and any other prompt set (the out-of-domain ASR dev split).
        decode_sets(main_net, "task-moe", "learned", lambda s: not dev(s))
    summary["seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log(f"done in {summary['seconds']}s")


if __name__ == "__main__":
    main()
