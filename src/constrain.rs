//! Decoding constrained to the hypotheses' words (`neko correct --constrain words`): the answer
//! may only be made of words (whitespace-separated, as written, punctuation included) that occur
//! in some hypothesis of the record — the space the compositional oracle searches. A small
//! model then cannot invent words; it can only choose, order and drop the recogniser's.
//!
//! Per step only a short list of candidate tokens is looked at: the tokens of the hypotheses as
//! the tokenizer splits them (whole, after a space, after a newline, and word by word), plus the
//! tokens that end an answer; special tokens (`<s>`, `<|im_start|>`) typed in a hypothesis are
//! none of them. A candidate is allowed when the text it makes still consists of hypothesis
//! words, the last one possibly unfinished but one that candidates can finish (a prefix that
//! no candidate continues would end the answer mid-word); an answer may end only after a whole
//! word. A hypothesis word counts as written and as the tokenizer gives it back (a normalizer
//! may compose `é`).
//!
//! The text is checked as bytes, not characters: byte-level tokenizers split a character such
//! as "é" or "東" across tokens, and the token holding its first byte alone is no text at all.

use std::collections::HashSet;

use tokenizers::Tokenizer;

/// The bytes each token id adds when it follows other text, and the tokens that end an
/// answer.
pub struct Pieces {
    bytes: Vec<Vec<u8>>,
    /// EOS, and the tokens that start with a stop string or begin one (spaces before it
    /// aside): an answer that a model ends with a newline rather than EOS must be able to end
    /// so, and a stop string of several tokens (`</answer>`) to begin.
    enders: Vec<u32>,
    /// The enders that only begin a stop string (`No` of `Note:`): a hypothesis may hold them
    /// as words, so they stay candidates, and an answer that holds one as a word has begun no
    /// stop string.
    stop_prefixes: HashSet<u32>,
    /// The stop strings, and the tokens that can go on with one begun by an ender (`answer`
    /// or `>` after `</`): a stop string begun must be finished, or the answer would end in
    /// its first piece, glued to the last word.
    stops: Vec<Vec<u8>>,
    stop_parts: Vec<u32>,
    /// Special added tokens: never written as hypothesis text.
    special: HashSet<u32>,
}

impl Pieces {
    /// Decodes every id of `tokenizer`'s vocabulary once. A token is decoded after an anchor
    /// token and the anchor's text removed, so decoders that strip a leading space from the
    /// first token (SentencePiece's) still show the space a token carries mid-text. A token
    /// that is part of a character decodes to U+FFFD; its bytes come from the token itself.
    /// `eos` and the tokens starting with one of `stops` end answers.
    pub fn new(tokenizer: &Tokenizer, eos: &[u32], stops: &[String]) -> Self {
        let n = tokenizer.get_vocab_size(true) as u32;
        let anchor = tokenizer
            .encode("a", false)
            .ok()
            .and_then(|e| e.get_ids().first().copied());
        let decode = |ids: &[u32]| tokenizer.decode(ids, false).unwrap_or_default();
        let head = anchor.map(|a| (a, decode(&[a])));
        let bytes: Vec<Vec<u8>> = (0..n)
            .map(|id| {
                let text = match &head {
                    Some((a, head)) => decode(&[*a, id])
                        .strip_prefix(head.as_str())
                        .map(str::to_string)
                        .unwrap_or_else(|| decode(&[id])),
                    None => decode(&[id]),
                };
                if !text.contains('\u{FFFD}') {
                    return text.into_bytes();
                }
                tokenizer
                    .id_to_token(id)
                    .and_then(|t| token_bytes(&t))
                    .unwrap_or_else(|| text.into_bytes())
            })
            .collect();
        let mut enders = eos.to_vec();
        let mut stop_prefixes = HashSet::new();
        for (id, piece) in bytes.iter().enumerate() {
            let spaces = piece.iter().take_while(|&&b| b == b' ').count();
            let rest = &piece[spaces..];
            let stops = (stops.iter().map(|s| s.as_bytes())).filter(|s| !s.is_empty());
            let (mut whole, mut begins) = (false, false);
            for s in stops.filter(|_| !rest.is_empty()) {
                whole |= rest.starts_with(s);
                begins |= s.starts_with(rest);
            }
            if (whole || begins) && !enders.contains(&(id as u32)) {
                enders.push(id as u32);
                if !whole {
                    stop_prefixes.insert(id as u32);
                }
            }
        }
        let stops: Vec<Vec<u8>> = (stops.iter())
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let stop_parts = (0..n)
            .filter(|&id| {
                let piece = &bytes[id as usize];
                !piece.is_empty()
                    && (stops.iter()).any(|s| (1..s.len()).any(|k| goes_on(&s[k..], piece)))
            })
            .collect();
        let special = (tokenizer.get_added_tokens_decoder().into_iter())
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        Pieces {
            bytes,
            enders,
            stop_prefixes,
            stops,
            stop_parts,
            special,
        }
    }

