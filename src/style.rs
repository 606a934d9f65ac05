//! The hypotheses' writing style, kept in an ASR answer. Recognisers and benchmarks write
//! transcripts in a convention: Whisper and Canary case and punctuate, HyPoradise and Kaldi
//! recipes write lower case without punctuation, LibriSpeech's originals are upper case. A
//! corrector trained on cased text rewrites a lower-case N-best in its own style; those
//! formatting edits are not corrections, and they spend the guard's edit budget so that real
//! word corrections fall back. With `--style follow` an ASR answer follows the hypotheses:
//! lower (upper) case when every cased letter of every hypothesis is lower (upper) case, no
//! punctuation when no hypothesis has any (apostrophes are part of words). It is not the
//! default: the formatting budget was also what kept neko-smol's out-of-domain edits, mostly
//! wrong, from HyPoradise's lower-case N-bests.
//!
//! GEC sources written in tokens (`This are a sentence .`, as the M2 corpora, CoNLL-2014 and
//! BEA-2019, write them) get answers in tokens too, in either mode: the model writes text
//! (`This is a sentence.`), and the guard and the corpora's scorers compare tokens, so an
//! untokenised answer would spend its edit budget, and its score, on spacing ([`tokenise`]).

use crate::Task;

/// Whether answers follow the hypotheses' style (`--style`). The default keeps the model's
/// text: following the style helped neko-smol on the dev splits but let through the edits it
/// gets wrong out of domain (docs/training.md, "The style").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StyleMode {
    /// ASR answers take the hypotheses' casing and punctuation convention.
    Follow,
    /// Answers as the model writes them.
    #[default]
    Model,
}

impl StyleMode {
    /// The name in signatures: `follow` or `model`.
    pub fn name(self) -> &'static str {
        match self {
            StyleMode::Follow => "follow",
            StyleMode::Model => "model",
        }
    }

    /// `answer` in the style `task`'s answers take under this mode: for ASR with `follow`, the
    /// hypotheses' ([`Style::of`]); else as written. OCR, MT, ST and GEC correct casing and
    /// punctuation themselves, so their answers keep what the model wrote, except that a GEC
    /// answer to a source in tokens is tokenised as it is ([`tokenise`]).
    pub fn apply(self, task: Task, hypotheses: &[String], answer: &str) -> String {
        match (self, task, hypotheses.first()) {
            (StyleMode::Follow, Task::Asr, _) => Style::of(hypotheses).apply(answer),
            (_, Task::Gec, Some(source)) if tokenised(source) => tokenise(answer, source),
            _ => answer.to_string(),
        }
    }
}

/// The case every cased letter of the hypotheses is in, if they agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Lower,
    Upper,
}

/// A transcript convention, read from the hypotheses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    case: Option<Case>,
    /// No hypothesis has punctuation: answers are written without it too.
    bare: bool,
    /// The apostrophe the hypotheses write (`'` when they write none): a bare answer's take it.
    apostrophe: char,
    /// Whether some hypothesis writes one at a word's edge (`boys'`): else an answer's (a
    /// quotation mark, mostly) go with the punctuation.
    edge_apostrophes: bool,
}

impl Style {
    /// The convention all `hypotheses` share; empty hypotheses say nothing, so a record
    /// without text imposes nothing.
    pub fn of(hypotheses: &[String]) -> Style {
        let chars = || hypotheses.iter().flat_map(|h| h.chars());
        let (upper, lower) = (
            chars().any(char::is_uppercase),
            chars().any(char::is_lowercase),
        );
        let case = match (upper, lower) {
            (false, true) => Some(Case::Lower),
            (true, false) => Some(Case::Upper),
            _ => None,
        };
        let text = hypotheses.iter().any(|h| !h.trim().is_empty());
        Style {
            case,
            bare: text && !chars().any(is_punctuation),
            apostrophe: chars().find(|&c| is_apostrophe(c)).unwrap_or('\''),
            edge_apostrophes: (hypotheses.iter().flat_map(|h| h.split_whitespace()))
                .any(|t| t.starts_with(is_apostrophe) || t.ends_with(is_apostrophe)),
        }
    }

