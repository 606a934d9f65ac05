//! Scoring of record files: per-record alignments pooled into file and group reports, with
//! baselines (1-best), oracles, corrected scores, signatures and baseline comparison. This is
//! the library side of `neko eval`; it needs no model.
//!
//! For every scorable record the reference, each hypothesis and the prediction are normalised
//! (the task's default normaliser unless one is asked for) and scored once; group and file
//! scores pool those statistics. Nothing is dropped silently: a record that cannot be scored is
//! listed in [`FileReport::unscored`] with its reason, and a record without a prediction in a
//! file that has predictions is scored with its 1-best and listed in [`FileReport::fallbacks`].

pub mod against;
pub mod baseline;
pub mod bootstrap;
pub mod randomization;
pub mod records;
pub mod refs;
pub mod report;
pub mod signature;
pub mod text;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rayon::prelude::*;
use serde_json::Value;

pub use report::*;

use crate::metrics::bleu::{BleuOptions, BleuStats, Smooth};
use crate::metrics::chrf::{ChrfOptions, ChrfStats};
use crate::metrics::edits::EditScore;
use crate::metrics::gleu::{self, GleuStats};
use crate::metrics::ter::{TerOptions, TerStats};
use crate::metrics::{align, cer_chars, oracle, words, EditCounts};
use crate::normalize::Normalizer;
use crate::record::{self, Entry, Record};
use crate::Task;

/// How records are grouped inside a file (the whole file is always reported first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// By `source` when records carry one, else by task when a file mixes tasks, else none.
    Auto,
    /// By the records' `source` field.
    Source,
    /// By task.
    Task,
    /// No groups.
    None,
}

impl GroupBy {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Auto => "auto",
            GroupBy::Source => "source",
            GroupBy::Task => "task",
            GroupBy::None => "none",
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(GroupBy::Auto),
            "source" => Ok(GroupBy::Source),
            "task" => Ok(GroupBy::Task),
            "none" => Ok(GroupBy::None),
            other => Err(format!(
                "unknown grouping `{other}` (expected auto, source, task or none)"
            )),
        }
    }
}

/// What to score and how.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Forces the task of every record.
    pub task: Option<Task>,
    /// Normalisers to score under, one run each; empty means each task's default.
    pub normalizers: Vec<Normalizer>,
    /// Grouping inside files.
    pub group_by: GroupBy,
    /// Paired bootstrap of each group's prediction against its 1-best, when asked for.
    pub paired_bs: Option<bootstrap::PairedBs>,
    /// Paired approximate randomization beside the paired bootstrap (`--paired-ar`), when
    /// asked for.
    pub paired_ar: Option<randomization::PairedAr>,
    /// Each score's spread over resamples of its records (`--confidence`), when asked for.
    pub confidence: Option<bootstrap::PairedBs>,
    /// Keep a row per scored record, with its alignments ([`FileReport::rows`]).
    pub per_record: bool,
    /// Another system's output (`--against`): the paired bootstrap compares each file's
    /// records with this file's same records, instead of with their 1-best.
    pub against: Option<Input>,
    /// BLEU's tokeniser, case and smoothing (sacrebleu's `--tokenize`, `--lowercase`,
    /// `--smooth-method`).
    pub bleu: BleuOptions,
    /// chrF's orders, beta, case, whitespace and smoothing (2 word orders: chrF++; sacrebleu's
    /// `--chrf-*` flags).
    pub chrf: ChrfOptions,
    /// TER's tokenisation (sacrebleu's `--ter-*` flags).
    pub ter: TerOptions,
}

/// One input file, read once and scored under every normaliser.
#[derive(Debug, Clone)]
pub struct Input {
    /// The path as given.
    pub path: String,
    /// Its records.
    pub entries: Vec<Entry>,
}

/// Reads every file, records over `max_record_bytes` unscored; a file that cannot be read is
/// reported and the others go on.
pub fn read(paths: &[PathBuf], max_record_bytes: usize) -> (Vec<Input>, Vec<FileError>) {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let path = record::input_name(p);
        match record::read_path_with_limit(p, max_record_bytes) {
            Ok(entries) => inputs.push(Input { path, entries }),
            Err(e) => errors.push(FileError {
                path,
                message: e.to_string(),
            }),
        }
    }
    (inputs, errors)
}

/// Scores every input under every requested normaliser.
pub fn evaluate(inputs: &[Input], settings: &Settings) -> Report {
    let normalizers: Vec<Option<&Normalizer>> = if settings.normalizers.is_empty() {
        vec![None]
    } else {
        settings.normalizers.iter().map(Some).collect()
    };
    let runs = normalizers
        .into_iter()
        .map(|n| run(inputs, settings, n))
        .collect();
    Report {
        neko: env!("CARGO_PKG_VERSION").to_string(),
        runs,
        errors: Vec::new(),
        comparison: None,
    }
}