    /// What is left of a stop string that the answer `tokens` began (with an ender) and has not
    /// finished, if it did; and whether what began it is word text (no whitespace in it), which
    /// a hypothesis word may also be (`No` of `Note:`; not the `\n` of `\n\n`).
    fn stop_left(&self, tokens: &[u32]) -> Option<(&[u8], bool)> {
        // From the first ender that began one: only stop pieces follow it (some are enders
        // too, `h` of `hyp`), and an earlier ender may have been a word (`No` of `Note:`).
        let mut starts = (0..tokens.len()).filter(|&i| self.enders.contains(&tokens[i]));
        starts.find_map(|from| {
            let begun: Vec<u8> = (tokens[from..].iter())
                .flat_map(|&t| self.get(t))
                .copied()
                .collect();
            let begun = &begun[begun.iter().take_while(|&&b| b == b' ').count()..];
            let wordlike = !begun.iter().any(u8::is_ascii_whitespace);
            (self.stops.iter())
                .find(|s| s.len() > begun.len() && s.starts_with(begun))
                .map(|s| (&s[begun.len()..], wordlike))
        })
    }

    fn get(&self, id: u32) -> &[u8] {
        self.bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Whether `piece` goes on with the rest `left` of a stop string: it is a start of it, or
/// finishes it (and may write more after).
fn goes_on(left: &[u8], piece: &[u8]) -> bool {
    !piece.is_empty() && (left.starts_with(piece) || piece.starts_with(left))
}

/// The bytes a vocabulary entry stands for: `<0xHH>` (SentencePiece's byte fallback) or a
/// byte-level BPE token (GPT-2's byte-to-character map, used by Llama 3, SmolLM, Qwen).
fn token_bytes(token: &str) -> Option<Vec<u8>> {
    if let Some(hex) = token.strip_prefix("<0x").and_then(|t| t.strip_suffix('>')) {
        return u8::from_str_radix(hex, 16).ok().map(|b| vec![b]);
    }
    token.chars().map(byte_of_char).collect()
}

/// The byte GPT-2's byte-level alphabet writes as `c`: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes are shifted to U+0100.. in order.
fn byte_of_char(c: char) -> Option<u8> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let c = c as u32;
    if c < 256 && printable(c) {
        return Some(c as u8);
    }
    let shifted = c.checked_sub(256)? as usize;
    (0u32..256)
        .filter(|&b| !printable(b))
        .nth(shifted)
        .map(|b| b as u8)
}

/// `bytes` split at whitespace: the words (invalid UTF-8, such as a character's first bytes,
/// belongs to its word) and whether the last word is open (no whitespace after it).
fn split_words(bytes: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    let mut at = 0;
    let mut open = false;
    for chunk in bytes.utf8_chunks() {
        for (i, c) in chunk.valid().char_indices() {
            if c.is_whitespace() {
                if let Some(s) = start.take() {
                    words.push(&bytes[s..at + i]);
                }
                open = false;
            } else {
                start.get_or_insert(at + i);
                open = true;
            }
        }
        at += chunk.valid().len();
        if !chunk.invalid().is_empty() {
            start.get_or_insert(at);
            open = true;
        }
        at += chunk.invalid().len();
    }
    if let Some(s) = start {
        words.push(&bytes[s..]);
    }
    (words, open)
}

/// `bytes` without the whitespace it starts with.
fn trim_start(bytes: &[u8]) -> &[u8] {
    let valid = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    };
    &bytes[valid.len() - valid.trim_start().len()..]
}

