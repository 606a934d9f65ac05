"""Side-by-side speed of neko, Hugging Face transformers (PyTorch, CPU) and llama.cpp
(llama-cpp-python) on the same prompts, greedy decoding and stop rules.

Input: the prompts as neko renders them (`neko correct --dump-prompts`: JSONL with `id`,
`ids`, `max_new_tokens`), so every engine sees exactly the same token ids. Each engine decodes
greedily: a row ends at an end-of-sequence token (not kept), when its decoded text (leading
whitespace ignored) contains a newline, or after `max_new_tokens` tokens; the answer is the
decoded text up to the newline, trimmed — neko's rules (src/correct.rs, src/generate.rs).

Usage: compare_engines.py PROMPTS.jsonl --hf DIR --gguf FILE --out DIR [--threads 1]
Writes DIR/<engine>.jsonl (id, answer, tokens) and DIR/<engine>.json (records, seconds).
       compare_engines.py --summary DIR
prints the table of every engine's records/s, the ratios and the agreement of the answers.
"""

import argparse
import json
import os
import time


def answer_of(text):
    text = text.lstrip()
    at = text.find("\n")
    if at >= 0:
        text = text[:at]
    return text.strip()


def run_loop(prompts, step_first, step_next, decode, eos, label):
    """Greedy decoding, one record at a time, with each engine's own KV cache."""
    out = []
    started = time.perf_counter()
    for p in prompts:
        tokens = []
        tok = step_first(p["ids"])
        while True:
            if tok in eos:
                break
            tokens.append(tok)
            if "\n" in decode(tokens).lstrip() or len(tokens) >= p["max_new_tokens"]:
                break
            tok = step_next(tok)
        out.append({"id": p["id"], "answer": answer_of(decode(tokens)), "tokens": tokens})
    seconds = time.perf_counter() - started
    print(f"{label}: {len(prompts)} records in {seconds:.1f}s, {len(prompts) / seconds:.3f} records/s",
          flush=True)
    return out, seconds


def hf_engine(prompts, folder, threads):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    eos = json.load(open(os.path.join(folder, "config.json"))).get("eos_token_id")
    eos = {eos} if isinstance(eos, int) else set(eos or [])
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int):
        eos.add(im_end)
    state = {}

    @torch.inference_mode()
    def first(ids):
        o = model(torch.tensor([ids]), use_cache=True)
        state["past"] = o.past_key_values
        return int(o.logits[0, -1].argmax())

    @torch.inference_mode()
    def nxt(t):
        o = model(torch.tensor([[t]]), past_key_values=state["past"], use_cache=True)
        state["past"] = o.past_key_values
        return int(o.logits[0, -1].argmax())

    decode = lambda ts: tok.decode(ts, skip_special_tokens=True)
    return run_loop(prompts, first, nxt, decode, eos, f"transformers f32, {threads} thread(s)")


def llama_engine(prompts, gguf, threads, folder):
    import llama_cpp
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=4096, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    eos = {llm.token_eos(), tok.convert_tokens_to_ids("<|im_end|>")}
    state = {}

    def first(ids):
        # Llama.generate reuses the KV cache of the longest prefix shared with the previous
        # call (llama-cpp-python's own prefix reuse); top_k=1 is greedy.
        gen = llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0,
                           reset=True)
        state["gen"] = gen
        return next(gen)

    def nxt(_t):
        return next(state["gen"])

    decode = lambda ts: tok.decode(ts, skip_special_tokens=True)
    return run_loop(prompts, first, nxt, decode, eos,
                    f"llama.cpp {os.path.basename(gguf)}, {threads} thread(s)")


def load_answers(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        out[json.dumps(r["id"])] = r.get("answer", r.get("prediction"))
    return out


def summary(d):
    rows = [
        ("neko", "f32 (converted)", "neko-f32"),
        ("neko", "GGUF → q8_0", "neko-q8_0"),
        ("transformers", "f32 (converted)", "transformers"),
        ("llama.cpp", "GGUF Q4_1", "llama.cpp"),
    ]
    stats, answers = {}, {}
    for _, _, name in rows:
        j = os.path.join(d, name + ".json")
        if os.path.exists(j):
            stats[name] = json.load(open(j))
            answers[name] = load_answers(os.path.join(d, name + ".jsonl"))
    base = lambda k: stats.get(k, {}).get("records_s")
    hf, lc = base("transformers"), base("llama.cpp")

    def agree(a, b):
        if a not in answers or b not in answers:
            return "-"
        keys = answers[a].keys() & answers[b].keys()
        same = sum(answers[a][k] == answers[b][k] for k in keys)
        return f"{same}/{len(keys)}"

    # Python engines share one process: their peak RSS is the process's so far.
    print("| engine | weights | records | records/s | × transformers | × llama.cpp "
          "| peak RSS MiB | same answer as neko f32 | as transformers |")
    print("|---|---|---|---|---|---|---|---|---|")
    for engine, weights, name in rows:
        if name not in stats:
            continue
        s = stats[name]
        rs = s["records_s"]
        ratio = lambda x: f"{rs / x:.2f}" if x else "-"
        rss = s.get("peak_rss_mib")
        print(f"| {engine} | {weights} | {s['records']} | {rs:.3f} | {ratio(hf)} | {ratio(lc)} "
              f"| {rss:.0f} | {agree(name, 'neko-f32')} | {agree(name, 'transformers')} |"
              if rss else
              f"| {engine} | {weights} | {s['records']} | {rs:.3f} | {ratio(hf)} | {ratio(lc)} "
              f"| - | {agree(name, 'neko-f32')} | {agree(name, 'transformers')} |")


def peak_rss_mib():
    """VmHWM of this process (all engines so far: a lower bound is the last engine's)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("prompts", nargs="?")
    ap.add_argument("--summary")
    ap.add_argument("--hf")
    ap.add_argument("--gguf")
    ap.add_argument("--out")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--engines", default="transformers,llama.cpp")
    a = ap.parse_args()
    if a.summary:
        return summary(a.summary)
    prompts = [json.loads(l) for l in open(a.prompts)]
    os.makedirs(a.out, exist_ok=True)
    for engine in a.engines.split(","):
        if engine == "transformers":
            out, secs = hf_engine(prompts, a.hf, a.threads)
        elif engine == "llama.cpp":
            out, secs = llama_engine(prompts, a.gguf, a.threads, a.hf)
        else:
            raise SystemExit(f"unknown engine {engine}")
        with open(os.path.join(a.out, engine + ".jsonl"), "w") as f:
            for r in out:
                f.write(json.dumps(r) + "\n")
        with open(os.path.join(a.out, engine + ".json"), "w") as f:
            json.dump({"engine": engine, "records": len(out), "seconds": secs,
                       "records_s": len(out) / secs, "threads": a.threads,
                       "peak_rss_mib": peak_rss_mib()}, f)


if __name__ == "__main__":
    main()