fn run(inputs: &[Input], settings: &Settings, normalizer: Option<&Normalizer>) -> Run {
    let scored: Vec<(FileReport, Used)> = inputs
        .par_iter()
        .map(|i| score_file(i, settings, normalizer))
        .collect();
    let mut used = Used::default();
    let mut files = Vec::with_capacity(scored.len());
    for (file, u) in scored {
        files.push(file);
        used.extend(u);
    }
    Run {
        normalizer: normalizer.map(Normalizer::to_string),
        normalizer_label: signature::normalizer_label(used.normalizers.iter().cloned()),
        task: settings.task,
        group_by: settings.group_by.to_string(),
        bleu_tokenize: settings.bleu.tokenize.to_string(),
        bleu_lowercase: settings.bleu.lowercase,
        bleu_smooth: settings.bleu.smooth,
        chrf_word_order: settings.chrf.word_order,
        chrf_char_order: settings.chrf.char_order,
        chrf_beta: settings.chrf.beta,
        chrf_lowercase: settings.chrf.lowercase,
        chrf_whitespace: settings.chrf.whitespace,
        chrf_eps_smoothing: settings.chrf.eps_smoothing,
        ter: settings.ter,
        signatures: signatures(&files, &used, settings),
        files,
    }
}

/// The run's signature lines, with the `--against` file's `neko correct` signature last: the
/// comparison is of two correctors, and each side says how it was made.
fn signatures(files: &[FileReport], used: &Used, settings: &Settings) -> Vec<String> {
    let mut out = signature::signatures(files, used);
    let base = settings.against.as_ref();
    let base_sig = base.and_then(|b| Some((correction_signature(&b.path)?, &b.path)));
    if let Some((sig, path)) = base_sig {
        out.push(format!("{sig}|against:{path}"));
    }
    out
}

/// The per-record statistics every group pools.
struct RecordScore {
    /// Its entry's 0-based position in the file (what `--against` pairs by).
    index: usize,
    /// Its place among the file's scored GEC records (GLEU's reference draws go by it).
    position: usize,
    /// How many references it has.
    references: usize,
    task: Task,
    normalizer: String,
    source: Option<String>,
    reference_words: u64,
    reference_chars: u64,
    has_prediction: bool,
    one_best: EditCounts,
    /// The oracles, when the record gave its N-best (not only its 1-best).
    oracle: Option<EditCounts>,
    compositional: Option<EditCounts>,
    corrected: Option<EditCounts>,
    cer_one_best: EditCounts,
    cer_corrected: Option<EditCounts>,
    bleu: Option<(BleuStats, Option<BleuStats>)>,
    chrf: Option<(ChrfStats, Option<ChrfStats>)>,
    ter: Option<(TerStats, Option<TerStats>)>,
    /// GLEU against each reference, of the 1-best and of the prediction.
    gleu: Option<(Vec<GleuStats>, Option<Vec<GleuStats>>)>,
    /// The prediction's edits scored against each reference's.
    edits: Option<Vec<EditScore>>,
    /// Whether the prediction, normalised, is not the 1-best.
    changed: bool,
    /// The alignments of the 1-best and of the prediction (`--per-record`).
    alignments: Option<(records::Alignment, Option<records::Alignment>)>,
}

/// A record that will be scored, with its resolved task.
struct Scorable<'a> {
    entry: &'a Entry,
    record: &'a Record,
    task: Task,
    /// Its references, the one WER and CER use first.
    references: Vec<&'a str>,
}

/// Scores one file; also returns what it used, for the signatures.
fn score_file(
    input: &Input,
    settings: &Settings,
    normalizer: Option<&Normalizer>,
) -> (FileReport, Used) {
    let (scorable, unscored, assumed_task) = scorable_records(input, settings);
    let with_predictions = scorable.iter().any(|s| s.record.prediction.is_some());
    let fallbacks = if with_predictions {
        scorable
            .iter()
            .filter(|s| corrected_text(s.record).is_none())
            .map(|s| note(s.entry, fallback_reason(s.record)))
            .collect()
    } else {
        Vec::new()
    };
    let scores = score_all(
        &scorable,
        normalizer,
        with_predictions,
        settings,
        settings.per_record,
    );
    let used = Used {
        bleu: settings.bleu,
        chrf: settings.chrf,
        ter: settings.ter,
        normalizers: scores
            .iter()
            .map(|s| (s.task, s.normalizer.clone()))
            .collect(),
        references: scores.iter().map(|s| (s.task, s.references)).collect(),
    };
    // The other system's records, scored as they are (its predictions, or its 1-bests).
    let mut against_unscored = Vec::new();
    let base_scores = settings.against.as_ref().map(|base| {
        let (scorable, unscored, _) = scorable_records(base, settings);
        against_unscored = unscored;
        let with_predictions = scorable.iter().any(|s| s.record.prediction.is_some());
        (
            base.path.as_str(),
            score_all(&scorable, normalizer, with_predictions, settings, false),
        )
    });
    let base = (base_scores.as_ref()).map(|(path, scores)| against::Base::new(path, scores));
    let bootstrap = (settings.paired_bs)
        .filter(|_| with_predictions || base.is_some())
        .map(|bs| against::Bootstrap {
            bs,
            ar: settings.paired_ar,
            base: base.as_ref(),
        });
    let groups = groups(&scores, settings, bootstrap.as_ref(), with_predictions);
    let mut guard = std::collections::BTreeMap::new();
    for r in input.entries.iter().filter_map(|e| e.record.as_ref().ok()) {
        if let Some(g) = &r.guard {
            *guard.entry(g.clone()).or_insert(0u64) += 1;
        }
    }
    let rows = match settings.per_record {
        true => rows(&input.path, &scorable, &scores, Scoring::of(settings)),
        false => Vec::new(),
    };
    let report = FileReport {
        rows,
        repeated_ids: repeated_ids(&input.entries),
        path: input.path.clone(),
        entries: input.entries.len() as u64,
        unscored,
        fallbacks,
        assumed_task,
        guard,
        correction: correction_signature(&input.path),
        against_unscored,
        groups,
    };
    (report, used)
}

