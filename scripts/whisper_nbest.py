#!/usr/bin/env python3
"""Whisper N-best for neko: recognise audio files and write one JSONL record per utterance, its
hypotheses best first, ready for `neko correct --task asr`.

Whisper's usual front ends (openai-whisper, faster-whisper's transcribe) return one text per
segment; neko corrects from the N-best. This runs Whisper through faster-whisper's CTranslate2
model with beam search returning every beam, merges hypotheses that differ only in casing and
punctuation (as the guard and the ASR scores compare words), and keeps up to --n.

  python3 scripts/whisper_nbest.py --model large-v3 audio/*.wav > nbest.jsonl
  python3 scripts/whisper_nbest.py --model /models/whisper-base-ct2 audio/ \\
      | neko correct --task asr - | jq -r '.prediction // ""'

--model is what faster_whisper.WhisperModel takes: a size name (fetched from the hub once) or a
local CTranslate2 folder (model.bin, config.json, tokenizer.json, vocabulary.json). A directory
argument is searched for audio files (wav, flac, mp3, m4a, ogg, opus, webm), sorted.

Records: {"id", "task": "asr", "source": "whisper:MODEL", "input": [...], "scores": [...]}; the
scores are CTranslate2's length-normalised log-probabilities. Audio of up to 30 s is one record
whose id is the path as given; longer audio is cut where Whisper's own transcription puts its
segment boundaries, one record per segment (id PATH#K, K from 1, with "start" and "end" in
seconds). A file that cannot be read or recognised still gets a line: no hypotheses and an
"error" object naming it, which neko turns into an error line of its own; the exit code is then
2. Progress goes to stderr.

Needs: pip install faster-whisper (1.2.1 was used; it brings ctranslate2, tokenizers, av).
"""
import argparse
import json
import math
import os
import sys

AUDIO = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".webm")
RATE = 16000
WINDOW_S = 30


def word_key(text):
    """Words by their letters and digits, lowercased: how neko's guard and scores compare."""
    keys = ("".join(c for c in w.lower() if c.isalnum()) for w in text.split())
    return tuple(k for k in keys if k)


def merge(beams, n):
    """Up to `n` (text, score) beams, best first, dropping empty ones and those whose words
    equal an earlier one's. When every beam is empty (silence), the best one stays: an empty
    1-best, which neko passes on as an empty prediction, not an empty list it must refuse.

    >>> merge([("Hi there.", -0.1), ("hi there", -0.2), ("", -0.3), ("Hi, dear.", -0.4)], 5)
    [('Hi there.', -0.1), ('Hi, dear.', -0.4)]
    >>> merge([("a", -1.0), ("b", -2.0), ("c", -3.0)], 2)
    [('a', -1.0), ('b', -2.0)]
    >>> merge([("", -0.2), (" ", -0.5)], 5)
    [('', -0.2)]
    """
    out, seen = [], set()
    for text, score in beams:
        key = word_key(text)
        if key and key not in seen:
            seen.add(key)
            out.append((text, score))
    if not out and beams:
        out = [("", beams[0][1])]
    return out[:n]


def record(rid, model_name, beams, span=None):
    """One neko record.

    >>> record("a.wav", "base", [("Hi.", -0.12345)])
    {'id': 'a.wav', 'task': 'asr', 'source': 'whisper:base', 'input': ['Hi.'], 'scores': [-0.1235]}
    >>> record("b.wav#2", "base", [("Yes.", -0.5)], (30.0, 41.25))["end"]
    41.25
    >>> record("c.wav", "base", [("Hm.", float("-inf"))])["scores"]
    [None]
    """
    # A score that is not finite is written null: json.dumps would write -Infinity, which is
    # not JSON, and the whole line would be unreadable.
    rec = {"id": rid, "task": "asr", "source": f"whisper:{model_name}",
           "input": [t for t, _ in beams],
           "scores": [round(s, 4) if math.isfinite(s) else None for _, s in beams]}
    if span is not None:
        rec["start"], rec["end"] = round(span[0], 2), round(span[1], 2)
    return rec


def audio_files(paths):
    """The files to recognise, in the order given; directories searched and sorted."""
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in sorted(os.walk(p)):
                for name in sorted(names):
                    if name.lower().endswith(AUDIO):
                        yield os.path.join(root, name)
        else:
            yield p


