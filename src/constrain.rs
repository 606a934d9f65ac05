//! Decoding constrained to the hypotheses' words (`neko correct --constrain words`): the answer
//! may only be made of words (whitespace-separated, as written, punctuation included) that occur
//! in some hypothesis of the record — the space the compositional oracle searches. A small
//! model then cannot invent words; it can only choose, order and drop the recogniser's.
//!
//! Per step only a short list of candidate tokens is looked at: the tokens of the hypotheses as
//! the tokenizer splits them (whole, after a space, and word by word), plus the tokens that end
//! an answer. A candidate is allowed when the text it makes still consists of hypothesis words,
//! the last one possibly unfinished; an answer may end only after a whole word.
//!
//! The text is checked as bytes, not characters: byte-level tokenizers split a character such
//! as "é" or "東" across tokens, and the token holding its first byte alone is no text at all.

use std::collections::HashSet;

use tokenizers::Tokenizer;

/// The bytes each token id adds when it follows other text, and the tokens that end an
/// answer.
pub struct Pieces {
    bytes: Vec<Vec<u8>>,
    /// EOS, and the tokens that start with a stop string (spaces before it aside): an answer
    /// that a model ends with a newline rather than EOS must be able to end so.
    enders: Vec<u32>,
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
        for (id, piece) in bytes.iter().enumerate() {
            let spaces = piece.iter().take_while(|&&b| b == b' ').count();
            let stops_here = stops
                .iter()
                .any(|s| !s.is_empty() && piece[spaces..].starts_with(s.as_bytes()));
            if stops_here && !enders.contains(&(id as u32)) {
                enders.push(id as u32);
            }
        }
        Pieces { bytes, enders }
    }

    fn get(&self, id: u32) -> &[u8] {
        self.bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
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

/// One record's constraint: its words, their prefixes, and the candidate tokens.
#[derive(Debug)]
pub struct WordConstraint {
    words: HashSet<Vec<u8>>,
    /// Every byte prefix of every word, the words included.
    prefixes: HashSet<Vec<u8>>,
    candidates: Vec<u32>,
}

impl WordConstraint {
    /// The constraint for `hypotheses`.
    pub fn new(hypotheses: &[String], tokenizer: &Tokenizer) -> Self {
        let mut candidates = HashSet::new();
        let mut add_ids = |text: &str| {
            if let Ok(enc) = tokenizer.encode(text, false) {
                candidates.extend(enc.get_ids().iter().copied());
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
        let mut candidates: Vec<u32> = candidates.into_iter().collect();
        candidates.sort_unstable();
        Self::with_candidates(hypotheses, candidates)
    }

    /// The constraint with its word and prefix sets, looking only at `candidates`.
    fn with_candidates(hypotheses: &[String], candidates: Vec<u32>) -> Self {
        let words: HashSet<Vec<u8>> = hypotheses
            .iter()
            .flat_map(|h| h.split_whitespace())
            .map(|w| w.as_bytes().to_vec())
            .collect();
        let prefixes = words
            .iter()
            .flat_map(|w| (1..=w.len()).map(|n| w[..n].to_vec()))
            .collect();
        WordConstraint {
            words,
            prefixes,
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
        let (parts, open) = split_words(&tail);
        parts.iter().enumerate().all(|(i, w)| {
            if i + 1 == parts.len() && open {
                self.prefixes.contains(*w)
            } else {
                self.words.contains(*w)
            }
        })
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
    /// When no candidate is allowed the answer ends (with the first ender).
    pub fn choose(&self, pieces: &Pieces, tokens: &[u32], logits: &[f32]) -> u32 {
        let text: Vec<u8> = tokens
            .iter()
            .flat_map(|&t| pieces.get(t))
            .copied()
            .collect();
        // An answer starts at its first word: leading whitespace is not a word boundary issue.
        let text = trim_start(&text);
        let score = |id: u32| {
            logits
                .get(id as usize)
                .copied()
                .unwrap_or(f32::NEG_INFINITY)
        };
        let mut best: Option<(u32, f32)> = None;
        let mut consider = |id: u32| {
            let s = score(id);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((id, s));
            }
        };
        if self.may_end(text) && !text.is_empty() {
            pieces.enders.iter().for_each(|&id| consider(id));
        }
        for &id in &self.candidates {
            if pieces.enders.contains(&id) {
                continue;
            }
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
            .unwrap_or(0)
    }
}

/// `text` without a last word that no hypothesis has (one cut short by the token limit).
pub fn drop_open_word<'a>(text: &'a str, hypotheses: &[String]) -> &'a str {
    let Some(last) = text.split_whitespace().last() else {
        return text;
    };
    if hypotheses
        .iter()
        .any(|h| h.split_whitespace().any(|w| w == last))
    {
        return text;
    }
    text[..text.len() - last.len()].trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraint(hyps: &[&str]) -> WordConstraint {
        let hyps: Vec<String> = hyps.iter().map(|h| h.to_string()).collect();
        WordConstraint::with_candidates(&hyps, Vec::new())
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

    /// With a byte-level tokenizer that has no token for "é" or "東", every token of a
    /// hypothesis is allowed in its turn, so the constrained answer can be the hypothesis.
    #[test]
    fn byte_tokens_of_a_hypothesis_are_chosen_in_turn() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama");
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let ender = 0;
        let pieces = Pieces::new(&tokenizer, &[ender], &[]);
        let hyps = vec!["un café à 東京".to_string()];
        let c = WordConstraint::new(&hyps, &tokenizer);
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
                want,
                "step {step}"
            );
        }
        let answer = tokenizer.decode(&ids, false).unwrap();
        assert_eq!(answer.trim(), hyps[0]);
    }

    /// A model that ends its answer with the stop string (a newline) rather than EOS may end
    /// so, after a whole word only.
    #[test]
    fn a_stop_string_token_ends_an_answer() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama");
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let newline = tokenizer.encode("\n", false).unwrap().get_ids()[0];
        let pieces = Pieces::new(&tokenizer, &[2], &["\n".to_string()]);
        assert!(pieces.enders.contains(&2) && pieces.enders.contains(&newline));
        let c = WordConstraint::new(&["the cat".to_string()], &tokenizer);
        let mut logits = vec![0.0f32; tokenizer.get_vocab_size(true)];
        logits[newline as usize] = 1.0;
        let ids = |t: &str| tokenizer.encode(t, false).unwrap().get_ids().to_vec();
        assert_eq!(c.choose(&pieces, &ids("the cat"), &logits), newline);
        assert_ne!(c.choose(&pieces, &ids("the ca"), &logits), newline);
        let eos_only = Pieces::new(&tokenizer, &[2], &[]);
        assert_ne!(c.choose(&eos_only, &ids("the cat"), &logits), newline);
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
        let h = vec!["the cat sat".to_string()];
        assert_eq!(drop_open_word("the cat sa", &h), "the cat");
        assert_eq!(drop_open_word("the cat sat", &h), "the cat sat");
        assert_eq!(drop_open_word("", &h), "");
    }

    #[test]
    fn answers_end_only_after_whole_words() {
        let c = constraint(&["the cat sat"]);
        assert!(c.may_end(b"the cat"));
        assert!(!c.may_end(b"the ca"));
        assert!(c.may_end(b"the cat "));
    }
}