/// The records of a file that can be scored, with their tasks; the others with the reason;
/// and how many were taken for ASR for want of a task.
fn scorable_records<'a>(
    input: &'a Input,
    settings: &Settings,
) -> (Vec<Scorable<'a>>, Vec<Unscored>, u64) {
    let mut unscored = Vec::new();
    let mut scorable = Vec::new();
    let mut assumed_task = 0;
    for entry in &input.entries {
        let record = match &entry.record {
            Ok(r) => r,
            Err(e) => {
                unscored.push(note(entry, e.to_string()));
                continue;
            }
        };
        let t = match (settings.task, record.task.as_deref()) {
            (Some(t), _) => t,
            (None, Some(name)) => match name.parse::<Task>() {
                Ok(t) => t,
                Err(e) => {
                    unscored.push(note(entry, e.to_string()));
                    continue;
                }
            },
            (None, None) => Task::Asr,
        };
        let references = record.references();
        if references.is_empty() {
            unscored.push(note(entry, "no reference (`output`)".to_string()));
            continue;
        }
        // Counted where it is scored so: an unscored record was scored as nothing.
        if settings.task.is_none() && record.task.is_none() {
            assumed_task += 1;
        }
        scorable.push(Scorable {
            entry,
            record,
            task: t,
            references,
        });
    }
    (scorable, unscored, assumed_task)
}

/// Every scorable record's statistics, under `normalizer` (else each task's default).
fn score_all(
    scorable: &[Scorable<'_>],
    normalizer: Option<&Normalizer>,
    with_predictions: bool,
    settings: &Settings,
    per_record: bool,
) -> Vec<RecordScore> {
    // GLEU's sentence d is a record's place among the file's GEC records, so that their
    // scores (and their group's) are JFLEG's on those sentences, whatever other tasks' records
    // come between.
    let gec_places: Vec<usize> = (scorable.iter())
        .scan(0, |gec, s| {
            let place = *gec;
            *gec += usize::from(s.task == Task::Gec);
            Some(place)
        })
        .collect();
    scorable
        .par_iter()
        .zip(gec_places)
        .map(|(s, position)| {
            let n = normalizer
                .cloned()
                .unwrap_or_else(|| Normalizer::default_for(s.task));
            score_record(s, position, &n, with_predictions, settings, per_record)
        })
        .collect()
}

/// The ids that more than one entry has, in the order they first repeat.
fn repeated_ids(entries: &[Entry]) -> Option<RepeatedIds> {
    let mut lines: HashMap<String, Vec<usize>> = HashMap::new();
    let mut repeated = Vec::new();
    for e in entries {
        let id = e.id().to_string();
        let at = lines.entry(id.clone()).or_default();
        at.push(e.line);
        if at.len() == 2 {
            repeated.push(id);
        }
    }
    let first = repeated.first()?.clone();
    Some(RepeatedIds {
        ids: repeated.len() as u64,
        lines: lines.remove(&first).unwrap_or_default(),
        first,
    })
}

/// The signature in the `FILE.sig` that `neko correct -o FILE` writes, when present and of
/// this FILE: a `.sig` of another kind (a dataset's detached signature) is none of neko's, and
/// one whose digest differs from FILE is a stale one beside a FILE written over since (`neko
/// correct > FILE` writes no `.sig`), which would name another run's model.
fn correction_signature(path: &str) -> Option<String> {
    let file = std::path::Path::new(path);
    let sig = crate::output::signature_path(file);
    let read = crate::output::read_signature(&sig).ok()?;
    if !read.signature.starts_with("correct|") {
        return None;
    }
    if !read.is_of(file) {
        crate::say!(
            "neko: {}: not the signature of {path} (written for another content of it: a later run wrote over it without -o?); left out",
            sig.display()
        );
        return None;
    }
    Some(read.signature)
}

fn note(entry: &Entry, reason: String) -> Unscored {
    Unscored {
        index: entry.index,
        line: entry.line,
        id: entry.id(),
        reason,
    }
}

/// The record's correction: its prediction, unless it failed (`neko correct` writes a failed
/// record with its 1-best as the prediction and an `error`, and that is no correction).
fn corrected_text(record: &Record) -> Option<&str> {
    match &record.error {
        Some(e) if !e.is_null() => None,
        _ => record.prediction.as_deref(),
    }
}

fn fallback_reason(record: &Record) -> String {
    let what = match record.prediction {
        Some(_) => "failed",
        None => "no prediction",
    };
    match &record.error {
        Some(Value::String(e)) => format!("{what} (error: {e}); scored with its 1-best"),
        Some(e) if !e.is_null() => format!("{what} (error: {e}); scored with its 1-best"),
        _ => "no prediction; scored with its 1-best".to_string(),
    }
}

/// Normalises each distinct text once (HyPoradise pads N-best lists with duplicates).
fn normalize_all(n: &Normalizer, texts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        match texts[..i].iter().position(|u| u == t) {
            Some(j) => out.push(out[j].clone()),
            None => out.push(n.apply(t)),
        }
    }
    out
}

