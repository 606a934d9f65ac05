//! Decoding constrained to the hypotheses' words (`neko correct --constrain words`): the answer
//! may only be made of words (whitespace-separated, as written, punctuation included) that occur
//! in some hypothesis of the record — the space the compositional oracle searches. A small
//! model then cannot invent words; it can only choose, order and drop the recogniser's.
//!
//! Per step only a short list of candidate tokens is looked at: the tokens of the hypotheses as
//! the tokenizer splits them (whole, after a space, and word by word), plus the tokens that end
//! an answer. A candidate is allowed when the text it makes still consists of hypothesis words,
//! the last one possibly unfinished; an answer may end only after a whole word.

use std::collections::HashSet;

use tokenizers::Tokenizer;

/// The text each token id adds when it follows other text.
pub struct Pieces(Vec<String>);

impl Pieces {
    /// Decodes every id of `tokenizer`'s vocabulary once. A token is decoded after an anchor
    /// token and the anchor's text removed, so decoders that strip a leading space from the
    /// first token (SentencePiece's) still show the space a token carries mid-text.
    pub fn new(tokenizer: &Tokenizer) -> Self {
        let n = tokenizer.get_vocab_size(true) as u32;
        let anchor = tokenizer
            .encode("a", false)
            .ok()
            .and_then(|e| e.get_ids().first().copied());
        let decode = |ids: &[u32]| tokenizer.decode(ids, false).unwrap_or_default();
        let head = anchor.map(|a| (a, decode(&[a])));
        let pieces = (0..n)
            .map(|id| match &head {
                Some((a, head)) => decode(&[*a, id])
                    .strip_prefix(head.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| decode(&[id])),
                None => decode(&[id]),
            })
            .collect();
        Pieces(pieces)
    }

    fn get(&self, id: u32) -> &str {
        self.0.get(id as usize).map(String::as_str).unwrap_or("")
    }
}

/// One record's constraint: its words, their prefixes, and the candidate tokens.
#[derive(Debug)]
pub struct WordConstraint {
    words: HashSet<String>,
    prefixes: HashSet<String>,
    candidates: Vec<u32>,
    /// Tokens that end the answer (EOS, and tokens holding a stop string).
    enders: Vec<u32>,
}

impl WordConstraint {
    /// The constraint for `hypotheses`; `enders` are the ids that end an answer.
    pub fn new(hypotheses: &[String], tokenizer: &Tokenizer, enders: &[u32]) -> Self {
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
        Self::with_candidates(hypotheses, candidates, enders)
    }

    /// The constraint with its word and prefix sets, looking only at `candidates`.
    fn with_candidates(hypotheses: &[String], candidates: Vec<u32>, enders: &[u32]) -> Self {
        let words: HashSet<String> = hypotheses
            .iter()
            .flat_map(|h| h.split_whitespace())
            .map(str::to_string)
            .collect();
        let prefixes = words
            .iter()
            .flat_map(|w| w.char_indices().skip(1).map(|(i, _)| &w[..i]))
            .chain(words.iter().map(String::as_str))
            .map(str::to_string)
            .collect();
        WordConstraint {
            words,
            prefixes,
            candidates,
            enders: enders.to_vec(),
        }
    }

    /// Whether `piece` may follow `text` (the answer so far, which is itself allowed).
    fn allows(&self, text: &str, piece: &str) -> bool {
        if piece.is_empty() {
            return false;
        }
        // Only the unfinished last word of `text` and what `piece` adds can break the rule.
        let tail_start = text.rfind(char::is_whitespace).map_or(0, |i| {
            i + text[i..].chars().next().map_or(1, char::len_utf8)
        });
        let tail = format!("{}{piece}", &text[tail_start..]);
        let open = !tail.ends_with(char::is_whitespace);
        let mut parts = tail.split_whitespace().peekable();
        while let Some(w) = parts.next() {
            let last = parts.peek().is_none();
            let ok = if last && open {
                self.prefixes.contains(w)
            } else {
                self.words.contains(w)
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// Whether the answer may end after `text`: it is empty of open words or ends in a whole
    /// hypothesis word.
    fn may_end(&self, text: &str) -> bool {
        match text.split_whitespace().last() {
            None => true,
            Some(w) => text.ends_with(char::is_whitespace) || self.words.contains(w),
        }
    }

    /// The best allowed next token after `tokens` given the row's `logits` over the vocabulary.
    /// When no candidate is allowed the answer ends (with the first ender).
    pub fn choose(&self, pieces: &Pieces, tokens: &[u32], logits: &[f32]) -> u32 {
        let text: String = tokens.iter().map(|&t| pieces.get(t)).collect();
        // An answer starts at its first word: leading whitespace is not a word boundary issue.
        let text = text.trim_start();
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
            self.enders.iter().for_each(|&id| consider(id));
        }
        for &id in &self.candidates {
            if self.enders.contains(&id) {
                continue;
            }
            let piece = pieces.get(id);
            let piece = if text.is_empty() {
                piece.trim_start()
            } else {
                piece
            };
            if self.allows(text, piece) {
                consider(id);
            }
        }
        best.map(|(id, _)| id)
            .or_else(|| self.enders.first().copied())
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
        WordConstraint::with_candidates(&hyps, Vec::new(), &[0])
    }

    #[test]
    fn only_hypothesis_words_and_their_prefixes_are_allowed() {
        let c = constraint(&["the cat sat", "a cat sad."]);
        assert!(c.allows("", "the"));
        assert!(c.allows("", "th"));
        assert!(c.allows("the", " cat"));
        assert!(c.allows("the c", "at"));
        assert!(c.allows("the cat", " sad."));
        assert!(!c.allows("the", "re"), "`there` is no hypothesis word");
        assert!(!c.allows("the", " dog"));
        assert!(
            !c.allows("the ca", "ts "),
            "`cats` is finished by the space"
        );
        assert!(c.allows("the cat ", "sa"));
        assert!(!c.allows("the", ""));
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
        assert!(c.may_end("the cat"));
        assert!(!c.may_end("the ca"));
        assert!(c.may_end("the cat "));
    }
}