    /// `text` in this convention: recased, and without punctuation when the style is bare
    /// (dashes, and marks between two word characters, become spaces, so "well-known",
    /// "10:30" and "and/or" stay two words, not glued into one; whitespace is squeezed).
    pub fn apply(&self, text: &str) -> String {
        let cased = match self.case {
            Some(Case::Lower) => crate::guard::lowercase(text),
            Some(Case::Upper) => text.to_uppercase(),
            None => text.to_string(),
        };
        if !self.bare {
            return cased;
        }
        let stripped: Vec<String> = cased.split_whitespace().map(|t| self.bare(t)).collect();
        stripped
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// One whitespace token without punctuation: a dash, or marks between word characters,
    /// part it (`10:30` → `10 30`, `wait...what` → `wait what`), but a thousands comma joins
    /// (`1,000` → `1000`); an apostrophe between two word characters takes the hypotheses'
    /// form, and one elsewhere (`boys'`, `'90s`, a quotation mark) takes it too where the
    /// hypotheses write apostrophes at words' edges, else goes.
    fn bare(&self, token: &str) -> String {
        let chars: Vec<char> = token.chars().collect();
        let letter = |c: &char| !is_punctuation(*c) && !is_dash(*c) && !is_apostrophe(*c);
        let at = |i: Option<usize>| i.and_then(|i| chars.get(i)).is_some_and(letter);
        let first = chars.iter().position(letter);
        let last = chars.iter().rposition(letter);
        let digit = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
        let thousands =
            |i: usize| digit(i.wrapping_sub(1)) && (1..=3).all(|k| digit(i + k)) && !digit(i + 4);
        let mut out = String::with_capacity(token.len());
        for (i, &c) in chars.iter().enumerate() {
            // Between the token's first and last word characters.
            let within = first.is_some_and(|f| f < i) && last.is_some_and(|l| l > i);
            match c {
                c if is_dash(c) => out.push(' '),
                c if is_apostrophe(c) => {
                    if (at(i.checked_sub(1)) && at(Some(i + 1))) || self.edge_apostrophes {
                        out.push(self.apostrophe);
                    } else if within {
                        out.push(' ');
                    }
                }
                ',' if thousands(i) => {}
                c if is_punctuation(c) => {
                    if within {
                        out.push(' ');
                    }
                }
                c => out.push(c),
            }
        }
        out
    }
}

/// Clitics that the Penn Treebank's tokenisation (and spaCy's) writes as tokens of their own.
const CLITICS: [&str; 7] = ["n't", "'s", "'re", "'ve", "'ll", "'d", "'m"];

/// Whether `text` is written in tokens: some punctuation mark stands alone (`sentence .`) and
/// no comma, colon, semicolon, question or exclamation mark is glued to a word (full stops
/// may be: `Mr.`, `U.S.`).
pub fn tokenised(text: &str) -> bool {
    let marks = |t: &str| !t.is_empty() && t.chars().all(|c| ",.;:!?".contains(c));
    let glued = |t: &str| t.len() > 1 && t.ends_with([',', ';', ':', '!', '?']) && !marks(t);
    text.split_whitespace().any(marks) && !text.split_whitespace().any(glued)
}

/// `text` in tokens as `source` writes them: a word the source has stays whole (`Mr.`);
/// others lose their punctuation at either end (a full stop only at the text's end, and not
/// from `U.S.`), their clitics (`do n't`) unless the source glues its own (`don't`), and their
/// hyphens where the source splits its own (`well - known`, as spaCy writes them).
pub fn tokenise(text: &str, source: &str) -> String {
    let known: std::collections::HashSet<&str> = source.split_whitespace().collect();
    let split_clitics = known.iter().any(|t| is_clitic(t)) || !source.contains(['\'', '’']);
    let split_hyphens = known.contains("-");
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len() + 4);
    for (k, word) in words.iter().enumerate() {
        if known.contains(word) {
            out.push(word.to_string());
            continue;
        }
        let (core, lead, trail) = peel(word, k + 1 == words.len());
        out.extend(lead.chars().map(String::from));
        let core = clitic_split(core, split_clitics);
        for (i, part) in core.into_iter().enumerate() {
            if i > 0 || !split_hyphens {
                out.push(part.to_string());
                continue;
            }
            let pieces: Vec<&str> = part.split('-').collect();
            match pieces.iter().all(|p| !p.is_empty()) {
                true => out.push(pieces.join(" - ")),
                false => out.push(part.to_string()),
            }
        }
        out.extend(trail);
    }
    out.join(" ")
}

/// A word's opening marks (`"`, `(`), its core, and its closing marks as tokens (`,`, `)`,
/// `...`); a full stop only when the word `ends` the text and its core has no other (`U.S.`).
/// A word of marks alone stays whole.
fn peel(word: &str, ends: bool) -> (&str, &str, Vec<String>) {
    let opening = |c: char| "\"“‘([{".contains(c);
    let lead_len: usize = word
        .chars()
        .take_while(|&c| opening(c))
        .map(char::len_utf8)
        .sum();
    let (lead, mut core) = match lead_len < word.len() {
        true => word.split_at(lead_len),
        false => ("", word),
    };
    let closing = |c: char| ",;:!?\"”)]}".contains(c);
    let mut trail = Vec::new();
    loop {
        let stem = core.trim_end_matches('.');
        let dots = core.len() - stem.len();
        let last = core
            .chars()
            .next_back()
            .filter(|_| core.chars().count() > 1);
        match last {
            Some(c) if closing(c) => {
                trail.insert(0, c.to_string());
                core = &core[..core.len() - c.len_utf8()];
            }
            _ if !stem.is_empty() && (dots > 1 || (dots == 1 && ends && !stem.contains('.'))) => {
                trail.insert(0, core[stem.len()..].to_string());
                core = stem;
            }
            _ => return (core, lead, trail),
        }
    }
}