fn score_record(
    s: &Scorable<'_>,
    position: usize,
    n: &Normalizer,
    with_predictions: bool,
    settings: &Settings,
    per_record: bool,
) -> RecordScore {
    let (bleu, chrf) = (settings.bleu, settings.chrf);
    let references: Vec<String> = s.references.iter().map(|r| n.apply(r)).collect();
    let refs: Vec<&str> = references.iter().map(String::as_str).collect();
    let reference = refs[0];
    let hyps = normalize_all(n, &s.record.hypotheses);
    let prediction = with_predictions.then(|| match corrected_text(s.record) {
        Some(p) => n.apply(p),
        None => hyps[0].clone(),
    });
    let ref_w = words(reference);
    let hyp_w: Vec<Vec<&str>> = hyps.iter().map(|h| words(h)).collect();
    let pred_w = prediction.as_deref().map(words);
    let one_best = align::counts(&ref_w, &hyp_w[0]);
    let nbest = !s.record.only_best;
    let best = oracle::nbest(&ref_w, &hyp_w).expect("records have hypotheses");
    let ref_c = cer_chars(reference);
    let chars = |t: &str| align::counts(&ref_c, &cer_chars(t));
    let pred = prediction.as_deref();
    let translation = matches!(s.task, Task::St | Task::Mt);
    let gec = s.task == Task::Gec;
    let source = &hyps[0];
    let laid_out = |h: &[&str]| records::Alignment::new(&ref_w, h, &align::align(&ref_w, h));
    RecordScore {
        index: s.entry.index,
        changed: prediction.as_ref().is_some_and(|p| *p != hyps[0]),
        alignments: per_record.then(|| (laid_out(&hyp_w[0]), pred_w.as_deref().map(laid_out))),
        position,
        references: refs.len(),
        task: s.task,
        normalizer: n.to_string(),
        source: s.record.source.clone(),
        reference_words: ref_w.len() as u64,
        reference_chars: ref_c.len() as u64,
        has_prediction: corrected_text(s.record).is_some(),
        one_best,
        oracle: nbest.then_some(best.counts),
        compositional: nbest.then(|| oracle::compositional(&ref_w, &hyp_w)),
        corrected: pred_w.as_ref().map(|p| align::counts(&ref_w, p)),
        cer_one_best: chars(&hyps[0]),
        cer_corrected: prediction.as_deref().map(chars),
        bleu: translation
            .then(|| both(&hyps[0], pred, |h| BleuStats::segment_with(bleu, h, &refs))),
        chrf: translation
            .then(|| both(&hyps[0], pred, |h| ChrfStats::segment_with(chrf, h, &refs))),
        ter: translation.then(|| {
            both(&hyps[0], pred, |h| {
                TerStats::segment_with(settings.ter, h, &refs)
            })
        }),
        gleu: gec.then(|| {
            both(&hyps[0], pred, |h| {
                refs.iter()
                    .map(|r| GleuStats::segment(source, h, r))
                    .collect()
            })
        }),
        edits: (gec && with_predictions).then(|| {
            let h = prediction.as_deref().unwrap_or("");
            refs.iter()
                .map(|r| EditScore::segment(source, h, r))
                .collect()
        }),
    }
}

/// The prediction's word errors minus the 1-best's (0 without a prediction).
fn word_change(m: &RecordScore) -> i64 {
    let corrected = m.corrected.map_or(m.one_best.errors(), |c| c.errors());
    corrected as i64 - m.one_best.errors() as i64
}

