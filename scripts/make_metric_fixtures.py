#!/usr/bin/env python3
"""Reference numbers for neko's metric tests, computed with the tools neko must agree with.

- WER / CER hits, substitutions, deletions, insertions: jiwer (rapidfuzz alignment).
- BLEU, chrF (and chrF++) and TER: sacrebleu (13a tokeniser, exp smoothing; chrF2 defaults; TER's defaults:
  lower-cased, Tercom shifts), BLEU also lower-cased and under its other smoothing methods
  (bleu_by_options, sentence_bleu_by_options), chrF under its other options (chrf_by_options,
  sentence_chrf_by_options: orders, beta, case, whitespace, epsilon smoothing), TER also on random sentences with moved blocks (ter_cases) and
  under each combination of its options (ter_tokenizers: Tercom normalisation, punctuation, Asian
  support, case).
- GLEU: the `gleu` package (a reimplementation of the JFLEG / GLEU+ scorer), cross-checked here
  against a transcription of JFLEG's gleu.py; with several references (records/gec-multi.*),
  its sampling over 500 draws under GLEU+'s fixed seeds (`--fix-seed`).
- Several references (records/mt-multi.jsonl): sacrebleu with three reference streams.
- GEC edits: spans merged from rapidfuzz's Levenshtein opcodes (the aligner jiwer uses).
- Whisper normalisers: openai-whisper's own `whisper.normalizers` module (imported without torch).
- Hypo2Trans normalisation: `re.sub(r"[^\\w\\s]|\\d", "", s.lower())`.
- Paired bootstrap (`neko eval --paired-bs`): the same draws as neko (SplitMix64, below), each
  resample scored by sacrebleu and jiwer, the interval by numpy's percentile.

Writes tests/fixtures/metrics/*.json and tests/fixtures/metrics/records/*.jsonl. Words are
`" ".join(s.split())` before jiwer sees them, so jiwer and neko split words the same way (jiwer
alone splits on spaces only). Run through scripts/make_metric_fixtures.sh, which pins versions.

    make_metric_fixtures.py --data ../shared/data --out tests/fixtures/metrics
    make_metric_fixtures.py --fuzz 20000 --out /tmp/fuzz      # a large WER check, not committed
"""

import argparse
import collections
import contextlib
import io
import json
import math
import os
import random
import re
import site
import sys
import tempfile
from importlib import metadata

import jiwer
import rapidfuzz
import sacrebleu

# whisper/__init__.py imports torch; the normalisers need only `regex` and `more_itertools`.
for _p in site.getsitepackages():
    if os.path.isdir(os.path.join(_p, "whisper", "normalizers")):
        sys.path.insert(0, os.path.join(_p, "whisper"))
from normalizers import BasicTextNormalizer, EnglishTextNormalizer  # noqa: E402

WHISPER_EN = EnglishTextNormalizer()
WHISPER_BASIC = BasicTextNormalizer()


def h2t(s):
    return re.sub(r"[^\w\s]|\d", "", s.lower())


NORMALIZERS = {
    "none@1": lambda s: s,
    "h2t@1": h2t,
    "whisper-en@1": WHISPER_EN,
    "whisper-basic@1": WHISPER_BASIC,
}


def versions():
    names = ["jiwer", "rapidfuzz", "sacrebleu", "openai-whisper", "gleu"]
    return {n: metadata.version(n) for n in names} | {"python": sys.version.split()[0]}


def words(s):
    return " ".join(s.split())


def counts(o):
    return [o.hits, o.substitutions, o.deletions, o.insertions]


def wer_counts(ref, hyp):
    return counts(jiwer.process_words(words(ref), words(hyp)))


def cer_counts(ref, hyp):
    return counts(jiwer.process_characters(words(ref), words(hyp)))


def errors(c):
    return c[1] + c[2] + c[3]


def add(a, b):
    return [x + y for x, y in zip(a, b)]


# ---------------------------------------------------------------------------------------------
# WER / CER cases

EDGE_CASES = [
    ("identical", "the cat sat on the mat", "the cat sat on the mat"),
    ("empty reference", "", "some inserted words"),
    ("empty hypothesis", "nothing was recognised here", ""),
    ("both empty", "", ""),
    ("whitespace only", "   ", " \t "),
    ("unicode", "naïve café über straße 東京 タワー", "naive cafe über strasse 東京 タワ"),
    ("combining marks", "cafe\u0301 re\u0301sume\u0301", "café résumé"),
    ("punctuation only", "... !!! ???", ", , ."),
    ("punctuation attached", "Hello, world! How are you?", "hello world how are you"),
    ("repeated words", "a a a a b b b", "a a b b b b"),
    ("all substitutions", "one two three", "four five six"),
    ("insertions at ends", "middle part", "start middle part end"),
    ("deletions at ends", "start middle part end", "middle part"),
    ("tabs and newlines", "a\tb\nc  d", "a b c\u00a0d"),
    ("separators", "x\u001fy\u001cz", "x y z"),
    ("ties", "a b", "b a"),
    ("ties 2", "a b c", "c b a"),
    ("ties 3", "x a", "a a"),
    ("swap", "the quick brown fox", "quick the brown fox"),
    ("emoji", "I ❤️ NY 🍕", "I ❤ NY 🍕🍕"),
]


def random_pair(rng, vocab, n_min, n_max, noise):
    ref = [rng.choice(vocab) for _ in range(rng.randint(n_min, n_max))]
    hyp = []
    for w in ref:
        r = rng.random()
        if r < noise / 3:
            continue
        if r < 2 * noise / 3:
            hyp.append(rng.choice(vocab))
        elif r < noise:
            hyp.extend([w, rng.choice(vocab)])
        else:
            hyp.append(w)
    return " ".join(ref), " ".join(hyp)


def wer_cases(rng, n_random, n_long):
    cases = [(name, r, h) for name, r, h in EDGE_CASES]
    for i in range(n_random):
        vocab = ["a", "b", "c", "d", "e"][: rng.randint(2, 5)]
        r, h = random_pair(rng, vocab, 0, 14, rng.choice([0.1, 0.3, 0.6]))
        cases.append((f"random {i}", r, h))
    for i in range(n_long):
        # Long enough for rapidfuzz's Hirschberg split (len(a) * len(b) >= 4 Mi tokens).
        vocab = [f"w{k}" for k in range(rng.choice([3, 8, 40]))]
        n = rng.choice([700, 1500, 2300])
        r, h = random_pair(rng, vocab, n, n + 50, rng.choice([0.05, 0.3]))
        cases.append((f"long {i}", r, h))
    out = []
    for k, (name, r, h) in enumerate(cases):
        w = wer_counts(r, h)
        c = cer_counts(r, h)
        case = {
            "name": name,
            "reference": r,
            "hypothesis": h,
            "words": w,
            "chars": c,
            "wer": jiwer.wer(words(r), words(h)),
            "cer": jiwer.cer(words(r), words(h)),
        }
        if k < 120 and not name.startswith("long"):
            case["alignment"] = alignment_lines(r, h)
        out.append(case)
    return out