/// `word` and its clitic as two tokens (`do` `n't`, `John` `'s`), when `split`.
fn clitic_split(word: &str, split: bool) -> Vec<&str> {
    let lower = word.to_lowercase().replace('’', "'");
    let at = CLITICS
        .iter()
        .find(|c| lower.len() > c.len() && lower.ends_with(*c))
        .map(|c| word.len() - word_suffix_len(word, c.chars().count()));
    match at {
        Some(at) if split => vec![&word[..at], &word[at..]],
        _ => vec![word],
    }
}

/// The byte length of the last `chars` characters of `word`.
fn word_suffix_len(word: &str, chars: usize) -> usize {
    word.chars().rev().take(chars).map(char::len_utf8).sum()
}

fn is_apostrophe(c: char) -> bool {
    crate::normalize::basic::is_apostrophe(c)
}

/// Whether a token is a clitic (`n't`, `'s`, in either apostrophe).
fn is_clitic(token: &str) -> bool {
    CLITICS.contains(&token.to_lowercase().replace('’', "'").as_str())
}

/// Punctuation and symbols: what is neither part of a word (a letter, a digit, a mark on
/// one), a space nor an apostrophe (any the guard's word keys take for one, so that restyling
/// never changes a word to the guard).
fn is_punctuation(c: char) -> bool {
    use crate::normalize::basic::{is_apostrophe, is_word_char};
    !(is_word_char(c) || c.is_whitespace() || is_apostrophe(c))
}