class Recogniser:
    def __init__(self, args):
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.whisper = WhisperModel(args.model, device=args.device,
                                    compute_type=args.compute_type, cpu_threads=args.threads)
        tok = Tokenizer(self.whisper.hf_tokenizer, self.whisper.model.is_multilingual,
                        task="transcribe",
                        language=args.language if self.whisper.model.is_multilingual else None)
        self.tokenizer = tok
        self.prompt = list(tok.sot_sequence) + [tok.no_timestamps]
        self.args = args

    def nbest(self, audio):
        """The merged N-best of up to 30 s of 16 kHz audio."""
        import ctranslate2
        import numpy as np

        frames = self.whisper.feature_extractor.nb_max_frames
        feats = self.whisper.feature_extractor(audio)[:, :frames]
        feats = np.pad(feats, ((0, 0), (0, frames - feats.shape[1])))
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None]))
        beam = max(self.args.beam, self.args.n)
        res = self.whisper.model.generate(view, [self.prompt], beam_size=beam,
                                          num_hypotheses=beam, return_scores=True)[0]
        beams = [(self.tokenizer.decode([i for i in ids if i < self.tokenizer.eot]).strip(),
                  float(score)) for ids, score in zip(res.sequences_ids, res.scores)]
        return merge(beams, self.args.n)

    def spans(self, audio):
        """Where to cut audio longer than Whisper's window: its own segment boundaries."""
        if len(audio) <= WINDOW_S * RATE:
            return [None]
        segments, _ = self.whisper.transcribe(audio, language=self.args.language, beam_size=1)
        return [(s.start, s.end) for s in segments]

    def records(self, path, model_name):
        from faster_whisper.audio import decode_audio

        audio = decode_audio(path, sampling_rate=RATE)
        spans = self.spans(audio)
        if not spans:
            # Long audio in which Whisper found no speech: one record, an empty 1-best, so
            # the file still has its line.
            yield {"id": path, "task": "asr", "source": f"whisper:{model_name}", "input": [""]}
            return
        for k, span in enumerate(spans, 1):
            if span is None:
                yield record(path, model_name, self.nbest(audio))
                continue
            piece = audio[int(span[0] * RATE):int(span[1] * RATE)]
            yield record(f"{path}#{k}", model_name, self.nbest(piece), span)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="audio files or directories")
    ap.add_argument("--model", default="large-v3",
                    help="faster-whisper model: a size name or a CTranslate2 folder")
    ap.add_argument("--n", type=int, default=5, help="most hypotheses per record (5)")
    ap.add_argument("--beam", type=int, default=10, help="beam size; every beam is returned (10)")
    ap.add_argument("--language", default="en", help="spoken language of multilingual models")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--compute-type", default="int8", help="CTranslate2 compute type (int8)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: CTranslate2's default)")
    args = ap.parse_args()
    if args.n < 1 or args.beam < 1:
        ap.error("--n and --beam must be at least 1")
    # Before the model loads (a large-v3 download, perhaps): nothing to recognise is said.
    files = list(audio_files(args.paths))
    if not files:
        ap.error(f"no audio file ({', '.join(AUDIO)}) in {' '.join(args.paths)}")

    try:
        recogniser = Recogniser(args)
    except ImportError as e:
        print(f"whisper_nbest: {e}: it needs faster-whisper (pip install faster-whisper)",
              file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # a model that does not load: an error, not a crash
        print(f"whisper_nbest: --model {args.model}: cannot load it: {e}", file=sys.stderr)
        sys.exit(2)
    model_name = os.path.basename(os.path.normpath(args.model))
    failed = 0
    for i, path in enumerate(files, 1):
        print(f"whisper_nbest: {i}/{len(files)} {path}", file=sys.stderr)
        try:
            for rec in recogniser.records(path, model_name):
                print(json.dumps(rec, ensure_ascii=False), flush=True)
        except Exception as e:  # one bad file must not cost the others their lines
            failed += 1
            print(json.dumps({"id": path, "task": "asr", "input": [],
                              "error": {"file": path, "message": str(e)}}), flush=True)
            print(f"whisper_nbest: {path}: {e}", file=sys.stderr)
    if failed:
        print(f"whisper_nbest: {failed} of {len(files)} files failed", file=sys.stderr)
    sys.exit(2 if failed else 0)


if __name__ == "__main__":
    main()