def alignment_lines(ref, hyp):
    """jiwer's `visualize_alignment` of one pair: its REF, HYP and operations lines, without
    their five-character prefixes and trailing blanks (`neko eval --per-record` writes these)."""
    out = jiwer.process_words(words(ref), words(hyp))
    text = jiwer.visualize_alignment(out, show_measures=False, skip_correct=False)
    lines = text.split("\n")
    at = next((i for i, l in enumerate(lines) if l.startswith("REF:")), None)
    if at is None:  # nothing on either side: jiwer prints no sentence
        return ["", "", ""]
    return [l[5:].rstrip() for l in lines[at : at + 3]]


def corpus_cases(cases):
    """Pooled jiwer results over groups of cases, to pin corpus semantics (empty references)."""
    groups = {
        "edge cases": [c for c in cases if not c["name"].startswith(("random", "long"))],
        "only empty references": [c for c in cases if c["name"] in ("empty reference", "both empty")],
        "random": [c for c in cases if c["name"].startswith("random")],
    }
    out = []
    for name, cs in groups.items():
        refs = [words(c["reference"]) for c in cs]
        hyps = [words(c["hypothesis"]) for c in cs]
        o = jiwer.process_words(refs, hyps)
        ch = jiwer.process_characters(refs, hyps)
        out.append(
            {
                "name": name,
                "cases": [c["name"] for c in cs],
                "words": counts(o),
                "wer": o.wer,
                "mer": o.mer,
                "chars": counts(ch),
                "cer": ch.cer,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# BLEU / chrF


# `neko eval` flags and the sacrebleu.BLEU arguments they stand for.
BLEU_OPTIONS = {
    "--lowercase": {"lowercase": True},
    "--smooth-method none": {"smooth_method": "none"},
    "--smooth-method floor": {"smooth_method": "floor"},
    "--smooth-method floor --smooth-value 0.5": {"smooth_method": "floor", "smooth_value": 0.5},
    "--smooth-method add-k": {"smooth_method": "add-k"},
    "--smooth-method add-k --smooth-value 0.3": {"smooth_method": "add-k", "smooth_value": 0.3},
    "--lowercase --tokenize intl --smooth-method add-k --smooth-value 2": {"lowercase": True, "tokenize": "intl", "smooth_method": "add-k", "smooth_value": 2.0},
}


# `neko eval` flags and the sacrebleu.CHRF arguments they stand for.
CHRF_OPTIONS = {
    "--chrf-char-order 3": {"char_order": 3},
    "--chrf-beta 1": {"beta": 1},
    "--chrf-beta 3 --chrf-word-order 2": {"beta": 3, "word_order": 2},
    "--chrf-lowercase": {"lowercase": True},
    "--chrf-whitespace": {"whitespace": True},
    "--chrf-eps-smoothing": {"eps_smoothing": True},
    "--chrf-eps-smoothing --chrf-word-order 2 --chrf-char-order 4": {"eps_smoothing": True, "word_order": 2, "char_order": 4},
    "--chrf-whitespace --chrf-lowercase --chrf-beta 0": {"whitespace": True, "lowercase": True, "beta": 0},
}


# Per metric key: the sacrebleu class, what its sentence scores add (sentence BLEU takes the
# effective order, as `sacrebleu.sentence_bleu`), and the option sets above.
OPTION_SETS = {
    "bleu": (sacrebleu.BLEU, {"effective_order": True}, BLEU_OPTIONS),
    "chrf": (sacrebleu.CHRF, {}, CHRF_OPTIONS),
}


def by_options(key, hyps, refs):
    """Corpus score of metric `key` under each of its option sets, with its signature."""
    cls, _, options = OPTION_SETS[key]
    out = {}
    for flags, kwargs in options.items():
        m = cls(**kwargs)
        out[flags] = {key: m.corpus_score(hyps, [refs]).score, "signature": str(m.get_signature())}
    return out


def sentence_by_options(key, hyp, refs):
    """Sentence score of metric `key` under each of its option sets."""
    cls, sentence, options = OPTION_SETS[key]
    return {flags: cls(**kwargs, **sentence).sentence_score(hyp, refs).score for flags, kwargs in options.items()}


def bleu_entry(name, hyps, refs):
    bm, cm, tm = sacrebleu.BLEU(), sacrebleu.CHRF(), sacrebleu.TER()
    b = bm.corpus_score(hyps, [refs])
    c = cm.corpus_score(hyps, [refs])
    t = tm.corpus_score(hyps, [refs])
    return {
        "name": name,
        "hypotheses": hyps,
        "references": refs,
        "bleu": b.score,
        "bleu_correct": list(b.counts),
        "bleu_total": list(b.totals),
        "sys_len": b.sys_len,
        "ref_len": b.ref_len,
        "chrf": c.score,
        "chrf_pp": sacrebleu.CHRF(word_order=2).corpus_score(hyps, [refs]).score,
        "ter": t.score,
        "ter_edits": t.num_edits,
        "ter_ref_length": t.ref_length,
        "bleu_signature": str(bm.get_signature()),
        "bleu_by_options": by_options("bleu", hyps, refs),
        "chrf_signature": str(cm.get_signature()),
        "chrf_by_options": by_options("chrf", hyps, refs),
        "ter_signature": str(tm.get_signature()),
    }


MT_PAIRS = [
    ("The cat is on the mat.", "The cat sat on the mat."),
    ("It costs $1,000.50 -- or so, they say.", "It costs $1,000.50, or so they say."),
    ("Don't stop believing!", "Do not stop believing!"),
    ("3-4 people (maybe) came & left <quickly>.", "Three or four people came and left quickly."),
    ("Über die Brücke gehen wir.", "Wir gehen über die Brücke."),
    ("", "An empty hypothesis gets no credit."),
    ("Nothing to compare with.", ""),
    ("&quot;Quoted&quot; text &amp; entities.", "\"Quoted\" text & entities."),
    ("A very long line " + "with many repeated words " * 40, "A very long line " + "with many repeated words " * 38),
    ("東京タワーは高い。", "東京タワーは高いです。"),
    ("...", "!!!"),
]


def bleu_corpora():
    hyps = [h for h, _ in MT_PAIRS]
    refs = [r for _, r in MT_PAIRS]
    out = [bleu_entry("mt pairs", hyps, refs)]
    for i, (h, r) in enumerate(MT_PAIRS):
        out.append(bleu_entry(f"pair {i}", [h], [r]) | {"sentence_bleu": sacrebleu.sentence_bleu(h, [r]).score})
    out.append(bleu_entry("no matches", ["xyz abc"], ["def ghi"]))
    out.append(bleu_entry("short corpus", ["a b", "c"], ["a b", "c d"]))
    return out


TOKENIZER_LINES = [
    "他说：“你好！”今天是2024年。",
    "価格は¥1,000です。東京タワー",
    "a—b … c -- d",
    "3.14 and 1,000. Done.",
    "x+y=z ≤ 5 → ok",
    "emoji 🍕! ⚡ weather ☔",
    "¿Qué? ¡Sí!",
    "It's 5 o'clock, isn't it?",
    "an em quad and  thin space",
    "Ext B 𠀀 char and ⾁ ⾢",
    "Ｆｕｌｌ ｗｉｄｔｈ！",
    "&quot;kept&quot; &amp; <b>tags</b>",
    "  padded line  ",
]


def tokenizer_cases():
    """sacrebleu's BLEU tokenisers (`--tokenize`): each line tokenised, and corpus BLEU of the MT
    pairs with the lines added as their own references, per tokeniser."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    from sacrebleu.tokenizers.tokenizer_char import TokenizerChar
    from sacrebleu.tokenizers.tokenizer_intl import TokenizerV14International
    from sacrebleu.tokenizers.tokenizer_none import NoneTokenizer
    from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

    tokenizers = {"13a": Tokenizer13a(), "intl": TokenizerV14International(), "zh": TokenizerZh(), "char": TokenizerChar(), "none": NoneTokenizer()}
    lines = TOKENIZER_LINES + [h for h, _ in MT_PAIRS] + [r for _, r in MT_PAIRS]
    hyps = [h for h, _ in MT_PAIRS] + TOKENIZER_LINES[1:] + TOKENIZER_LINES[:1]
    refs = [r for _, r in MT_PAIRS] + TOKENIZER_LINES
    out = []
    for name, tok in tokenizers.items():
        bleu = sacrebleu.BLEU(tokenize=name)
        out.append({
            "tokenize": name,
            "lines": lines,
            "tokenized": [tok(line.rstrip()) for line in lines],
            "hypotheses": hyps,
            "references": refs,
            "bleu": bleu.corpus_score(hyps, [refs]).score,
            "signature": str(bleu.get_signature()),
        })
    return out


# Lines that exercise Tercom's normalisation and punctuation removal (`--ter-normalized`,
# `--ter-no-punct`, `--ter-asian-support`, `--ter-case-sensitive`) beyond TOKENIZER_LINES.
TER_LINES = [
    "The dog's bone and JAMES'S car's wheel's",
    "line one\n-broken word and\nnext line",
    "&lt;tag&gt; &quot;q&quot; &amp;amp; 5&gt;3",
    "Prices: 1,000.50 vs 2.5, then 3-4 and a-b (ok)! [x] {y} |z| ~w~ ^v^ `u` @t #s $r %q",
    "end with 's",
    "That's. It's, fine",
    "the dog's\tbone",
    "...dots, commas,, and ..., 7., .8 9,x",
    "ひらがなだけ",
    "カタカナとひらがなと漢字ㇰ",
    "句読点、句点。「括弧」【墨付き】〈山括弧〉・中黒｡｢｣､･",
    "全角．，？：；！＂（）だ",
    "㈱ ㍻ 豈 ︰ ⺀ ㇀ 㐀 鿿",
    "MiXeD CaSe İstanbul ΣΟΦΟΣ",
    "",
    "   ",
]


def ter_tokenizer_cases():
    """sacrebleu's TER under each of its 16 option combinations: every line tokenised by the
    TercomTokenizer, and corpus TER of the MT pairs with the lines added as their own
    references (shifted one place, so lines meet other lines)."""
    from sacrebleu.tokenizers.tokenizer_ter import TercomTokenizer

    lines = TOKENIZER_LINES + TER_LINES + [h for h, _ in MT_PAIRS] + [r for _, r in MT_PAIRS]
    extra = TOKENIZER_LINES + TER_LINES
    hyps = [h for h, _ in MT_PAIRS] + extra[1:] + extra[:1]
    refs = [r for _, r in MT_PAIRS] + extra
    cases = []
    for k in range(16):
        options = {
            "case_sensitive": bool(k & 1), "normalized": bool(k & 2),
            "no_punct": bool(k & 4), "asian_support": bool(k & 8),
        }
        tok, ter = TercomTokenizer(**options), sacrebleu.TER(**options)
        score = ter.corpus_score(hyps, [refs])
        cases.append({
            "options": options,
            "tokenized": [tok(line.rstrip()) for line in lines],
            "ter": score.score,
            "edits": score.num_edits,
            "ref_length": score.ref_length,
            "signature": str(ter.get_signature()),
        })
    return {"lines": lines, "hypotheses": hyps, "references": refs, "cases": cases}


def moved_blocks(rng, words, moves):
    """`words` with `moves` random blocks of 1-12 words cut out and put back elsewhere."""
    words = list(words)
    for _ in range(moves):
        if len(words) < 2:
            break
        n = rng.randint(1, min(12, len(words) - 1))
        start = rng.randrange(len(words) - n + 1)
        block, rest = words[start:start + n], words[:start] + words[start + n:]
        at = rng.randint(0, len(rest))
        words = rest[:at] + block + rest[at:]
    return words


def ter_cases(rng):
    """Sentence pairs (and a few with two or three references) that make Tercom shift: blocks
    moved, words changed, repeated words, long sentences (the 50-word shift distance and the
    beam), very unequal lengths (the widened beam), and mixed case."""
    cases = [
        ("shift one word", "the cat sat on the mat", ["on the mat the cat sat"]),
        ("swap halves", "b c d e a", ["a b c d e"]),
        ("case", "The Cat SAT", ["the cat sat"]),
        ("empty hypothesis", "", ["a b c"]),
        ("empty reference", "a b c", [""]),
        ("both empty", "", [""]),
        ("trailing space", "a b c  ", ["a b c"]),
        ("two references", "over the bridge we go", ["we go over the bridge", "over the bridge we go now"]),
        ("references of different lengths", "x y z", ["x", "x y z w v u t"]),
        ("much longer reference", "a", [" ".join(["a", "b"] * 40)]),
        ("much longer hypothesis", " ".join(["a", "b"] * 40), ["b"]),
    ]
    for i in range(160):
        vocab = [f"w{k}" for k in range(rng.choice([3, 6, 20, 200]))]
        n = rng.choice([0, 1, 3, 8, 15, 30, 60, 120])
        ref = [rng.choice(vocab) for _ in range(n)]
        hyp = moved_blocks(rng, ref, rng.randint(0, 4))
        for k in range(len(hyp)):
            r = rng.random()
            if r < 0.05:
                hyp[k] = rng.choice(vocab + ["x"])
            elif r < 0.08:
                hyp[k] = ""
        hyp = " ".join(w for w in hyp if w)
        refs = [" ".join(ref)]
        if i % 7 == 0:
            refs.append(" ".join(moved_blocks(rng, ref, 2)))
        if i % 21 == 0:
            refs.append(" ".join(ref[: len(ref) // 2]))
        cases.append((f"random {i}", hyp, refs))
    out = []
    for name, hyp, refs in cases:
        t = sacrebleu.TER().corpus_score([hyp], [[r] for r in refs])
        out.append({
            "name": name, "hypothesis": hyp, "references": refs, "ter": t.score, "edits": t.num_edits, "ref_length": t.ref_length,
            # Short sentences and several references: sentence BLEU's effective order.
            "sentence_bleu": sacrebleu.sentence_bleu(hyp, refs).score,
            "sentence_bleu_by_options": sentence_by_options("bleu", hyp, refs),
            "sentence_chrf_by_options": sentence_by_options("chrf", hyp, refs),
            # chrF++ (word unigrams and bigrams) with its choice among references.
            "chrf_pp": sacrebleu.CHRF(word_order=2).sentence_score(hyp, refs).score,
        })
    return out


def corpus_ter(hyps, refs):
    return sacrebleu.corpus_ter(hyps, [refs]).score


# ---------------------------------------------------------------------------------------------
# GLEU and edits

GEC_TRIPLES = [
    # (source, hypothesis, reference)
    ("He go to school every day .", "He goes to school every day .", "He goes to school every day ."),
    ("She have two cat .", "She has two cat .", "She has two cats ."),
    ("I am agree with you .", "I am agree with you .", "I agree with you ."),
    ("Their going to the park tomorow .", "They're going to the park tomorrow .", "They're going to the park tomorrow ."),
    ("The informations are useful .", "The information is useful .", "The information is useful ."),
    ("We discussed about the problem yesterday .", "We discussed the problem yesterday .", "We discussed the problem yesterday ."),
    ("He is more taller than me .", "He is taller than I .", "He is taller than me ."),
    ("This sentence is already correct .", "This sentence is already correct .", "This sentence is already correct ."),
    ("This sentence is already correct too .", "This sentence is correct too .", "This sentence is already correct too ."),
    ("In that day certain priests , desire to do exploits there , were slain .", "In that day certain priests , desiring to do exploits there , were slain .", "In that day certain priests , desiring to do exploits there , were slain ."),
    ("a an the", "the a an", "a the"),
    ("one two three four five six", "one two four five six seven", "one three four five six"),
]


def jfleg_gleu(sources, hyps, refs, order=4):
    """A transcription of JFLEG's gleu.py (one reference): corpus-level statistics."""

    def grams(toks, n):
        return collections.Counter(tuple(toks[i : i + n]) for i in range(len(toks) + 1 - n))

    stats = [0] * (2 + 2 * order)
    for s, h, r in zip(sources, hyps, refs):
        s, h, r = s.split(), h.split(), r.split()
        stats[0] += len(h)
        stats[1] += len(r)
        for n in range(1, order + 1):
            hn, sn, rn = grams(h, n), grams(s, n), grams(r, n)
            sdiff = collections.Counter({k: v for k, v in sn.items() if k not in rn})
            stats[2 * n] += max(sum((hn & rn).values()) - sum((hn & sdiff).values()), 0)
            stats[2 * n + 1] += max(len(h) + 1 - n, 0)
    if any(x == 0 for x in stats):
        return 0.0
    c, r = stats[:2]
    log_prec = sum(math.log(x / y) for x, y in zip(stats[2::2], stats[3::2])) / order
    return 100 * math.exp(min(0, 1 - r / c) + log_prec)


def gleu_package(sources, hyps, refs):
    """Corpus GLEU from the `gleu` package's own command-line entry point."""
    from argparse import Namespace

    from gleu.corpus_main import corpus_main
    from gleu.count import set_tokenization

    set_tokenization("word")
    with tempfile.TemporaryDirectory() as d:
        paths = {}
        for name, lines in (("src", sources), ("ref", refs), ("hyp", hyps)):
            paths[name] = os.path.join(d, name)
            with open(paths[name], "w") as f:
                f.write("".join(l + "\n" for l in lines))
        args = Namespace(
            n=4, source_path=paths["src"], ref_path_list=[paths["ref"]],
            hyp_path_list=[paths["hyp"]], iter=1, digit=8, proc=1, token="word",
            max=True, verbose=False, fix_seed=True,
        )
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            corpus_main(args)
    return float(buf.getvalue().split("\t")[1])


def gleu_sampled(sources, hyps, ref_lists, iterations=500):
    """Corpus GLEU over several references per sentence from the `gleu` package, as JFLEG's
    compute_gleu reports it: the mean over `iterations` draws of one reference per sentence,
    GLEU+'s fixed seeds (`--fix-seed`)."""
    from argparse import Namespace

    from gleu.corpus_main import corpus_main
    from gleu.count import set_tokenization

    set_tokenization("word")
    n_refs = len(ref_lists[0])
    assert all(len(rs) == n_refs for rs in ref_lists)
    with tempfile.TemporaryDirectory() as d:
        def write(name, lines):
            path = os.path.join(d, name)
            with open(path, "w") as f:
                f.write("".join(l + "\n" for l in lines))
            return path

        refs = [write(f"ref{k}", [rs[k] for rs in ref_lists]) for k in range(n_refs)]
        args = Namespace(
            n=4, source_path=write("src", sources), ref_path_list=refs,
            hyp_path_list=[write("hyp", hyps)], iter=iterations, digit=8, proc=1, token="word",
            max=False, verbose=False, fix_seed=True,
        )
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            corpus_main(args)
    return float(buf.getvalue().split("\t")[1])


def gleu_entry(name, s, h, r):
    ours = jfleg_gleu(s, h, r)
    pkg = gleu_package(s, h, r)
    assert abs(ours - pkg) < 1e-4, (name, ours, pkg)
    return {"name": name, "sources": s, "hypotheses": h, "references": r, "gleu": pkg}


def gleu_corpora():
    s, h, r = (list(x) for x in zip(*GEC_TRIPLES))
    out = [gleu_entry("gec triples", s, h, r), gleu_entry("gec sources as hypotheses", s, s, r)]
    out.append(gleu_entry("gec references as hypotheses", s, r, r))
    for i in range(0, len(GEC_TRIPLES), 3):
        out.append(gleu_entry(f"gec triples {i}-{i + 2}", s[i : i + 3], h[i : i + 3], r[i : i + 3]))
    return out


def edit_spans(src, tgt):
    s, t = src.split(), tgt.split()
    out, start = [], None
    for tag, i1, i2, j1, j2 in rapidfuzz.distance.Levenshtein.opcodes(s, t):
        if tag == "equal":
            if start is not None:
                out.append((start[0], i1, tuple(t[start[1] : j1])))
                start = None
        elif start is None:
            start = (i1, j1)
    if start is not None:
        out.append((start[0], len(s), tuple(t[start[1] :])))
    return out


def edit_counts(s, h, r):
    tp = fp = fn = 0
    for src, hyp, ref in zip(s, h, r):
        he = collections.Counter(edit_spans(src, hyp))
        re_ = collections.Counter(edit_spans(src, ref))
        t = sum((he & re_).values())
        tp, fp, fn = tp + t, fp + sum(he.values()) - t, fn + sum(re_.values()) - t
    p = tp / (tp + fp) if fp else 1.0
    rc = tp / (tp + fn) if fn else 1.0
    f = (1.25 * p * rc) / (0.25 * p + rc) if p + rc else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": 100 * p, "recall": 100 * rc, "f05": 100 * f}


def edit_counts_best_reference(s, h, ref_lists):
    """Edit counts with several references: per sentence, the reference ERRANT's compare picks
    (highest running F0.5 rounded to 4 decimals as its computeFScore returns it, then more TP,
    fewer FP, fewer FN; the first of equals)."""

    def f05(tp, fp, fn):
        p = tp / (tp + fp) if fp else 1.0
        r = tp / (tp + fn) if fn else 1.0
        return (1.25 * p * r) / (0.25 * p + r) if p + r else 0.0

    tp = fp = fn = 0
    for src, hyp, refs in zip(s, h, ref_lists):
        best = None
        for ref in refs:
            c = edit_counts([src], [hyp], [ref])
            key = (round(f05(tp + c["tp"], fp + c["fp"], fn + c["fn"]), 4), c["tp"], -c["fp"], -c["fn"])
            if best is None or key > best[0]:
                best = (key, c)
        c = best[1]
        tp, fp, fn = tp + c["tp"], fp + c["fp"], fn + c["fn"]
    return {"tp": tp, "fp": fp, "fn": fn, "f05": 100 * f05(tp, fp, fn)}


def edit_corpora():
    s, h, r = (list(x) for x in zip(*GEC_TRIPLES))
    out = [{"name": "gec triples", "sources": s, "hypotheses": h, "references": r} | edit_counts(s, h, r)]
    for i, t in enumerate(GEC_TRIPLES):
        out.append({"name": f"triple {i}", "sources": [t[0]], "hypotheses": [t[1]], "references": [t[2]]} | edit_counts([t[0]], [t[1]], [t[2]]))
    return out


# ---------------------------------------------------------------------------------------------
# Normalisers

WHISPER_SENTENCES = [
    "Mr. Smith won't pay $20 million!",
    "Um, the colour [noise] is (maybe) grey.",
    "Café ñandú Ærøskøbing straße Łódź þorn",
    "I've got twenty-one apples and one hundred and five oranges.",
    "It's the twenty first century, not the nineteenth.",
    "one oh one, double five, triple zero",
    "He paid two dollars and seven cents",
    "three point one four one five nine",
    "minus forty degrees and plus five",
    "fifty percent, ten per cent, six per hour",
    "one and a half hours, two and a half million",
    "the 1960s and the 70s; 274th and 32nd",
    "$0.05 and £3 and €10.50 and ¢7",
    "1,000,000 people at 3.5% interest",
    "ninety nine bottles, ninety ninth bottle, the nineties",
    "a thousand and one nights, one thousand and first",
    "five hundred thousand, two million three hundred thousand",
    "zero zero seven, oh seven, o seven",
    "twelve twelve, twelfth night, the fifth element, sixes and sevens",
    "Let's go, y'all! We're gonna wanna gotta",
    "She'd been there; he's gone; they'd done it; it's got to be",
    "Dr. Jones and Prof. X met Gen. Lee and Sen. Smith, Jr. and St. John",
    "Hmm, uh, mm, mhm, umm, uhh",
    "The centre of the theatre; organise, realise; travelling",
    "192.168.0.1 and version 2.0.1",
    "pounds of flour, a euro, the dollar",
    "eleven hundred, nineteen eighty four, twenty twenty",
    "one million dollars, a million, millions, billionth",
    "point five, point",
    "  multiple   spaces\tand\nnewlines  ",
    "ALL CAPS TEXT WITH NUMBERS ONE TWO THREE",
    "'quoted' and \"double quoted\" and ‘curly’ “quotes”",
    "rock 'n' roll, ma'am, ain't, i'ma, imma",
    "thirty first of december, the forty second street",
    "sixty five percent of ninety",
    "1st, 2nd, 3rd, 4th and 5 th",
    "two thousand and twenty three",
    "negative one point five",
    "he scored 3 - 2",
    "three quarters, a half, one third",
    "the year two thousand",
    "hundreds of thousands",
    "one two three four five six seven eight nine ten",
    "the first second third fourth",
    "an 18-year-old and a 5-year plan",
    "",
    "...",
    "½ and ² and ٣",
]


def normalizer_cases(data):
    sentences = list(WHISPER_SENTENCES)
    # A slice of real, cased and punctuated Whisper output.
    path = os.path.join(data, "synth", "asr-whisper.dev.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in list(f)[:60]:
                rec = json.loads(line)
                sentences.append(rec["output"])
                sentences.extend(rec["input"][:2])
    return {
        "whisper-en": [[s, WHISPER_EN(s)] for s in sentences],
        "whisper-basic": [[s, WHISPER_BASIC(s)] for s in sentences],
        "h2t": [[s, h2t(s)] for s in sentences],
    }


# ---------------------------------------------------------------------------------------------
# Shared data sets: aggregates only


def load_records(path):
    with open(path) as f:
        text = f.read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def set_scores(records, norm):
    f = NORMALIZERS[norm]
    one, orc, cer, comp_err = [0] * 4, [0] * 4, [0] * 4, 0
    utt_one, utt_orc = [], []
    for rec in records:
        ref = words(f(rec["output"]))
        hyps = [words(f(h)) for h in rec["input"]]
        per = [wer_counts(ref, h) for h in hyps]
        best = min(range(len(per)), key=lambda k: (errors(per[k]), k))
        one, orc = add(one, per[0]), add(orc, per[best])
        cer = add(cer, cer_counts(ref, hyps[0]))
        vocab = {w for h in hyps for w in h.split()}
        comp_err += sum(1 for w in ref.split() if w not in vocab)
        n = len(ref.split())
        if n:
            utt_one.append(errors(per[0]) / n)
            utt_orc.append(errors(per[best]) / n)
    return {
        "reference_words": one[0] + one[1] + one[2],
        "one_best": one,
        "one_best_utt": 100 * sum(utt_one) / len(utt_one),
        "oracle": orc,
        "oracle_utt": 100 * sum(utt_orc) / len(utt_orc),
        "compositional_errors": comp_err,
        "cer_one_best": cer,
        "utterances": len(utt_one),
    }


def hyporadise(data):
    out = {}
    d = os.path.join(data, "hyporadise", "test")
    for name in sorted(os.listdir(d)):
        recs = load_records(os.path.join(d, name))
        out[name] = {"records": len(recs)} | {
            norm: set_scores(recs, norm) for norm in ("none@1", "h2t@1", "whisper-en@1")
        }
        print(f"  {name}: {len(recs)} records", file=sys.stderr)
    return out


def paired_ar(recs, best, refs):
    """sacrebleu's --paired-ar (10,000 trials, seed 12345) of the 1-best against a system that
    takes the second hypothesis on every fifth record: BLEU, chrF and TER p-values."""
    from sacrebleu.metrics import BLEU, CHRF, TER
    from sacrebleu.significance import PairedTest

    other = [r["input"][1] if i % 5 == 0 else r["input"][0] for i, r in enumerate(recs)]
    metrics = {"bleu": BLEU(references=[refs]), "chrf": CHRF(references=[refs]), "ter": TER(references=[refs])}
    _, results = PairedTest([("1-best", best), ("fifth", other)], metrics, references=None, test_type="ar", n_samples=10000)()
    # sacrebleu keys its results by the scores' names.
    named = {"bleu": "BLEU", "chrf": "chrF2", "ter": "TER"}
    return {"system": "the second hypothesis on every fifth record (0, 5, 10, ...), else the first"} | {
        name: {"score": results[key][1].score, "p": results[key][1].p_value} for name, key in named.items()}


def synth(data):
    out = {}
    d = os.path.join(data, "synth")
    for name, norm in [
        ("asr-whisper.dev.jsonl", "whisper-en@1"),
        ("asr-sphinx.dev.jsonl", "whisper-en@1"),
        ("ocr.dev.jsonl", "none@1"),
        ("mt.dev.jsonl", "none@1"),
        ("gec.dev.jsonl", "none@1"),
    ]:
        recs = load_records(os.path.join(d, name))
        e = {"records": len(recs), "normalizer": norm} | set_scores(recs, norm)
        best = [r["input"][0] for r in recs]
        refs = [r["output"] for r in recs]
        if name.startswith("mt"):
            e["bleu"] = sacrebleu.corpus_bleu(best, [refs]).score
            e["chrf"] = sacrebleu.corpus_chrf(best, [refs]).score
            e["ter"] = corpus_ter(best, refs)
            e["paired_ar"] = paired_ar(recs, best, refs)
        if name.startswith("gec"):
            e["gleu"] = gleu_package(best, best, refs)
        out[name] = e
    return out


# ---------------------------------------------------------------------------------------------
# Record files for the command-line tests, and what `neko eval` must report on them

ASR_RECORDS = [
    # (id, source, hypotheses, reference, prediction)
    ("a1", "whisper", ["the cat sat on a mat", "the cat sat on the mat"], "The cat sat on the mat.", "the cat sat on the mat"),
    ("a2", "whisper", ["i have twenty one apples", "i have 21 apples"], "I have 21 apples.", "i have twenty one apples"),
    ("a3", "whisper", ["he said hello", "he said hallo"], "", "he said hello"),
    ("a4", "whisper", ["", "uh"], "", ""),
    ("a5", "sphinx", ["naive cafe uber", "naïve café über"], "naïve café über", "naive café über"),
    ("a6", "sphinx", ["what", "what what"], "...", "what"),
    ("a7", "sphinx", ["mister jones wont go", "mr jones won't go"], "Mr. Jones won't go!", "mr jones will not go"),
    ("a8", "sphinx", ["the colour grey", "the color gray"], "the color gray", "the colour grey"),
    ("a9", "sphinx", [" ".join(["word"] * 150 + ["long"] * 150), " ".join(["word"] * 300)], " ".join(["word"] * 149 + ["long"] * 151), " ".join(["word"] * 150 + ["long"] * 150)),
    ("a10", "whisper", ["it is nice", "it's nice"], "It's nice.", None),
]


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False))
            f.write("\n")


def asr_expected(recs, norm):
    f = NORMALIZERS[norm]
    groups = collections.defaultdict(list)
    for r in recs:
        groups["all"].append(r)
        groups["source=" + r[1]].append(r)
    out = {}
    for g, rs in groups.items():
        one, orc, corr, cer1, cerc, comp = [0] * 4, [0] * 4, [0] * 4, [0] * 4, [0] * 4, 0
        u1, uc = [], []
        for _id, _src, hyps, ref, pred in rs:
            ref_n = words(f(ref))
            hyps_n = [words(f(h)) for h in hyps]
            pred_n = words(f(pred if pred is not None else hyps[0]))
            per = [wer_counts(ref_n, h) for h in hyps_n]
            best = min(range(len(per)), key=lambda k: (errors(per[k]), k))
            c = wer_counts(ref_n, pred_n)
            one, orc, corr = add(one, per[0]), add(orc, per[best]), add(corr, c)
            cer1, cerc = add(cer1, cer_counts(ref_n, hyps_n[0])), add(cerc, cer_counts(ref_n, pred_n))
            vocab = {w for h in hyps_n for w in h.split()}
            comp += sum(1 for w in ref_n.split() if w not in vocab)
            n = len(ref_n.split())
            if n:
                u1.append(errors(per[0]) / n)
                uc.append(errors(c) / n)
        out[g] = {
            "records": len(rs),
            "one_best": one,
            "oracle": orc,
            "corrected": corr,
            "cer_one_best": cer1,
            "cer_corrected": cerc,
            "compositional_errors": comp,
            "one_best_utt": 100 * sum(u1) / len(u1),
            "corrected_utt": 100 * sum(uc) / len(uc),
            "utterances": len(u1),
        }
    return out


def cli_fixtures(out_dir):
    rec_dir = os.path.join(out_dir, "records")
    os.makedirs(rec_dir, exist_ok=True)
    rows = []
    for i, (rid, src, hyps, ref, pred) in enumerate(ASR_RECORDS):
        row = {"id": rid, "task": "asr", "source": src, "input": hyps, "output": ref}
        if pred is None:
            row["error"] = "generation failed"
        else:
            row["prediction"] = pred
        rows.append(row)
        if i == 3:
            rows.append({"id": "no-ref", "task": "asr", "source": "whisper", "input": ["no reference here"], "prediction": "x"})
        if i == 6:
            rows.append('{"id": "broken", "input": ["not closed"')
    write_jsonl(os.path.join(rec_dir, "asr.jsonl"), rows)
    expected = {"asr.jsonl": {norm: asr_expected(ASR_RECORDS, norm) for norm in ("whisper-en@1", "none@1", "h2t@1")}}
    expected["asr.jsonl"]["unscored"] = ["no-ref", 8]  # the id, and the broken line's record index

    mt = [
        {"id": f"m{i}", "task": "mt", "input": [h, r if i % 3 == 0 else h + " extra"], "output": r, "prediction": r if i % 2 == 0 else h}
        for i, (h, r) in enumerate(MT_PAIRS)
    ]
    write_jsonl(os.path.join(rec_dir, "mt.jsonl"), mt)
    best = [m["input"][0] for m in mt]
    pred = [m["prediction"] for m in mt]
    refs = [m["output"] for m in mt]
    expected["mt.jsonl"] = {
        "bleu_one_best": sacrebleu.corpus_bleu(best, [refs]).score,
        "bleu_corrected": sacrebleu.corpus_bleu(pred, [refs]).score,
        "chrf_one_best": sacrebleu.corpus_chrf(best, [refs]).score,
        "chrf_corrected": sacrebleu.corpus_chrf(pred, [refs]).score,
        "ter_one_best": corpus_ter(best, refs),
        "ter_corrected": corpus_ter(pred, refs),
        "chrf_pp_corrected": sacrebleu.CHRF(word_order=2).corpus_score(pred, [refs]).score,
        # `neko eval --tokenize TOK`: BLEU with sacrebleu's other tokenisers.
        "bleu_corrected_by_tokenizer": {tok: sacrebleu.corpus_bleu(pred, [refs], tokenize=tok).score for tok in ("13a", "intl", "zh", "char", "none")},
        # `neko eval --lowercase`, `--smooth-method`, `--smooth-value`: keyed by the flags given;
        # `--per-record` rows' sentence BLEU under the same.
        "bleu_corrected_by_options": by_options("bleu", pred, refs),
        "sentence_bleu_corrected_by_options": [sentence_by_options("bleu", p, [r]) for p, r in zip(pred, refs)],
        # `neko eval --chrf-*`, the same way.
        "chrf_corrected_by_options": by_options("chrf", pred, refs),
        "sentence_chrf_corrected_by_options": [sentence_by_options("chrf", p, [r]) for p, r in zip(pred, refs)],
        # `neko eval --ter-*`: TER under sacrebleu's options, keyed by the flags given.
        "ter_corrected_by_options": {
            " ".join(f"--ter-{o.replace('_', '-')}" for o in opts): sacrebleu.TER(**{o: True for o in opts}).corpus_score(pred, [refs]).score
            for opts in (("case_sensitive",), ("normalized",), ("no_punct",), ("case_sensitive", "normalized", "no_punct", "asian_support"))
        },
        "one_best": [sum(x) for x in zip(*[wer_counts(r, b) for r, b in zip(refs, best)])],
        "corrected": [sum(x) for x in zip(*[wer_counts(r, p) for r, p in zip(refs, pred)])],
        # `neko eval --per-record`: each record's sentence chrF.
        "sentence_chrf_one_best": [sacrebleu.sentence_chrf(b, [r]).score for b, r in zip(best, refs)],
        "sentence_chrf_corrected": [sacrebleu.sentence_chrf(p, [r]).score for p, r in zip(pred, refs)],
        "sentence_bleu_one_best": [sacrebleu.sentence_bleu(b, [r]).score for b, r in zip(best, refs)],
        "sentence_bleu_corrected": [sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(pred, refs)],
        "sentence_ter_one_best": [sacrebleu.sentence_ter(b, [r]).score for b, r in zip(best, refs)],
        "sentence_ter_corrected": [sacrebleu.sentence_ter(p, [r]).score for p, r in zip(pred, refs)],
    }

    gec = [{"id": f"g{i}", "task": "gec", "input": [s], "output": r, "prediction": h} for i, (s, h, r) in enumerate(GEC_TRIPLES)]
    write_jsonl(os.path.join(rec_dir, "gec.jsonl"), gec)
    s, h, r = (list(x) for x in zip(*GEC_TRIPLES))
    expected["gec.jsonl"] = {"gleu_one_best": gleu_package(s, s, r), "gleu_corrected": gleu_package(s, h, r)} | edit_counts(s, h, r)

    ocr_pairs = [("Thad elrevam about you", "I had a dream about you."), ("Of the sons of Immer", "Of the sons of Immer:"), ("rn", "m")]
    ocr = [{"id": f"o{i}", "task": "ocr", "input": [h], "output": ref} for i, (h, ref) in enumerate(ocr_pairs)]
    write_jsonl(os.path.join(rec_dir, "ocr.jsonl"), ocr)
    expected["ocr.jsonl"] = {
        "one_best": [sum(x) for x in zip(*[wer_counts(ref, h) for h, ref in ocr_pairs])],
        "cer_one_best": [sum(x) for x in zip(*[cer_counts(ref, h) for h, ref in ocr_pairs])],
    }

    expected |= multi_reference_fixtures(rec_dir)

    plain = [{"input": ["hello world"], "output": "hello word"}, {"input": ["good morning"], "output": "good morning"}]
    write_jsonl(os.path.join(rec_dir, "notask.jsonl"), plain)
    expected["notask.jsonl"] = {"one_best": add(wer_counts("hello word", "hello world"), wer_counts("good morning", "good morning"))}
    # MT scores of (sources, hypotheses, references), each with whether higher is better.
    mt_scores = {
        "wer": (corpus_rate(wer_counts), False),
        "cer": (corpus_rate(cer_counts), False),
        "bleu": (lambda _s, h, r: sacrebleu.corpus_bleu(h, [r]).score, True),
        "chrf": (lambda _s, h, r: sacrebleu.corpus_chrf(h, [r]).score, True),
        "ter": (lambda _s, h, r: corpus_ter(h, r), False),
    }
    expected["mt.jsonl"]["bootstrap"] = bootstrap_fixture(mt, mt_scores)
    # Another system's output (`neko eval --against mt-base.jsonl mt.jsonl`): the second
    # hypothesis where the record has one, its 1-best elsewhere.
    base = [m | {"prediction": m["input"][k % 2]} for k, m in enumerate(mt)]
    write_jsonl(os.path.join(rec_dir, "mt-base.jsonl"), base)
    against = {k: v for k, v in mt_scores.items() if k != "cer"}
    expected["mt.jsonl"]["bootstrap_against_base"] = bootstrap_fixture(mt, against, before=[b["prediction"] for b in base])
    expected["mt.jsonl"]["confidence"] = confidence_fixture(mt, {k: (score, None) for k, (score, _) in mt_scores.items()})
    gec_multi = [json.loads(line) for line in open(os.path.join(rec_dir, "gec-multi.jsonl"))]
    expected["gec-multi.jsonl"]["confidence"] = confidence_fixture(gec_multi, {
        "gleu": (lambda s, h, r: gleu_package(s, h, r), gleu_draw_refs([m["output"] for m in gec_multi])),
    })
    expected["gec.jsonl"]["bootstrap"] = bootstrap_fixture(gec, {
        "wer": (corpus_rate(wer_counts), False),
        "gleu": (lambda s, h, r: gleu_package(s, h, r), True),
    })
    return expected


# ---------------------------------------------------------------------------------------------
# Multi-reference sets: BLEU and chrF with three references (sacrebleu), GLEU with two (the
# `gleu` package's sampling under GLEU+'s fixed seeds), edits with ERRANT's choice.

MT_MORE_REFS = [
    ("The cat was sitting on the mat.", "A cat sat on the mat."),
    ("It costs $1,000.50 or so, people say.", "The price is about $1,000.50, they say."),
    ("Don't stop believing.", "Never stop believing!"),
    ("Three or four people came and went quickly.", "3 or 4 people came and quickly left."),
    ("We go over the bridge.", "Over the bridge we go."),
    ("No credit for an empty hypothesis.", "An empty hypothesis earns nothing."),
    ("Nothing.", "Empty."),
    ("\"Quoted\" text and entities.", "Quoted text & entities."),
    ("A very long line " + "with many repeated words " * 39, "A long line " + "with many repeated words " * 40),
    ("東京タワーは高いです。", "東京タワーは背が高い。"),
    ("!!", "..."),
]

GEC_SECOND_REFS = [
    "He goes to school every day .",
    "She has two cats .",
    "I am in agreement with you .",
    "They are going to the park tomorrow .",
    "This information is useful .",
    "We talked about the problem yesterday .",
    "He is taller than I am .",
    "This sentence is already correct .",
    "This sentence is correct too .",
    "In that day certain priests , who desired to do exploits there , were slain .",
    "a the",
    "one two three four five six",
]


def multi_reference_fixtures(rec_dir):
    mt = []
    for i, ((h, r), (r2, r3)) in enumerate(zip(MT_PAIRS, MT_MORE_REFS)):
        mt.append({"id": f"m{i}", "task": "mt", "input": [h, h + " extra"], "output": [r, r2, r3], "prediction": r3 if i % 2 == 0 else h})
    write_jsonl(os.path.join(rec_dir, "mt-multi.jsonl"), mt)
    best = [m["input"][0] for m in mt]
    pred = [m["prediction"] for m in mt]
    streams = [[m["output"][k] for m in mt] for k in range(3)]
    expected = {"mt-multi.jsonl": {
        "bleu_one_best": sacrebleu.corpus_bleu(best, streams).score,
        "bleu_corrected": sacrebleu.corpus_bleu(pred, streams).score,
        "bleu_ref_len": sacrebleu.corpus_bleu(pred, streams).ref_len,
        "chrf_one_best": sacrebleu.corpus_chrf(best, streams).score,
        "chrf_corrected": sacrebleu.corpus_chrf(pred, streams).score,
        "chrf_pp_corrected": sacrebleu.CHRF(word_order=2).corpus_score(pred, streams).score,
        "ter_one_best": sacrebleu.corpus_ter(best, streams).score,
        "ter_corrected": sacrebleu.corpus_ter(pred, streams).score,
        # WER and CER score the first reference.
        "corrected": [sum(x) for x in zip(*[wer_counts(r, p) for r, p in zip(streams[0], pred)])],
    }}

    s, h, r = (list(x) for x in zip(*GEC_TRIPLES))
    refs = [[a, b] for a, b in zip(r, GEC_SECOND_REFS)]
    gec = [{"id": f"g{i}", "task": "gec", "input": [s[i]], "output": refs[i], "prediction": h[i]} for i in range(len(s))]
    write_jsonl(os.path.join(rec_dir, "gec-multi.jsonl"), gec)
    expected["gec-multi.jsonl"] = {
        "gleu_one_best": gleu_sampled(s, s, refs),
        "gleu_corrected": gleu_sampled(s, h, refs),
        "gleu_one_best_first_reference": gleu_package(s, s, r),
        "bootstrap": bootstrap_sampled_gleu(s, h, refs),
    } | edit_counts_best_reference(s, h, refs)
    # The same set as M2: each annotator's reference one whole-sentence edit.
    with open(os.path.join(rec_dir, "gec-multi.m2"), "w") as f:
        for src, rs in zip(s, refs):
            f.write(f"S {src}\n")
            for k, ref in enumerate(rs):
                f.write(f"A 0 {len(src.split())}|||R:X|||{ref}|||REQUIRED|||-NONE-|||{k}\n")
            f.write("\n")
    return expected


def bootstrap_sampled_gleu(s, h, refs, resamples=200, seed=12345):
    """The paired bootstrap of GLEU with several references as neko draws it: resample r takes
    the records of neko's draw r and, for each record, the reference of GLEU+'s draw r mod 500
    at its position."""
    import numpy as np

    def chosen(draw):
        random.seed(draw * 101, version=1)
        return [int(random.random() * len(rs)) for rs in refs]

    deltas = []
    for r in range(resamples):
        idx = bootstrap_draws(seed, r, len(s))
        pick = chosen(r % 500)
        s_, h_, r_ = [s[i] for i in idx], [h[i] for i in idx], [refs[i][pick[i]] for i in idx]
        deltas.append(gleu_package(s_, h_, r_) - gleu_package(s_, s_, r_))
    return {
        "resamples": resamples,
        "seed": seed,
        "delta": gleu_sampled(s, h, refs) - gleu_sampled(s, s, refs),
        "low": float(np.percentile(deltas, 2.5)),
        "high": float(np.percentile(deltas, 97.5)),
        "p_better": sum(d > 0 for d in deltas) / resamples,
    }


# ---------------------------------------------------------------------------------------------

MASK = (1 << 64) - 1


def bootstrap_draws(seed, r, n):
    """neko's resample r of n records (src/eval/bootstrap.rs): SplitMix64, Lemire's mapping."""
    def splitmix64(state):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return state, z ^ (z >> 31)

    _, h = splitmix64(r)
    _, state = splitmix64(seed ^ h)
    out = []
    for _ in range(n):
        state, z = splitmix64(state)
        out.append((z * n) >> 64)
    return out


def bootstrap_fixture(records, metrics, resamples=200, seed=12345, before=None):
    """Paired bootstrap of a record file's predictions against their 1-best (or against
    `before`, another system's texts, as `--against` compares): each metric is
    `(score(sources, hyps, refs), higher_is_better)`, scored on every resample by the reference
    tool, as `neko eval --paired-bs --paired-bs-n 200` reports it."""
    import numpy as np

    src = [m["input"][0] for m in records]
    pred = [m["prediction"] for m in records]
    refs = [m["output"] for m in records]
    before = before or src
    samples = [bootstrap_draws(seed, r, len(records)) for r in range(resamples)]
    out = {"resamples": resamples, "seed": seed, "first_draws": samples[0]}
    for name, (score, higher) in metrics.items():
        def delta(idx):
            s_, b_, p_, r_ = ([xs[i] for i in idx] for xs in (src, before, pred, refs))
            return score(s_, p_, r_) - score(s_, b_, r_)

        deltas = [delta(i) for i in samples]
        out[name] = {
            "delta": delta(range(len(records))),
            "low": float(np.percentile(deltas, 2.5)),
            "high": float(np.percentile(deltas, 97.5)),
            "p_better": sum(d > 0 if higher else d < 0 for d in deltas) / resamples,
        }
    return out


def confidence_fixture(records, metrics, resamples=200, seed=12345):
    """`neko eval --confidence --paired-bs-n 200`: each metric of the 1-best and of the
    predictions scored on neko's resamples by the reference tool, the spread as sacrebleu's
    `--confidence` computes it (`sacrebleu.significance.estimate_ci`). A metric given as
    `(score, refs_of)` scores resample r with `refs_of(r, idx)` as its references."""
    import numpy as np
    from sacrebleu.significance import estimate_ci

    src = [m["input"][0] for m in records]
    sides = {"one_best": src, "corrected": [m["prediction"] for m in records]}
    refs = [m["output"] for m in records]
    samples = [bootstrap_draws(seed, r, len(records)) for r in range(resamples)]
    out = {"resamples": resamples, "seed": seed}
    for name, (score, refs_of) in metrics.items():
        out[name] = {}
        for side, texts in sides.items():
            scores = []
            for r, idx in enumerate(samples):
                s_, t_ = [src[i] for i in idx], [texts[i] for i in idx]
                r_ = refs_of(r, idx) if refs_of else [refs[i] for i in idx]
                scores.append(score(s_, t_, r_))
            mean, ci = estimate_ci(np.array(scores))
            out[name][side] = {"mean": float(mean), "ci": float(ci)}
    return out


def gleu_draw_refs(refs):
    """Resample r's references for GLEU with several: GLEU+'s draw r mod 500, per record."""
    def refs_of(r, idx):
        random.seed((r % 500) * 101, version=1)
        pick = [int(random.random() * len(rs)) for rs in refs]
        return [refs[i][pick[i]] for i in idx]

    return refs_of


def corpus_rate(counts_of):
    def rate(_sources, hyps, refs):
        c = [sum(x) for x in zip(*[counts_of(r, h) for r, h in zip(refs, hyps)])]
        return 100.0 * errors(c) / (c[0] + c[1] + c[2])

    return rate


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data", help="the shared data folder")
    ap.add_argument("--out", default="tests/fixtures/metrics")
    ap.add_argument("--fuzz", type=int, default=0, help="write only wer.json with this many random cases")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(20261125)
    tools = versions()

    if args.fuzz:
        dump(os.path.join(args.out, "wer.json"), {"tools": tools, "cases": wer_cases(rng, args.fuzz, args.fuzz // 100)})
        return

    cases = wer_cases(rng, 300, 6)
    dump(os.path.join(args.out, "wer.json"), {"tools": tools, "cases": cases, "corpora": corpus_cases(cases)})
    dump(os.path.join(args.out, "bleu.json"), {
        "tools": tools, "corpora": bleu_corpora(), "ter_cases": ter_cases(random.Random(20261128)), "tokenizers": tokenizer_cases(), "ter_tokenizers": ter_tokenizer_cases(),
    })
    dump(os.path.join(args.out, "gleu.json"), {"tools": tools, "corpora": gleu_corpora(), "edits": edit_corpora()})
    dump(os.path.join(args.out, "normalizers.json"), {"tools": tools} | normalizer_cases(args.data))
    dump(os.path.join(args.out, "cli.json"), {"tools": tools, "files": cli_fixtures(args.out)})
    print("scoring shared data sets ...", file=sys.stderr)
    dump(
        os.path.join(args.out, "shared.json"),
        {"tools": tools, "hyporadise": hyporadise(args.data), "synth": synth(args.data)},
    )


if __name__ == "__main__":
    main()