fn is_dash(c: char) -> bool {
    matches!(c, '-' | '\u{2010}'..='\u{2015}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyps(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_lowercase_unpunctuated_n_best_makes_the_answer_so() {
        let n = hyps(&[
            "i don't know the well known way",
            "i dont know the well known way",
        ]);
        let got = StyleMode::Follow.apply(Task::Asr, &n, "I don't know the well-known way, sir!");
        assert_eq!(got, "i don't know the well known way sir");
        // Every apostrophe the guard knows stays one, in the hypotheses' form (the edit limit
        // compares words as written): restyling never makes "don`t" "dont".
        let got = StyleMode::Follow.apply(Task::Asr, &n, "I don`t know, I don\u{2018}t.");
        assert_eq!(got, "i don't know i don't");
        // Marks on letters are the word's, not punctuation.
        let n = hyps(&["नमस्ते cafe\u{301} ไม่ใช่", "नमस्ते cafe ไม่ใช่"]);
        let got = StyleMode::Follow.apply(Task::Asr, &n, "नमस्ते, cafe\u{301} ไม่ใช่!");
        assert_eq!(got, "नमस्ते cafe\u{301} ไม่ใช่");
        // An emoji goes whole, its variation selector with it.
        let got = StyleMode::Follow.apply(Task::Asr, &n, "नमस्ते ❤\u{fe0f} cafe\u{301}");
        assert_eq!(got, "नमस्ते cafe\u{301}");
    }

    #[test]
    fn a_cased_punctuated_n_best_leaves_the_answer_as_written() {
        let n = hyps(&["He said: no.", "he said no"]);
        let answer = "He said, \"No!\"";
        assert_eq!(StyleMode::Follow.apply(Task::Asr, &n, answer), answer);
    }

    #[test]
    fn casing_and_punctuation_are_read_apart() {
        // Upper case without punctuation (LibriSpeech's originals).
        let upper = Style::of(&hyps(&["HE HOPED THERE WOULD BE STEW"]));
        assert_eq!(
            upper.apply("He hoped there'd be stew."),
            "HE HOPED THERE'D BE STEW"
        );
        // Lower case with punctuation: recased only.
        let lower = Style::of(&hyps(&["he hoped, there would be stew."]));
        assert_eq!(
            lower.apply("He hoped there'd be stew."),
            "he hoped there'd be stew."
        );
        // Mixed case without punctuation: punctuation goes, case stays.
        let mixed = Style::of(&hyps(&["He hoped there would be stew"]));
        assert_eq!(
            mixed.apply("He hoped -- there'd be stew."),
            "He hoped there'd be stew"
        );
    }

    #[test]
    fn only_asr_answers_follow_and_model_mode_keeps_them() {
        let n = hyps(&["the cat sat"]);
        assert_eq!(
            StyleMode::Follow.apply(Task::Ocr, &n, "The cat sat."),
            "The cat sat."
        );
        assert_eq!(
            StyleMode::Follow.apply(Task::Gec, &n, "The cat sat."),
            "The cat sat."
        );
        assert_eq!(
            StyleMode::Model.apply(Task::Asr, &n, "The cat sat."),
            "The cat sat."
        );
        assert_eq!(
            StyleMode::Follow.apply(Task::Asr, &n, "The cat sat."),
            "the cat sat"
        );
    }

    #[test]
    fn gec_answers_to_sources_in_tokens_are_tokenised_alike() {
        let gec = |source: &str, answer: &str| {
            let n = hyps(&[source]);
            let got = StyleMode::Model.apply(Task::Gec, &n, answer);
            assert_eq!(got, StyleMode::Follow.apply(Task::Gec, &n, answer));
            got
        };
        assert_eq!(
            gec("This are a sentence .", "This is a good sentence."),
            "This is a good sentence ."
        );
        // The Penn Treebank's clitics, and a word the source has kept whole.
        assert_eq!(
            gec(
                "I do n't think so , Mr. Smith .",
                "I don't think so, Mr. Smith!"
            ),
            "I do n't think so , Mr. Smith !"
        );
        // A source that glues its clitics keeps them glued; quotes, brackets, an ellipsis.
        assert_eq!(
            gec(
                "I don't know , he say .",
                "I don't know, he said (\"no\")..."
            ),
            "I don't know , he said ( \" no \" ) ..."
        );
        // spaCy's hyphens, where the source splits its own; U.S. keeps its full stops.
        assert_eq!(
            gec(
                "a well - known fact in US .",
                "a well-known fact in the U.S."
            ),
            "a well - known fact in the U.S."
        );
        // A source in text is left as the model wrote it, and so are other tasks.
        assert_eq!(gec("I has a cat.", "I have a cat."), "I have a cat.");
        let n = hyps(&["this are it ."]);
        assert_eq!(
            StyleMode::Model.apply(Task::Ocr, &n, "This is it."),
            "This is it."
        );
        // Marks alone, letters of several bytes, and nothing at all.
        assert_eq!(gec("it is .", "“” (( café” é."), "“ ” (( café ” é .");
        assert_eq!(gec("it is .", ""), "");
    }

    #[test]
    fn a_text_in_tokens_has_marks_alone_and_none_glued() {
        assert!(tokenised("This are a sentence ."));
        assert!(tokenised("Mr. Smith , U.S. citizen !"));
        assert!(!tokenised("Hello, world ."));
        assert!(!tokenised("Hello world."));
        assert!(!tokenised(""));
    }

    #[test]
    fn empty_or_uncased_hypotheses_impose_nothing() {
        assert_eq!(
            Style::of(&hyps(&["", " "])).apply("Hi, there."),
            "Hi, there."
        );
        // Digits only: no cased letter, no punctuation; the answer loses its punctuation.
        assert_eq!(Style::of(&hyps(&["42"])).apply("Forty-two."), "Forty two");
        assert_eq!(Style::of(&[]).apply("Hi."), "Hi.");
    }

    /// A mark between two word characters parts them, as the scorer's punctuation stripper
    /// does: "10:30" was glued into "1030", "1.5" into "15", "and/or" into "andor".
    #[test]
    fn bare_style_parts_words_joined_by_a_mark() {
        let bare = Style::of(&hyps(&["it is ten thirty"]));
        assert_eq!(bare.apply("At 10:30, and/or 1.5!"), "at 10 30 and or 1 5");
        assert_eq!(bare.apply("(Quoted) don't."), "quoted don't");
        // Apostrophes in words take the hypotheses' form; quotation marks go.
        assert_eq!(bare.apply("I don’t say 'hello'."), "i don't say hello");
        // Apostrophes at words' edges go, as the hypotheses write none; a thousands comma
        // joins; a run of marks parts once.
        let edges = "The boys' toys, 'go away,' he said... wait...what: 1,000 or 1,5.";
        assert_eq!(
            bare.apply(edges),
            "the boys toys go away he said wait what 1000 or 1 5"
        );
        // Where the hypotheses write them, they stay, in the hypotheses' form.
        let with = Style::of(&hyps(&["the boys' toys in the '90s"]));
        assert_eq!(
            with.apply("The boys’ toys in the ’90s."),
            "the boys' toys in the '90s"
        );
        // Twice is once.
        for text in [
            edges,
            "``hello'' said,'hello' ''ab''",
            "U.S. e-mail $1,000.50",
        ] {
            let once = bare.apply(text);
            assert_eq!(bare.apply(&once), once, "{text}");
        }
        // Turkish İ lowers to the i the hypotheses write, not i and a combining dot.
        assert_eq!(bare.apply("İstanbul."), "istanbul");
        let curly = Style::of(&hyps(&["i don’t know"]));
        assert_eq!(curly.apply("I don't know."), "i don’t know");
    }
}
