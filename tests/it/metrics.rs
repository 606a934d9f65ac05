//! The metrics library against reference numbers committed in `tests/fixtures/metrics` by
//! `scripts/make_metric_fixtures.py`: jiwer 4 (WER/CER counts, exactly), sacrebleu 2.5 (BLEU,
//! chrF, to two decimals), the `gleu` package (GLEU, two decimals), rapidfuzz-based edit spans
//! (edit counts, exactly) and openai-whisper's normalisers (strings, exactly).

use neko::eval::records::Alignment;
use neko::metrics::bleu::{tokenize_13a, BleuOptions, BleuStats, Smooth, Tokenizer};
use neko::metrics::chrf::{ChrfOptions, ChrfStats};
use neko::metrics::edits::EditScore;
use neko::metrics::gleu::GleuStats;
use neko::metrics::ter::{TerOptions, TerStats};
use neko::metrics::{char_counts, word_counts, EditCounts};
use neko::normalize::Normalizer;
use serde_json::Value;

use crate::util;

fn load(name: &str) -> Value {
    let path = util::fixture(&format!("metrics/{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `[hits, substitutions, deletions, insertions]` as the fixtures store them.
pub fn counts_of(v: &Value) -> EditCounts {
    let n: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    EditCounts {
        hits: n[0],
        substitutions: n[1],
        deletions: n[2],
        insertions: n[3],
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

/// Two-decimal agreement: the numbers print the same when rounded, allowing for a value that
/// sits on a rounding boundary.
pub fn assert_2dp(ours: f64, theirs: f64, what: &str) {
    assert!(
        (ours - theirs).abs() < 0.005 + 1e-9,
        "{what}: neko {ours:.4} vs reference {theirs:.4}"
    );
}

#[test]
fn wer_and_cer_counts_match_jiwer_exactly() {
    let fx = load("wer.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() > 300);
    for c in cases {
        let (name, r, h) = (
            &c["name"],
            c["reference"].as_str().unwrap(),
            c["hypothesis"].as_str().unwrap(),
        );
        let w = word_counts(r, h);
        assert_eq!(w, counts_of(&c["words"]), "word counts of {name}");
        assert_eq!(
            char_counts(r, h),
            counts_of(&c["chars"]),
            "char counts of {name}"
        );
        let wer = c["wer"].as_f64().unwrap();
        assert!((w.error_rate() - wer).abs() < 1e-12, "WER of {name}");
    }
}

/// `neko eval --per-record` lays alignments out as jiwer's `visualize_alignment` prints them.
#[test]
fn alignments_are_laid_out_as_jiwer_prints_them() {
    let fx = load("wer.json");
    let cases: Vec<&Value> = (fx["cases"].as_array().unwrap().iter())
        .filter(|c| c.get("alignment").is_some())
        .collect();
    assert!(cases.len() >= 100);
    for c in cases {
        let (r, h) = (
            c["reference"].as_str().unwrap(),
            c["hypothesis"].as_str().unwrap(),
        );
        let (r, h) = (neko::metrics::words(r), neko::metrics::words(h));
        let a = Alignment::new(&r, &h, &neko::metrics::align::align(&r, &h));
        assert_eq!(
            [a.reference.as_str(), a.hypothesis.as_str(), a.ops.as_str()],
            strings(&c["alignment"]).as_slice(),
            "{}",
            c["name"]
        );
    }
}

#[test]
fn corpus_wer_pools_counts_like_jiwer() {
    let fx = load("wer.json");
    let cases: Vec<&Value> = fx["cases"].as_array().unwrap().iter().collect();
    for corpus in fx["corpora"].as_array().unwrap() {
        let names = strings(&corpus["cases"]);
        let (mut w, mut ch) = (EditCounts::default(), EditCounts::default());
        for c in cases
            .iter()
            .filter(|c| names.contains(&c["name"].as_str().unwrap()))
        {
            let (r, h) = (
                c["reference"].as_str().unwrap(),
                c["hypothesis"].as_str().unwrap(),
            );
            w += word_counts(r, h);
            ch += char_counts(r, h);
        }
        let name = &corpus["name"];
        assert_eq!(w, counts_of(&corpus["words"]), "{name}");
        assert_eq!(ch, counts_of(&corpus["chars"]), "{name}");
        assert!(
            (w.error_rate() - corpus["wer"].as_f64().unwrap()).abs() < 1e-12,
            "{name}"
        );
        assert!(
            (w.match_error_rate() - corpus["mer"].as_f64().unwrap()).abs() < 1e-12,
            "{name}"
        );
        assert!(
            (ch.error_rate() - corpus["cer"].as_f64().unwrap()).abs() < 1e-12,
            "{name}"
        );
    }
}

#[test]
fn bleu_and_chrf_match_sacrebleu() {
    let fx = load("bleu.json");
    for corpus in fx["corpora"].as_array().unwrap() {
        let name = corpus["name"].as_str().unwrap();
        let (hyps, refs) = (
            strings(&corpus["hypotheses"]),
            strings(&corpus["references"]),
        );
        let (mut b, mut c) = (BleuStats::default(), ChrfStats::default());
        for (h, r) in hyps.iter().zip(&refs) {
            b += BleuStats::segment(h, r);
            c += ChrfStats::segment(h, r);
        }
        // The sufficient statistics are integers and must agree exactly.
        let ints = |v: &Value| -> Vec<u64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect()
        };
        assert_eq!(
            b.correct.to_vec(),
            ints(&corpus["bleu_correct"]),
            "{name}: BLEU matches"
        );
        assert_eq!(
            b.total.to_vec(),
            ints(&corpus["bleu_total"]),
            "{name}: BLEU totals"
        );
        assert_eq!(
            b.hyp_len,
            corpus["sys_len"].as_u64().unwrap(),
            "{name}: sys_len"
        );
        assert_eq!(
            b.ref_len,
            corpus["ref_len"].as_u64().unwrap(),
            "{name}: ref_len"
        );
        assert_2dp(
            b.score(),
            corpus["bleu"].as_f64().unwrap(),
            &format!("{name}: BLEU"),
        );
        assert_2dp(
            c.score(),
            corpus["chrf"].as_f64().unwrap(),
            &format!("{name}: chrF"),
        );
        let mut pp = ChrfStats::default();
        for (h, r) in hyps.iter().zip(&refs) {
            pp += ChrfStats::segment_with(chrf_pp(), h, &[r]);
        }
        let theirs = corpus["chrf_pp"].as_f64().unwrap();
        assert!((pp.score() - theirs).abs() < 1e-9, "{name}: chrF++");
        // One pair alone: sacrebleu's `sentence_bleu` too (effective order).
        if let Some(sentence) = corpus.get("sentence_bleu") {
            let theirs = sentence.as_f64().unwrap();
            assert!(
                (b.sentence_score() - theirs).abs() < 1e-9,
                "{name}: sentence BLEU"
            );
        }
    }
}

/// TER against sacrebleu: every corpus of the BLEU fixture, and sentences built to make Tercom
/// shift (moved blocks, repeats, 120-word lines past the shift distance, very unequal lengths,
/// two and three references). Edits are integers and must agree exactly.
#[test]
fn ter_matches_sacrebleu() {
    let fx = load("bleu.json");
    let close = |ours: f64, theirs: &Value, what: &str| {
        let theirs = theirs.as_f64().unwrap();
        assert!((ours - theirs).abs() < 1e-9, "{what}: {ours} vs {theirs}");
    };
    for corpus in fx["corpora"].as_array().unwrap() {
        let name = corpus["name"].as_str().unwrap();
        let mut t = TerStats::default();
        for (h, r) in strings(&corpus["hypotheses"])
            .iter()
            .zip(strings(&corpus["references"]))
        {
            t += TerStats::segment_refs(h, &[r]);
        }
        assert_eq!(t.edits, corpus["ter_edits"].as_u64().unwrap(), "{name}");
        close(t.ref_length, &corpus["ter_ref_length"], name);
        close(t.score(), &corpus["ter"], name);
    }
    let cases = fx["ter_cases"].as_array().unwrap();
    assert!(cases.len() > 150);
    let mut shifted = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let refs = strings(&case["references"]);
        let t = TerStats::segment_refs(case["hypothesis"].as_str().unwrap(), &refs);
        assert_eq!(t.edits, case["edits"].as_u64().unwrap(), "{name}");
        close(t.ref_length, &case["ref_length"], name);
        close(t.score(), &case["ter"], name);
        let bleu = BleuStats::segment_refs(case["hypothesis"].as_str().unwrap(), &refs);
        close(bleu.sentence_score(), &case["sentence_bleu"], name);
        let pp = ChrfStats::segment_with(chrf_pp(), case["hypothesis"].as_str().unwrap(), &refs);
        close(pp.score(), &case["chrf_pp"], name);
        // Cases Levenshtein alone would score higher: shifts were taken.
        let plain = refs
            .iter()
            .map(|r| {
                word_counts(
                    &r.to_lowercase(),
                    &case["hypothesis"].as_str().unwrap().to_lowercase(),
                )
                .errors()
            })
            .min()
            .unwrap();
        shifted += usize::from(t.edits < plain);
    }
    assert!(shifted > 40, "only {shifted} cases shifted");
    let sig = fx["corpora"][0]["ter_signature"].as_str().unwrap();
    assert!(
        sig.starts_with("nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|"),
        "{sig}"
    );
}

/// The BLEU options a fixture key's `neko eval` flags stand for.
fn bleu_options(flags: &str) -> BleuOptions {
    let mut options = BleuOptions::default();
    let (mut method, mut value) = ("exp", None);
    let mut words = flags.split(' ');
    while let Some(flag) = words.next() {
        match flag {
            "--lowercase" => options.lowercase = true,
            "--tokenize" => options.tokenize = words.next().unwrap().parse().unwrap(),
            "--smooth-method" => method = words.next().unwrap(),
            "--smooth-value" => value = Some(words.next().unwrap().parse().unwrap()),
            other => panic!("flag {other}"),
        }
    }
    options.smooth = Smooth::new(method, value).unwrap();
    options
}

/// Every option set of a metric's fixtures, keyed by its flags: `corpus(flags, hyps, refs)`
/// gives neko's corpus score and sacrebleu's signature fields for each BLEU corpus
/// (`{key}_by_options`), `sentence(flags, hyp, refs)` neko's sentence score and the default
/// options' for each of the 171 short sentences (`sentence_{key}_by_options`). Returns how many
/// sentence scores the options changed.
fn each_option_set(
    key: &str,
    corpus: impl Fn(&str, &[&str], &[&str]) -> (f64, String),
    sentence: impl Fn(&str, &str, &[&str]) -> (f64, f64),
) -> usize {
    let fx = load("bleu.json");
    let close = |ours: f64, theirs: &Value, what: &str| {
        let theirs = theirs.as_f64().unwrap();
        assert!((ours - theirs).abs() < 1e-9, "{what}: {ours} vs {theirs}");
    };
    for c in fx["corpora"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (hyps, refs) = (strings(&c["hypotheses"]), strings(&c["references"]));
        for (flags, want) in c[format!("{key}_by_options").as_str()].as_object().unwrap() {
            let (score, fields) = corpus(flags, &hyps, &refs);
            close(score, &want[key], &format!("{name} {flags}"));
            let sig = want["signature"].as_str().unwrap();
            assert!(sig.contains(&format!("|{fields}|")), "{sig} vs {fields}");
        }
    }
    let mut differ = 0;
    for case in fx["ter_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (hyp, refs) = (
            case["hypothesis"].as_str().unwrap(),
            strings(&case["references"]),
        );
        let by_options = &case[format!("sentence_{key}_by_options").as_str()];
        for (flags, want) in by_options.as_object().unwrap() {
            let (score, default) = sentence(flags, hyp, &refs);
            close(score, want, &format!("{name} {flags}"));
            differ += usize::from((score - default).abs() > 1e-6);
        }
    }
    differ
}

/// sacrebleu's `--lowercase` and smoothing methods (none, floor, add-k, with their default
/// and other values): corpus BLEU of every BLEU corpus and sentence BLEU of the 171 short
/// sentences, where zero precisions make the methods differ, and the signature's fields.
#[test]
fn bleu_options_match_sacrebleu() {
    let differ = each_option_set(
        "bleu",
        |flags, hyps, refs| {
            let options = bleu_options(flags);
            let mut b = BleuStats::default();
            for (h, r) in hyps.iter().zip(refs) {
                b += BleuStats::segment_with(options, h, &[r]);
            }
            (b.score_with(options.smooth), options.signature())
        },
        |flags, hyp, refs| {
            let options = bleu_options(flags);
            let b = BleuStats::segment_with(options, hyp, refs);
            (b.sentence_score_with(options.smooth), b.sentence_score())
        },
    );
    assert!(
        differ > 200,
        "the options changed only {differ} sentence scores"
    );
    assert!(Smooth::new("exp", Some(0.1)).is_err());
    assert!(Smooth::new("floor", Some(f64::NAN)).is_err());
    assert!(Smooth::new("laplace", None)
        .unwrap_err()
        .contains("exp, floor, add-k, none"));
}

/// chrF++: word unigrams and bigrams beside the character n-grams.
fn chrf_pp() -> ChrfOptions {
    ChrfOptions {
        word_order: 2,
        ..Default::default()
    }
}

/// The chrF options a fixture key's `neko eval` flags stand for.
fn chrf_options(flags: &str) -> ChrfOptions {
    let mut options = ChrfOptions::default();
    let mut words = flags.split(' ');
    while let Some(flag) = words.next() {
        let mut number = || words.next().unwrap().parse::<usize>().unwrap();
        match flag {
            "--chrf-char-order" => options.char_order = number(),
            "--chrf-word-order" => options.word_order = number(),
            "--chrf-beta" => options.beta = number() as u32,
            "--chrf-lowercase" => options.lowercase = true,
            "--chrf-whitespace" => options.whitespace = true,
            "--chrf-eps-smoothing" => options.eps_smoothing = true,
            other => panic!("flag {other}"),
        }
    }
    options
}

/// sacrebleu's chrF options (character order, beta, case, whitespace, epsilon smoothing, and
/// with chrF++): corpus chrF of every BLEU corpus, sentence chrF of the 171 short sentences
/// (one to three references: the reference chosen by the options' own score), and the
/// signature's fields (neko's adds `beta`, which sacrebleu writes in the name).
#[test]
fn chrf_options_match_sacrebleu() {
    let differ = each_option_set(
        "chrf",
        |flags, hyps, refs| {
            let options = chrf_options(flags);
            let mut c = ChrfStats::default();
            for (h, r) in hyps.iter().zip(refs) {
                c += ChrfStats::segment_with(options, h, &[r]);
            }
            let ours = options.signature();
            (
                c.score_with(options),
                ours.rsplit_once("|beta:").unwrap().0.to_string(),
            )
        },
        |flags, hyp, refs| {
            let options = chrf_options(flags);
            let c = ChrfStats::segment_with(options, hyp, refs);
            (c.score_with(options), c.score())
        },
    );
    assert!(
        differ > 400,
        "the options changed only {differ} sentence scores"
    );
}

/// sacrebleu's TER options, all 16 combinations: every line tokenised to the same string
/// (possessives, line-end hyphens, entities, numbers, CJK, kana, full-width and Asian
/// punctuation, case), corpus TER with each, and the signature's fields.
#[test]
fn ter_options_match_sacrebleu() {
    let fx = load("bleu.json");
    let fx = &fx["ter_tokenizers"];
    let (lines, hyps, refs) = (
        strings(&fx["lines"]),
        strings(&fx["hypotheses"]),
        strings(&fx["references"]),
    );
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 16);
    let mut scores = Vec::new();
    for case in cases {
        let options: TerOptions = serde_json::from_value(case["options"].clone()).unwrap();
        for (line, want) in lines.iter().zip(strings(&case["tokenized"])) {
            let rstripped = line.trim_end_matches(char::is_whitespace);
            assert_eq!(options.tokenize(rstripped), want, "{options:?}: {line:?}");
        }
        let mut t = TerStats::default();
        for (h, r) in hyps.iter().zip(&refs) {
            t += TerStats::segment_with(options, h, &[r]);
        }
        assert_eq!(t.edits, case["edits"].as_u64().unwrap(), "{options:?}");
        let theirs = case["ter"].as_f64().unwrap();
        assert!(
            (t.score() - theirs).abs() < 1e-9,
            "{options:?}: {} vs {theirs}",
            t.score()
        );
        let sig = case["signature"].as_str().unwrap();
        let ours = options.to_string().replace("tercom-norm:", "norm:");
        assert!(sig.contains(&format!("|{ours}|")), "{sig} vs {ours}");
        scores.push(format!("{:.6}", t.score()));
    }
    // The options matter on these lines: most combinations give their own score.
    scores.sort();
    scores.dedup();
    assert!(scores.len() >= 8, "{scores:?}");
}

/// sacrebleu's other BLEU tokenisers: every line tokenised to the same string (Chinese,
/// Japanese, full-width, symbols, the `zh` ranges sacrebleu mistypes, entities), and corpus
/// BLEU with each.
#[test]
fn bleu_tokenisers_match_sacrebleu() {
    let fx = load("bleu.json");
    let cases = fx["tokenizers"].as_array().unwrap();
    assert_eq!(cases.len(), Tokenizer::ALL.len());
    for case in cases {
        let name = case["tokenize"].as_str().unwrap();
        let tok: Tokenizer = name.parse().unwrap();
        assert_eq!(tok.name(), name);
        for (line, want) in strings(&case["lines"])
            .iter()
            .zip(strings(&case["tokenized"]))
        {
            let rstripped = line.trim_end_matches(char::is_whitespace);
            assert_eq!(tok.apply(rstripped), want, "{name}: {line:?}");
        }
        let mut b = BleuStats::default();
        for (h, r) in strings(&case["hypotheses"])
            .iter()
            .zip(strings(&case["references"]))
        {
            b += BleuStats::segment_with(tok.into(), h, &[r]);
        }
        let theirs = case["bleu"].as_f64().unwrap();
        assert!(
            (b.score() - theirs).abs() < 1e-9,
            "{name}: {} vs {theirs}",
            b.score()
        );
        let sig = case["signature"].as_str().unwrap();
        assert!(sig.contains(&format!("|tok:{name}|")), "{sig}");
    }
    assert!("ja-mecab"
        .parse::<Tokenizer>()
        .unwrap_err()
        .contains("13a, intl, zh, char, none"));
}

#[test]
fn the_13a_tokeniser_is_the_one_in_the_signature() {
    let fx = load("bleu.json");
    let sig = fx["corpora"][0]["bleu_signature"].as_str().unwrap();
    assert!(
        sig.contains("tok:13a") && sig.contains("smooth:exp"),
        "{sig}"
    );
    assert_eq!(tokenize_13a("(a) b."), "( a ) b .");
}

#[test]
fn gleu_matches_the_reference_scorer() {
    let fx = load("gleu.json");
    for corpus in fx["corpora"].as_array().unwrap() {
        let name = corpus["name"].as_str().unwrap();
        let s = strings(&corpus["sources"]);
        let h = strings(&corpus["hypotheses"]);
        let r = strings(&corpus["references"]);
        let mut g = GleuStats::default();
        for i in 0..s.len() {
            g += GleuStats::segment(s[i], h[i], r[i]);
        }
        assert_2dp(g.score(), corpus["gleu"].as_f64().unwrap(), name);
    }
}

#[test]
fn edit_scores_match_the_reference_spans() {
    let fx = load("gleu.json");
    for corpus in fx["edits"].as_array().unwrap() {
        let name = corpus["name"].as_str().unwrap();
        let s = strings(&corpus["sources"]);
        let h = strings(&corpus["hypotheses"]);
        let r = strings(&corpus["references"]);
        let mut e = EditScore::default();
        for i in 0..s.len() {
            e += EditScore::segment(s[i], h[i], r[i]);
        }
        let want = |k: &str| corpus[k].as_u64().unwrap();
        assert_eq!(
            (e.true_positives, e.false_positives, e.false_negatives),
            (want("tp"), want("fp"), want("fn")),
            "{name}"
        );
        assert_2dp(
            100.0 * e.precision(),
            corpus["precision"].as_f64().unwrap(),
            name,
        );
        assert_2dp(100.0 * e.recall(), corpus["recall"].as_f64().unwrap(), name);
        assert_2dp(100.0 * e.f_beta(0.5), corpus["f05"].as_f64().unwrap(), name);
    }
}

#[test]
fn normalisers_match_their_python_originals() {
    let fx = load("normalizers.json");
    for (key, spec) in [
        ("whisper-en", "whisper-en"),
        ("whisper-basic", "whisper-basic"),
        ("h2t", "h2t"),
    ] {
        let n: Normalizer = spec.parse().unwrap();
        let cases = fx[key].as_array().unwrap();
        assert!(cases.len() > 100, "{key}");
        for pair in cases {
            let (input, want) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            assert_eq!(n.apply(input), want, "{key} of {input:?}");
        }
    }
}

mod properties {
    use neko::metrics::align::{align, distance, EditCounts};
    use proptest::prelude::*;

    proptest! {
        /// Any alignment covers both sequences and is minimal.
        #[test]
        fn alignments_are_minimal_and_complete(
            r in proptest::collection::vec(0u8..4, 0..40),
            h in proptest::collection::vec(0u8..4, 0..40),
        ) {
            let c = EditCounts::from_ops(&align(&r, &h));
            prop_assert_eq!(c.reference_len() as usize, r.len());
            prop_assert_eq!(c.hypothesis_len() as usize, h.len());
            prop_assert_eq!(c.errors() as usize, distance(&r, &h));
        }
    }
}