/// The words of `hypotheses`, as written and as `tokenizer` gives them back (decoding their
/// encoding: a normalizer's NFC, say). Special tokens are decoded too: skipped, `the<s>cat`
/// would come back as a new word `thecat` the model would be let write.
fn hypothesis_words(hypotheses: &[String], tokenizer: &Tokenizer) -> HashSet<Vec<u8>> {
    let round_trip = |h: &String| {
        let ids = tokenizer.encode(h.as_str(), false).ok()?;
        tokenizer.decode(ids.get_ids(), false).ok()
    };
    let texts: Vec<String> = (hypotheses.iter())
        .flat_map(|h| [Some(h.clone()), round_trip(h)])
        .flatten()
        .collect();
    (texts.iter())
        .flat_map(|h| h.split_whitespace())
        .map(|w| w.as_bytes().to_vec())
        .collect()
}

/// One record's constraint: its words, the prefixes an answer may stop in, and the candidate
/// tokens.
#[derive(Debug)]
pub struct WordConstraint {
    words: HashSet<Vec<u8>>,
    /// The byte prefixes of words (the words included) that the candidates can finish.
    live: HashSet<Vec<u8>>,
    candidates: Vec<u32>,
}

impl WordConstraint {
    /// The constraint for `hypotheses`.
    pub fn new(hypotheses: &[String], tokenizer: &Tokenizer, pieces: &Pieces) -> Self {
        let mut candidates = HashSet::new();
        let newline = (tokenizer.encode("\n", false).ok())
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default();
        let mut add_ids = |text: &str| {
            if let Ok(enc) = tokenizer.encode(text, false) {
                candidates.extend(enc.get_ids().iter().copied());
            }
            // After a newline (the prompt's last token) a SentencePiece tokenizer writes a
            // word without the "▁" its encoding of the word alone adds.
            if let Ok(enc) = tokenizer.encode(format!("\n{text}"), false) {
                let ids = enc.get_ids();
                candidates.extend(ids.strip_prefix(newline.as_slice()).unwrap_or(ids));
            }
        };
        for h in hypotheses {
            add_ids(h);
            add_ids(&format!(" {h}"));
            for w in h.split_whitespace() {
                add_ids(w);
                add_ids(&format!(" {w}"));
            }
        }
        let mut candidates: Vec<u32> = (candidates.into_iter())
            .filter(|id| !pieces.special.contains(id))
            .filter(|id| !pieces.enders.contains(id) || pieces.stop_prefixes.contains(id))
            .collect();
        candidates.sort_unstable();
        let words = hypothesis_words(hypotheses, tokenizer);
        let live = live_prefixes(&words, &candidates, pieces);
        WordConstraint {
            words,
            live,
            candidates,
        }
    }

    /// Whether `piece` may follow `text` (the answer so far, which is itself allowed).
    fn allows(&self, text: &[u8], piece: &[u8]) -> bool {
        if piece.is_empty() {
            return false;
        }
        // Only the unfinished last word of `text` and what `piece` adds can break the rule.
        let (words, open) = split_words(text);
        let last = match words.last() {
            Some(w) if open => w.to_vec(),
            _ => Vec::new(),
        };
        let tail = [last.as_slice(), piece].concat();
        fits(&tail, &self.words, &self.live)
    }

