"""Writes tests/fixtures/tokenizers/sp-byte-fallback.json: a small Llama-2-style SentencePiece
BPE tokenizer (Metaspace "▁", byte fallback, <s>/</s> specials) for the constrained-decoding
tests, where a word after a newline is written without its "▁".

    pip install tokenizers && python3 scripts/make_sp_tokenizer.py tests/fixtures/tokenizers/sp-byte-fallback.json
"""
import json, sys
from tokenizers import Tokenizer, models, normalizers, decoders, trainers, pre_tokenizers
text = ["the cat sat on the mat", "a cat sad", "The cat sat", "Hello there", "The dog ran", "hello world the cat",
        "there is a theory", "category cats catalog"] * 50
tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
tr = trainers.BpeTrainer(vocab_size=252, min_frequency=2, special_tokens=[])
tok.train_from_iterator(text, tr)
j = json.loads(tok.to_str())
trained = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
vocab = {"<unk>":0, "<s>":1, "</s>":2, "<pad>":3}
for b in range(256): vocab["<0x%02X>"%b] = 4+b
for t,_ in trained:
    if t not in vocab and len(vocab) < 512: vocab[t] = len(vocab)
while len(vocab) < 512: vocab["<extra%d>"%len(vocab)] = len(vocab)
j["model"]["vocab"] = vocab
merges = j["model"]["merges"]
def ok(m):
    a,b = m if isinstance(m, list) else m.split(" ")
    return a in vocab and b in vocab and (a+b) in vocab
j["model"]["merges"] = [m for m in merges if ok(m)]
j["added_tokens"] = [{"id":i,"content":c,"single_word":False,"lstrip":False,"rstrip":False,"normalized":False,"special":True} for c,i in [("<unk>",0),("<s>",1),("</s>",2),("<pad>",3)]]
j["pre_tokenizer"] = None
j["post_processor"] = None
j["decoder"] = {"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}
json.dump(j, open(sys.argv[1],"w"), ensure_ascii=False)
t2 = Tokenizer.from_file(sys.argv[1])
for s in ["a", "the cat sat", " the", "the", "東京", "\nThe cat", "café"]:
    e = t2.encode(s, add_special_tokens=False)
    print(repr(s), e.tokens, repr(t2.decode(e.ids, skip_special_tokens=False)))
print(t2.get_vocab_size(True))