/// The `--per-record` rows of a file's scored records.
fn rows(
    path: &str,
    scorable: &[Scorable<'_>],
    scores: &[RecordScore],
    scoring: Scoring,
) -> Vec<records::RecordRow> {
    (scorable.iter().zip(scores))
        .filter_map(|(s, m)| {
            let (one, corr) = m.alignments.as_ref()?;
            let (one_sentence, corr_sentence) = sentences(m, scoring);
            Some(records::RecordRow {
                file: path.to_string(),
                normalizer: m.normalizer.clone(),
                index: s.entry.index,
                line: s.entry.line,
                id: s.entry.id(),
                task: m.task,
                source: m.source.clone(),
                reference_words: m.reference_words,
                one_best: records::Side::new(m.one_best, one_sentence, one.clone()),
                corrected: (m.corrected.zip(corr.as_ref()))
                    .map(|(c, a)| records::Side::new(c, corr_sentence, a.clone())),
                change: m.corrected.map(|_| word_change(m)),
            })
        })
        .collect()
}

/// The sentence scores of an ST/MT record's 1-best and of its prediction.
fn sentences(
    m: &RecordScore,
    scoring: Scoring,
) -> (Option<records::Sentence>, Option<records::Sentence>) {
    let (Some(b), Some(c), Some(t)) = (&m.bleu, &m.chrf, &m.ter) else {
        return (None, None);
    };
    let of = |b: &BleuStats, c: &ChrfStats, t: &TerStats| records::Sentence {
        bleu: b.sentence_score_with(scoring.bleu),
        chrf: c.score_with(scoring.chrf),
        ter: t.score(),
    };
    let corrected = match (&b.1, &c.1, &t.1) {
        (Some(b), Some(c), Some(t)) => Some(of(b, c, t)),
        _ => None,
    };
    (Some(of(&b.0, &c.0, &t.0)), corrected)
}

/// A statistic of the 1-best and, when there is one, of the prediction.
fn both<S>(one_best: &str, prediction: Option<&str>, f: impl Fn(&str) -> S) -> (S, Option<S>) {
    (f(one_best), prediction.map(f))
}

/// What turns pooled statistics into scores: BLEU's smoothing, chrF's orders, beta and
/// smoothing.
#[derive(Clone, Copy)]
struct Scoring {
    bleu: Smooth,
    chrf: ChrfOptions,
}

impl Scoring {
    fn of(settings: &Settings) -> Self {
        Scoring {
            bleu: settings.bleu.smooth,
            chrf: settings.chrf,
        }
    }
}

/// The whole file, then its groups in name order.
fn groups(
    scores: &[RecordScore],
    settings: &Settings,
    bootstrap: Option<&against::Bootstrap<'_>>,
    with_predictions: bool,
) -> Vec<GroupReport> {
    let all: Vec<&RecordScore> = scores.iter().collect();
    let scoring = Scoring::of(settings);
    let group = |name: &str, members: &[&RecordScore]| {
        let mut g = group(name, members, bootstrap, with_predictions, scoring);
        g.confidence =
            (settings.confidence).and_then(|bs| spreads(members, bs, with_predictions, scoring));
        g
    };
    let mut out = vec![group("all", &all)];
    let by = match settings.group_by {
        GroupBy::Auto if scores.iter().any(|s| s.source.is_some()) => GroupBy::Source,
        GroupBy::Auto if scores.iter().map(|s| s.task).collect::<BTreeSet<_>>().len() > 1 => {
            GroupBy::Task
        }
        GroupBy::Auto => GroupBy::None,
        other => other,
    };
    let key = |s: &RecordScore| -> Option<String> {
        match by {
            // Not `source=...`: no source value can then name this group.
            GroupBy::Source => Some(match s.source.as_deref() {
                Some(source) => format!("source={source}"),
                None => "no source".to_string(),
            }),
            GroupBy::Task => Some(format!("task={}", s.task)),
            _ => None,
        }
    };
    let mut keyed: BTreeMap<String, Vec<&RecordScore>> = BTreeMap::new();
    for s in scores {
        if let Some(k) = key(s) {
            keyed.entry(k).or_default().push(s);
        }
    }
    out.extend(keyed.iter().map(|(name, members)| group(name, members)));
    out
}

/// Pooled counts plus the running per-utterance mean.
#[derive(Default)]
struct RateSum {
    counts: EditCounts,
    utt_sum: f64,
    utterances: u64,
}

impl RateSum {
    fn add(&mut self, c: EditCounts) {
        self.counts += c;
        let n = c.reference_len();
        if n > 0 {
            self.utt_sum += c.errors() as f64 / n as f64;
            self.utterances += 1;
        }
    }

    fn rate(&self) -> Rate {
        Rate::new(self.counts, self.utt_sum, self.utterances)
    }
}

fn rate_of(
    members: &[&RecordScore],
    f: impl Fn(&RecordScore) -> Option<EditCounts>,
) -> Option<Rate> {
    let mut sum = RateSum::default();
    let mut any = false;
    for m in members {
        if let Some(c) = f(m) {
            sum.add(c);
            any = true;
        }
    }
    any.then(|| sum.rate())
}

/// The rate of a statistic only if every member has it: an oracle over part of a group
/// would read as the group's.
fn every_record(
    members: &[&RecordScore],
    f: impl Fn(&RecordScore) -> Option<EditCounts>,
) -> Option<Rate> {
    members
        .iter()
        .all(|m| f(m).is_some())
        .then(|| rate_of(members, f))
        .flatten()
}

/// Sums a pair of per-record statistics over the members that have them.
fn pair_of<S: Default + std::ops::AddAssign + Copy>(
    members: &[&RecordScore],
    f: impl Fn(&RecordScore) -> Option<(S, Option<S>)>,
    score: impl Fn(&S) -> f64,
) -> Option<Pair<Scored<S>>> {
    let (mut one, mut corr, mut records, mut has_corr) = (S::default(), S::default(), 0, false);
    for (a, b) in members.iter().filter_map(|m| f(m)) {
        one += a;
        records += 1;
        if let Some(b) = b {
            corr += b;
            has_corr = true;
        }
    }
    let scored = |s: S| Scored {
        score: score(&s),
        records,
        stats: s,
        draws: None,
    };
    (records > 0).then(|| Pair {
        one_best: scored(one),
        corrected: has_corr.then(|| scored(corr)),
    })
}

/// What a file's scores used, for the signatures: BLEU's, chrF's and TER's
/// options, each task's normaliser, and each task's numbers of references.
#[derive(Default)]
pub struct Used {
    pub bleu: BleuOptions,
    pub chrf: ChrfOptions,
    pub ter: TerOptions,
    pub normalizers: BTreeSet<(Task, String)>,
    pub references: BTreeSet<(Task, usize)>,
}

impl Used {
    fn extend(&mut self, other: Used) {
        self.bleu = other.bleu;
        self.chrf = other.chrf;
        self.ter = other.ter;
        self.normalizers.extend(other.normalizers);
        self.references.extend(other.references);
    }
}

/// The edit score of the reference to count for a record, given those before it: ERRANT's
/// choice among annotators (the highest running F0.5, then more true positives, then fewer
/// false positives, then fewer false negatives; the first of equals). ERRANT compares F0.5
/// rounded to 4 decimals (its `computeFScore`), so near-ties go to more true positives.
fn best_reference(so_far: EditScore, per_reference: &[EditScore]) -> EditScore {
    let key = |e: &EditScore| {
        let mut running = so_far;
        running += *e;
        (
            (running.f_beta(0.5) * 1e4).round() / 1e4,
            e.true_positives as i64,
            -(e.false_positives as i64),
            -(e.false_negatives as i64),
        )
    };
    let mut best = per_reference[0];
    for e in &per_reference[1..] {
        if key(e).partial_cmp(&key(&best)) == Some(std::cmp::Ordering::Greater) {
            best = *e;
        }
    }
    best
}

/// The GLEU sentences of the members, 1-best side and prediction side (members without a
/// prediction side are left out of it).
fn gleu_sentences<'a>(
    members: &[&'a RecordScore],
) -> (Vec<gleu::Sentence<'a>>, Vec<gleu::Sentence<'a>>) {
    let (mut one, mut corr) = (Vec::new(), Vec::new());
    for m in members {
        let Some((a, b)) = &m.gleu else { continue };
        let at = |stats| gleu::Sentence {
            position: m.position,
            stats,
        };
        one.push(at(a.as_slice()));
        if let Some(b) = b {
            corr.push(at(b.as_slice()));
        }
    }
    (one, corr)
}

/// GLEU of the 1-best and of the predictions: JFLEG's mean over reference draws when some
/// record has several references ([`gleu::sampled_score`]).
fn gleu_pair(members: &[&RecordScore]) -> Option<Pair<Scored<GleuStats>>> {
    let (one, corr) = gleu_sentences(members);
    let sampled = one.iter().any(|s| s.stats.len() > 1);
    let scored = |sentences: &[gleu::Sentence<'_>]| Scored {
        score: gleu::sampled_score(sentences),
        records: one.len() as u64,
        stats: gleu::drawn(0, sentences),
        draws: sampled.then_some(gleu::DRAWS as u64),
    };
    (!one.is_empty()).then(|| Pair {
        one_best: scored(&one),
        corrected: (!corr.is_empty()).then(|| scored(&corr)),
    })
}

/// The paired bootstrap of GLEU, with its approximate randomization p-value when asked for.
/// With several references, each resample (or trial) also takes one draw of references
/// (resample `r`, draw `r mod 500`), so the interval covers the references' spread as well as
/// the records'.
fn gleu_interval(
    members: &[&RecordScore],
    t: &against::Bootstrap<'_>,
) -> Option<bootstrap::Interval> {
    let sides = paired(members, t.base, |m| m.gleu.clone());
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (m, side) in members.iter().zip(&sides) {
        let Some((a, b)) = side else { continue };
        before.push(gleu::Sentence {
            position: m.position,
            stats: a,
        });
        after.push(gleu::Sentence {
            position: m.position,
            stats: b,
        });
    }
    if before.is_empty() {
        return None;
    }
    let delta = gleu::sampled_score(&after) - gleu::sampled_score(&before);
    let pairs_of = |draw: usize| -> Vec<(GleuStats, GleuStats)> {
        let chosen = gleu::choices(draw, &before);
        (before.iter().zip(&after).zip(chosen))
            .map(|((a, b), r)| (a.stats[r], b.stats[r]))
            .collect()
    };
    let single = before
        .iter()
        .all(|s| s.stats.len() == 1)
        .then(|| pairs_of(0));
    // Resample or trial `r` takes draw `r mod 500` of the references (all the same with one).
    let pairs_for = |r: usize| match &single {
        Some(p) => std::borrow::Cow::Borrowed(p),
        None => std::borrow::Cow::Owned(pairs_of(r % gleu::DRAWS)),
    };
    let mut iv = bootstrap::interval_with(
        delta,
        before.len(),
        |r, draw| {
            let pairs = pairs_for(r);
            let (mut a, mut b) = (GleuStats::default(), GleuStats::default());
            for i in draw {
                a += pairs[i].0;
                b += pairs[i].1;
            }
            b.score() - a.score()
        },
        bootstrap::Better::Higher,
        t.bs,
    )?;
    iv.p_ar = t.ar.and_then(|ar| {
        let shuffled = |r: usize, swaps: &mut dyn Iterator<Item = bool>| {
            let (mut a, mut b) = (GleuStats::default(), GleuStats::default());
            for (&(x, y), swap) in pairs_for(r).iter().zip(swaps) {
                let (x, y) = if swap { (y, x) } else { (x, y) };
                a += x;
                b += y;
            }
            (b.score() - a.score()).abs()
        };
        // Each trial against the observed difference under its own draw of references: the
        // mean over draws (`delta`) is another statistic than one draw's.
        let observed = |r: usize| shuffled(r, &mut std::iter::repeat(false));
        randomization::p_value_with(observed, before.len(), shuffled, ar)
    });
    Some(iv)
}

fn group(
    name: &str,
    members: &[&RecordScore],
    bootstrap: Option<&against::Bootstrap<'_>>,
    with_predictions: bool,
    scoring: Scoring,
) -> GroupReport {
    let corrected = rate_of(members, |m| m.corrected).filter(|_| with_predictions);
    let wer = rate_of(members, |m| Some(m.one_best)).map(|one_best| WerScores {
        one_best,
        oracle_nbest: every_record(members, |m| m.oracle),
        oracle_compositional: every_record(members, |m| m.compositional),
        corrected,
        relative_reduction: corrected
            .filter(|_| one_best.rate > 0.0)
            .map(|c| 100.0 * (one_best.rate - c.rate) / one_best.rate),
    });
    let cer = rate_of(members, |m| Some(m.cer_one_best)).map(|one_best| Pair {
        one_best,
        corrected: rate_of(members, |m| m.cer_corrected).filter(|_| with_predictions),
    });
    let tasks: BTreeSet<Task> = members.iter().map(|m| m.task).collect();
    let mut edits = EditScore::default();
    let mut any_edits = false;
    for per_reference in members.iter().filter_map(|m| m.edits.as_deref()) {
        edits += best_reference(edits, per_reference);
        any_edits = true;
    }
    GroupReport {
        name: name.to_string(),
        task: (tasks.len() == 1).then(|| *tasks.first().expect("one task")),
        normalizer: signature::normalizer_label(
            members.iter().map(|m| (m.task, m.normalizer.clone())),
        ),
        records: members.len() as u64,
        reference_words: members.iter().map(|m| m.reference_words).sum(),
        reference_chars: members.iter().map(|m| m.reference_chars).sum(),
        predictions: members.iter().filter(|m| m.has_prediction).count() as u64,
        wer,
        cer,
        bleu: pair_of(members, |m| m.bleu, |s| s.score_with(scoring.bleu)),
        chrf: pair_of(members, |m| m.chrf, |s| s.score_with(scoring.chrf)),
        ter: pair_of(members, |m| m.ter, TerStats::score),
        gleu: gleu_pair(members),
        edits: any_edits.then(|| Edits::new(edits)),
        changes: with_predictions.then(|| {
            let mut c = records::Changes::default();
            for m in members {
                c.add(m.changed, word_change(m));
            }
            c
        }),
        significance: bootstrap.and_then(|b| significance(members, b, scoring)),
        confidence: None,
    }
}

/// The paired bootstrap of every metric the group has: its predictions against their 1-best
/// (with predictions, every record has a corrected side: its prediction, or its 1-best in its
/// place), or, with `--against`, its records against the other system's. `None` when no
/// record has a partner.
fn significance(
    members: &[&RecordScore],
    b: &against::Bootstrap<'_>,
    scoring: Scoring,
) -> Option<bootstrap::Significance> {
    use bootstrap::Better;
    let base = b.base;
    let rate = |c: &EditCounts| 100.0 * c.error_rate();
    let wer = paired(members, base, |m| Some((m.one_best, m.corrected)));
    let cer = paired(members, base, |m| Some((m.cer_one_best, m.cer_corrected)));
    Some(bootstrap::Significance {
        resamples: b.bs.resamples as u64,
        seed: b.bs.seed,
        against: base.map(|b| b.path.to_string()),
        ar_trials: b.ar.map(|ar| ar.trials as u64),
        wer: tested(&wer, rate, Better::Lower, b)?,
        cer: tested(&cer, rate, Better::Lower, b)?,
        bleu: tested(
            &paired(members, base, |m| m.bleu),
            |s: &BleuStats| s.score_with(scoring.bleu),
            Better::Higher,
            b,
        ),
        chrf: tested(
            &paired(members, base, |m| m.chrf),
            |s: &ChrfStats| s.score_with(scoring.chrf),
            Better::Higher,
            b,
        ),
        ter: tested(
            &paired(members, base, |m| m.ter),
            TerStats::score,
            Better::Lower,
            b,
        ),
        gleu: gleu_interval(members, b),
    })
}

/// One metric's paired bootstrap interval, with its approximate randomization p-value when
/// asked for.
fn tested<S: Default + Copy + std::ops::AddAssign>(
    pairs: &[Option<(S, S)>],
    score: impl Fn(&S) -> f64,
    better: bootstrap::Better,
    b: &against::Bootstrap<'_>,
) -> Option<bootstrap::Interval> {
    let mut iv = bootstrap::interval(pairs, &score, better, b.bs)?;
    iv.p_ar =
        b.ar.and_then(|ar| randomization::p_value(pairs, &score, ar));
    Some(iv)
}

/// The spread of every metric the group has (`--confidence`), of its 1-best and, in a file
/// with predictions, of its predictions (a record without one counts its 1-best, as scored).
fn spreads(
    members: &[&RecordScore],
    bs: bootstrap::PairedBs,
    with_predictions: bool,
    scoring: Scoring,
) -> Option<bootstrap::Confidence> {
    let rate = |c: &EditCounts| 100.0 * c.error_rate();
    let p = with_predictions;
    Some(bootstrap::Confidence {
        resamples: bs.resamples as u64,
        seed: bs.seed,
        wer: spreads_of(members, |m| Some((m.one_best, m.corrected)), rate, bs, p)?,
        cer: spreads_of(
            members,
            |m| Some((m.cer_one_best, m.cer_corrected)),
            rate,
            bs,
            p,
        )?,
        bleu: spreads_of(members, |m| m.bleu, |s| s.score_with(scoring.bleu), bs, p),
        chrf: spreads_of(members, |m| m.chrf, |s| s.score_with(scoring.chrf), bs, p),
        ter: spreads_of(members, |m| m.ter, TerStats::score, bs, p),
        gleu: gleu_spreads(members, bs, with_predictions),
    })
}

/// One metric's spreads, from each member's (1-best, prediction) statistics.
fn spreads_of<S: Default + Copy + std::ops::AddAssign>(
    members: &[&RecordScore],
    f: impl Fn(&RecordScore) -> Option<(S, Option<S>)>,
    score: impl Fn(&S) -> f64,
    bs: bootstrap::PairedBs,
    with_predictions: bool,
) -> Option<bootstrap::Spreads> {
    let pairs: Vec<(S, Option<S>)> = members.iter().filter_map(|m| f(m)).collect();
    let one: Vec<S> = pairs.iter().map(|p| p.0).collect();
    let corrected: Vec<S> = pairs.iter().map(|p| p.1.unwrap_or(p.0)).collect();
    Some(bootstrap::Spreads {
        one_best: bootstrap::spread(&one, &score, bs)?,
        corrected: with_predictions
            .then(|| bootstrap::spread(&corrected, &score, bs))
            .flatten(),
    })
}

/// GLEU's spread; with several references each resample takes one draw of references too
/// (resample `r`, draw `r mod 500`), as GLEU's paired bootstrap does.
fn gleu_spreads(
    members: &[&RecordScore],
    bs: bootstrap::PairedBs,
    with_predictions: bool,
) -> Option<bootstrap::Spreads> {
    let (one, corr) = gleu_sentences(members);
    let of = |side: &[gleu::Sentence<'_>]| {
        let single = side.iter().all(|s| s.stats.len() == 1);
        bootstrap::spread_with(
            side.len(),
            |r, draw| {
                let chosen = match single {
                    true => vec![0; side.len()],
                    false => gleu::choices(r % gleu::DRAWS, side),
                };
                let mut sum = GleuStats::default();
                for i in draw {
                    sum += side[i].stats[chosen[i]];
                }
                sum.score()
            },
            bs,
        )
    };
    Some(bootstrap::Spreads {
        one_best: of(&one)?,
        corrected: (with_predictions && !corr.is_empty())
            .then(|| of(&corr))
            .flatten(),
    })
}

/// Each member's (before, after) statistics, where it has both: its (1-best, prediction), or
/// with a base, (the base's record, the member), each as scored (its prediction where its
/// file has predictions, else its 1-best).
fn paired<S: Clone>(
    members: &[&RecordScore],
    base: Option<&against::Base<'_>>,
    f: impl Fn(&RecordScore) -> Option<(S, Option<S>)>,
) -> Vec<Option<(S, S)>> {
    let as_scored = |(one, corrected): (S, Option<S>)| corrected.unwrap_or(one);
    let pair = |m: &RecordScore| match base {
        None => f(m).and_then(|(a, b)| Some((a, b?))),
        Some(base) => Some((as_scored(f(base.record(m.index)?)?), as_scored(f(m)?))),
    };
    members.iter().map(|m| pair(m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(true_positives: u64, false_positives: u64, false_negatives: u64) -> EditScore {
        EditScore {
            true_positives,
            false_positives,
            false_negatives,
        }
    }

    /// Two annotators whose running F0.5 agree to 4 decimals (0.846284 and 0.846310): ERRANT
    /// rounds before comparing, so the one with more true positives is counted.
    #[test]
    fn near_ties_between_annotators_go_to_more_true_positives() {
        let so_far = score(500, 0, 450);
        let (noop, edits) = (score(0, 1, 0), score(1, 0, 5));
        let f = |e: EditScore| {
            let mut r = so_far;
            r += e;
            r.f_beta(0.5)
        };
        assert!((f(noop) - f(edits)).abs() < 5e-5 && f(noop) != f(edits));
        assert_eq!(best_reference(so_far, &[noop, edits]), edits);
        assert_eq!(best_reference(so_far, &[edits, noop]), edits);
    }
}