    /// Whether the answer may end after `text`: it is empty of open words or ends in a whole
    /// hypothesis word.
    fn may_end(&self, text: &[u8]) -> bool {
        match split_words(text) {
            (words, true) => words.last().is_some_and(|w| self.words.contains(*w)),
            (_, false) => true,
        }
    }

    /// The best allowed next token after `tokens` given the row's `logits` over the vocabulary.
    /// When no candidate is allowed the answer ends: with the first ender, or with `None` when
    /// the model has none (no EOS and no token that starts a stop string).
    pub fn choose(&self, pieces: &Pieces, tokens: &[u32], logits: &[f32]) -> Option<u32> {
        let score = |id: u32| {
            logits
                .get(id as usize)
                .copied()
                .unwrap_or(f32::NEG_INFINITY)
        };
        let text: Vec<u8> = tokens
            .iter()
            .flat_map(|&t| pieces.get(t))
            .copied()
            .collect();
        // An answer starts at its first word: leading whitespace is not a word boundary issue.
        let text = trim_start(&text);
        let mut best: Option<(u32, f32)> = None;
        let mut consider = |id: u32| {
            let s = score(id);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((id, s));
            }
        };
        if let Some((left, wordlike)) = pieces.stop_left(tokens) {
            // A stop string begun goes on to its end, which stops the decoding; unless what
            // began it is also hypothesis text (`No` of `Note:`), which may go on as words.
            (pieces.stop_parts.iter().copied())
                .filter(|&id| goes_on(left, pieces.get(id)))
                .for_each(&mut consider);
            if !(wordlike && fits(text, &self.words, &self.live)) {
                return best
                    .map(|(id, _)| id)
                    .or_else(|| pieces.enders.first().copied());
            }
        }
        if self.may_end(text) && !text.is_empty() {
            pieces.enders.iter().for_each(|&id| consider(id));
        }
        for &id in &self.candidates {
            let piece = pieces.get(id);
            let piece = if text.is_empty() {
                trim_start(piece)
            } else {
                piece
            };
            if self.allows(text, piece) {
                consider(id);
            }
        }
        best.map(|(id, _)| id)
            .or_else(|| pieces.enders.first().copied())
    }
}

/// Whether `text` (an unfinished word and what follows it) consists of `words`, its last word,
/// when no whitespace ends it, one of the `open` prefixes.
fn fits(text: &[u8], words: &HashSet<Vec<u8>>, open: &HashSet<Vec<u8>>) -> bool {
    let (parts, is_open) = split_words(text);
    (parts.iter().enumerate()).all(|(i, w)| match i + 1 == parts.len() && is_open {
        true => open.contains(*w),
        false => words.contains(*w),
    })
}

/// The prefixes of `words` from which the `candidates` can reach a whole word: the words, and
/// every prefix that some candidate takes to a whole word or to a live prefix (a fixpoint,
/// longest prefixes first, as a candidate mostly lengthens the word it continues).
fn live_prefixes(
    words: &HashSet<Vec<u8>>,
    candidates: &[u32],
    pieces: &Pieces,
) -> HashSet<Vec<u8>> {
    let mut open: Vec<&[u8]> = (words.iter())
        .flat_map(|w| (1..w.len()).map(|n| &w[..n]))
        .filter(|p| !words.contains(*p))
        .collect();
    open.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    open.dedup();
    // A prefix that is no word is continued by a piece that does not start a new word.
    let continuing: Vec<&[u8]> = (candidates.iter())
        .map(|&id| pieces.get(id))
        .filter(|p| !p.is_empty() && trim_start(p).len() == p.len())
        .collect();
    let mut live: HashSet<Vec<u8>> = words.clone();
    loop {
        let before = live.len();
        for p in &open {
            if live.contains(*p) {
                continue;
            }
            if (continuing.iter()).any(|piece| fits(&[*p, piece].concat(), words, &live)) {
                live.insert(p.to_vec());
            }
        }
        if live.len() == before {
            return live;
        }
    }
}

impl WordConstraint {
    /// `text` without a last word that no hypothesis has (one cut short by the token limit).
    pub fn drop_open_word<'a>(&self, text: &'a str) -> &'a str {
        let Some(last) = text.split_whitespace().last() else {
            return text;
        };
        if self.words.contains(last.as_bytes()) {
            return text;
        }
        text[..text.len() - last.len()].trim_end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A constraint of these hypotheses' words whose every prefix is live (no tokenizer).
    fn constraint(hyps: &[&str]) -> WordConstraint {
        let words: HashSet<Vec<u8>> = (hyps.iter())
            .flat_map(|h| h.split_whitespace())
            .map(|w| w.as_bytes().to_vec())
            .collect();
        let live = (words.iter())
            .flat_map(|w| (1..=w.len()).map(|n| w[..n].to_vec()))
            .collect();
        WordConstraint {
            words,
            live,
            candidates: Vec::new(),
        }
    }

    fn tokenizer(path: &str) -> Tokenizer {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        Tokenizer::from_file(dir.join(path)).unwrap()
    }

    /// Logits that rank `ids` first, in order.
    fn preferring(vocab: usize, ids: &[u32]) -> Vec<f32> {
        let mut logits = vec![0.0f32; vocab];
        for (k, &id) in ids.iter().enumerate() {
            logits[id as usize] = 10.0 - k as f32;
        }
        logits
    }

    /// "response" is `re|s|ponse` and "se" one token, so after an `s` no candidate continues:
    /// that `s` is refused, and the answer is never left mid-word.
    #[test]
    fn a_prefix_no_candidate_finishes_is_refused() {
        let tok = tokenizer("tiny-llama/tokenizer.json");
        let pieces = Pieces::new(&tok, &[2], &["\n".to_string()]);
        let c = WordConstraint::new(&["is se response".to_string()], &tok, &pieces);
        let id = |t: &str| tok.token_to_id(t).unwrap();
        assert!(!c.live.contains(b"s".as_slice()));
        assert!(c.live.contains(b"re".as_slice()) && c.live.contains(b"res".as_slice()));
        let vocab = tok.get_vocab_size(true);
        // Preferring `s`, then `se`: the answer starts with `se`.
        let first = c.choose(&pieces, &[], &preferring(vocab, &[id("s"), id("se")]));
        assert_eq!(first, Some(id("se")));
        // Within "response", `s` after `re` is the way on.
        let next = c.choose(&pieces, &[id("re")], &preferring(vocab, &[id("s")]));
        assert_eq!(next, Some(id("s")));
    }

    /// Special tokens typed in a hypothesis are no candidates: `<s>` is never fed mid-answer.
    #[test]
    fn special_tokens_in_a_hypothesis_are_not_written() {
        let tok = tokenizer("tiny-llama/tokenizer.json");
        let pieces = Pieces::new(&tok, &[2], &["\n".to_string()]);
        let c = WordConstraint::new(&["<s> the".to_string()], &tok, &pieces);
        assert!(!c.candidates.contains(&1), "{:?}", c.candidates);
        let vocab = tok.get_vocab_size(true);
        assert_ne!(c.choose(&pieces, &[], &preferring(vocab, &[1])), Some(1));
    }

    /// A special token inside a hypothesis word makes no new word: decoded without it,
    /// `the<s>cat` came back as `thecat`, which the model was then let write.
    #[test]
    fn a_special_token_inside_a_word_makes_no_new_word() {
        let tok = tokenizer("tiny-llama/tokenizer.json");
        let words = hypothesis_words(&["the<s>cat".to_string()], &tok);
        assert!(words.contains(b"the<s>cat".as_slice()), "{words:?}");
        assert!(!words.contains(b"thecat".as_slice()), "{words:?}");
    }

    /// A stop string of several tokens (`</answer>`) may begin where an answer may end.
    #[test]
    fn a_stop_string_of_several_tokens_can_begin() {
        let tok = tokenizer("tiny-llama/tokenizer.json");
        let lt = tok.token_to_id("<").unwrap();
        let pieces = Pieces::new(&tok, &[2], &["</answer>".to_string()]);
        assert!(pieces.enders.contains(&lt));
        let c = WordConstraint::new(&["the cat".to_string()], &tok, &pieces);
        let ids = |t: &str| tok.encode(t, false).unwrap().get_ids().to_vec();
        let vocab = tok.get_vocab_size(true);
        assert_eq!(
            c.choose(&pieces, &ids("the cat"), &preferring(vocab, &[lt])),
            Some(lt)
        );
        assert_ne!(
            c.choose(&pieces, &ids("the ca"), &preferring(vocab, &[lt])),
            Some(lt)
        );
    }

    /// A SentencePiece tokenizer writes a word after the prompt's newline without the "▁" its
    /// encoding alone adds: that bare token is a candidate (scripts/make_sp_tokenizer.py made
    /// the fixture).
    #[test]
    fn the_bare_first_word_of_a_sentencepiece_answer_is_a_candidate() {
        let tok = tokenizer("tokenizers/sp-byte-fallback.json");
        let pieces = Pieces::new(&tok, &[2], &["\n".to_string()]);
        let c = WordConstraint::new(&["the cat".to_string()], &tok, &pieces);
        let after_newline = tok.encode("\nthe cat", false).unwrap();
        let bare = after_newline.get_ids()[after_newline.get_ids().len() - 2];
        assert_eq!(tok.id_to_token(bare).as_deref(), Some("the"));
        assert!(c.candidates.contains(&bare), "{:?}", c.candidates);
        let vocab = tok.get_vocab_size(true);
        assert_eq!(
            c.choose(&pieces, &[], &preferring(vocab, &[bare])),
            Some(bare)
        );
    }

    /// A tokenizer whose normalizer composes characters (NFC) writes "café" composed; a
    /// hypothesis that has it decomposed still allows it.
    #[test]
    fn a_word_as_the_tokenizer_normalizes_it_is_allowed() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-llama/tokenizer.json");
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        json["normalizer"] = serde_json::json!({"type": "NFC"});
        let tok: Tokenizer = json.to_string().parse().unwrap();
        let pieces = Pieces::new(&tok, &[2], &["\n".to_string()]);
        let hyps = ["un cafe\u{301}".to_string()];
        let c = WordConstraint::new(&hyps, &tok, &pieces);
        assert!(c.words.contains("café".as_bytes()));
        assert!(c.may_end("un café".as_bytes()));
        assert_eq!(c.drop_open_word("un café"), "un café");
    }

    #[test]
    fn only_hypothesis_words_and_their_prefixes_are_allowed() {
        let c = constraint(&["the cat sat", "a cat sad."]);
        let allows = |text: &str, piece: &str| c.allows(text.as_bytes(), piece.as_bytes());
        assert!(allows("", "the"));
        assert!(allows("", "th"));
        assert!(allows("the", " cat"));
        assert!(allows("the c", "at"));
        assert!(allows("the cat", " sad."));
        assert!(!allows("the", "re"), "`there` is no hypothesis word");
        assert!(!allows("the", " dog"));
        assert!(!allows("the ca", "ts "), "`cats` is finished by the space");
        assert!(allows("the cat ", "sa"));
        assert!(!allows("the", ""));
    }

    #[test]
    fn a_character_may_be_split_across_tokens() {
        let c = constraint(&["un café", "東京"]);
        let e_acute = "é".as_bytes();
        assert!(c.allows(b"un caf", &e_acute[..1]));
        assert!(c.allows(
            &[b"un caf".as_slice(), &e_acute[..1]].concat(),
            &e_acute[1..]
        ));
        assert!(!c.allows(b"un caf", &"è".as_bytes()[..2]));
        assert!(!c.may_end(&[b"un caf".as_slice(), &e_acute[..1]].concat()));
        assert!(c.allows(b"", &"東".as_bytes()[..2]));
        assert!(!c.allows(b"", &"京".as_bytes()[..2]));
    }

    /// A hypothesis word that begins a stop string (`No` of `Note:`, `#5` of `###`) can be
    /// written and can end the answer: its tokens were taken for the stop's start alone, and
    /// the answer was forced on into the stop (and cut empty).
    #[test]
    fn a_word_that_begins_a_stop_string_can_be_written() {
        let tokenizer = tokenizer("tiny-llama/tokenizer.json");
        let vocab = tokenizer.get_vocab_size(true);
        for (stop, hyp) in [("Note:", "No"), ("###", "#5"), ("Human:", "Human rights")] {
            let pieces = Pieces::new(&tokenizer, &[2], &[stop.to_string()]);
            let hyps = vec![hyp.to_string()];
            let c = WordConstraint::new(&hyps, &tokenizer, &pieces);
            let ids = (tokenizer.encode(hyp, false).unwrap().get_ids()).to_vec();
            for (step, &want) in ids.iter().chain([2].iter()).enumerate() {
                let mut logits = vec![0.0f32; vocab];
                logits[want as usize] = 1.0;
                let got = c.choose(&pieces, &ids[..step], &logits);
                assert_eq!(got, Some(want), "{stop:?} {hyp:?} step {step}");
            }
        }
        // A stop that begins with whitespace (`\n\n`) begun is finished: its `\n` is no word.
        let pieces = Pieces::new(&tokenizer, &[2], &["\n\n".to_string()]);
        let c = WordConstraint::new(&["No".to_string()], &tokenizer, &pieces);
        let ids = |t: &str| tokenizer.encode(t, false).unwrap().get_ids().to_vec();
        let newline = *ids("\n").last().unwrap();
        let mut begun = ids("No");
        begun.push(newline);
        let mut logits = vec![0.0f32; vocab];
        logits[*ids("No").last().unwrap() as usize] = 1.0;
        let next = c.choose(&pieces, &begun, &logits).unwrap();
        assert!(pieces.get(next).starts_with(b"\n"), "{next}");
        // A stop begun outside the hypotheses' words is still finished.
        let pieces = Pieces::new(&tokenizer, &[2], &["</answer>".to_string()]);
        let c = WordConstraint::new(&["the cat".to_string()], &tokenizer, &pieces);
        let ids = |t: &str| tokenizer.encode(t, false).unwrap().get_ids().to_vec();
        let begun = ids("the cat</");
        let mut logits = vec![0.0f32; vocab];
        logits[2] = 1.0;
        let next = c.choose(&pieces, &begun, &logits).unwrap();
        let piece = String::from_utf8_lossy(pieces.get(next)).into_owned();
        assert!(next != 2 && "/answer>".contains(&piece), "{piece:?}");
    }

    /// With a byte-level tokenizer that has no token for "é" or "東", every token of a
    /// hypothesis is allowed in its turn, so the constrained answer can be the hypothesis.
    #[test]
    fn byte_tokens_of_a_hypothesis_are_chosen_in_turn() {
        let tokenizer = tokenizer("tiny-llama/tokenizer.json");
        let ender = 0;
        let pieces = Pieces::new(&tokenizer, &[ender], &[]);
        let hyps = vec!["un café à 東京".to_string()];
        let c = WordConstraint::new(&hyps, &tokenizer, &pieces);
        let ids = tokenizer
            .encode(hyps[0].as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert!(
            ids.len() > hyps[0].chars().count(),
            "the fixture splits characters: {ids:?}"
        );
        let vocab = tokenizer.get_vocab_size(true);
        for (step, &want) in ids.iter().chain([ender].iter()).enumerate() {
            let mut logits = vec![0.0f32; vocab];
            logits[want as usize] = 1.0;
            assert_eq!(
                c.choose(&pieces, &ids[..step], &logits),
                Some(want),
                "step {step}"
            );
        }
        let answer = tokenizer.decode(&ids, false).unwrap();
        assert_eq!(answer.trim(), hyps[0]);
    }

    /// With no EOS and no token that starts a stop string, an answer that allows nothing more
    /// ends (`None`) instead of writing token 0.
    #[test]
    fn without_enders_a_finished_answer_ends() {
        let tok = tokenizer("tiny-llama/tokenizer.json");
        let pieces = Pieces::new(&tok, &[], &[]);
        assert!(pieces.enders.is_empty());
        // Hypotheses without a word: nothing may be written, not even at the start.
        let c = WordConstraint::new(&[String::new()], &tok, &pieces);
        let vocab = tok.get_vocab_size(true);
        assert_eq!(c.choose(&pieces, &[], &preferring(vocab, &[0])), None);
        let with_eos = Pieces::new(&tok, &[2], &[]);
        assert_eq!(c.choose(&with_eos, &[], &preferring(vocab, &[0])), Some(2));
    }

    /// A model that ends its answer with the stop string (a newline) rather than EOS may end
    /// so, after a whole word only.
    #[test]
    fn a_stop_string_token_ends_an_answer() {
        let tokenizer = tokenizer("tiny-llama/tokenizer.json");
        let newline = tokenizer.encode("\n", false).unwrap().get_ids()[0];
        let pieces = Pieces::new(&tokenizer, &[2], &["\n".to_string()]);
        assert!(pieces.enders.contains(&2) && pieces.enders.contains(&newline));
        let c = WordConstraint::new(&["the cat".to_string()], &tokenizer, &pieces);
        let mut logits = vec![0.0f32; tokenizer.get_vocab_size(true)];
        logits[newline as usize] = 1.0;
        let ids = |t: &str| tokenizer.encode(t, false).unwrap().get_ids().to_vec();
        assert_eq!(c.choose(&pieces, &ids("the cat"), &logits), Some(newline));
        assert_ne!(c.choose(&pieces, &ids("the ca"), &logits), Some(newline));
        let eos_only = Pieces::new(&tokenizer, &[2], &[]);
        assert_ne!(c.choose(&eos_only, &ids("the cat"), &logits), Some(newline));
    }

    #[test]
    fn byte_level_characters_map_back_to_bytes() {
        assert_eq!(token_bytes("Ġcaf"), Some(b" caf".to_vec()));
        assert_eq!(token_bytes("Ã"), Some(vec![0xC3]));
        assert_eq!(token_bytes("<0xE6>"), Some(vec![0xE6]));
        assert_eq!(byte_of_char('Ċ'), Some(b'\n'));
        assert_eq!(byte_of_char('Ā'), Some(0));
        assert_eq!(byte_of_char('ł'), Some(0xA0));
        assert_eq!(byte_of_char('Ń'), Some(0xAD));
        assert_eq!(byte_of_char('東'), None);
    }

    #[test]
    fn a_word_cut_short_is_dropped() {
        let c = constraint(&["the cat sat"]);
        assert_eq!(c.drop_open_word("the cat sa"), "the cat");
        assert_eq!(c.drop_open_word("the cat sat"), "the cat sat");
        assert_eq!(c.drop_open_word(""), "");
    }

    #[test]
    fn answers_end_only_after_whole_words() {
        let c = constraint(&["the cat sat"]);
        assert!(c.may_end(b"the cat"));
        assert!(!c.may_end(b"the ca"));
        assert!(c.may_end(b"the cat "));
    }
}
