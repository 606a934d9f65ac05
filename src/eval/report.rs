//! The report of `neko eval`: what was scored, with which settings, and every number, as plain
//! serde types (the `--json` output and the `--baseline` input are these types).
//!
//! Rates and scores are percentages (0-100). Counts are the sufficient statistics behind them,
//! so numbers can be re-pooled without the records.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::bleu::BleuStats;
use crate::metrics::chrf::ChrfStats;
use crate::metrics::edits::EditScore;
use crate::metrics::gleu::GleuStats;
use crate::metrics::ter::TerStats;
use crate::metrics::EditCounts;
use crate::Task;

/// Everything `neko eval` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The neko version that scored.
    pub neko: String,
    /// One run per normaliser asked for (one run when none was asked for).
    pub runs: Vec<Run>,
    /// Files that could not be read at all.
    #[serde(default)]
    pub errors: Vec<FileError>,
    /// The comparison with `--baseline`, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<super::baseline::Comparison>,
}

/// The scores of every file under one normalisation setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The normaliser asked for, or `None` for each task's default.
    pub normalizer: Option<String>,
    /// The normalisers actually applied: one spec, or `task=spec,...` when task defaults differ.
    pub normalizer_label: String,
    /// The task forced with `--task`, if any.
    pub task: Option<Task>,
    /// How records were grouped inside files.
    pub group_by: String,
    /// BLEU's tokeniser (reports written before it could be chosen: `13a`).
    #[serde(default = "default_bleu_tokenize")]
    pub bleu_tokenize: String,
    /// BLEU lower-cased (`--lowercase`; older reports: no).
    #[serde(default)]
    pub bleu_lowercase: bool,
    /// BLEU's smoothing (older reports: `exp`).
    #[serde(default)]
    pub bleu_smooth: crate::metrics::bleu::Smooth,
    /// chrF's word n-gram order: 0 chrF, 2 chrF++ (older reports: 0).
    #[serde(default)]
    pub chrf_word_order: usize,
    /// chrF's character order (older reports: 6).
    #[serde(default = "default_chrf_char_order")]
    pub chrf_char_order: usize,
    /// chrF's beta (older reports: 2).
    #[serde(default = "default_chrf_beta")]
    pub chrf_beta: u32,
    /// chrF lower-cased (older reports: no).
    #[serde(default)]
    pub chrf_lowercase: bool,
    /// chrF with whitespace (older reports: no).
    #[serde(default)]
    pub chrf_whitespace: bool,
    /// chrF with epsilon smoothing (older reports: no).
    #[serde(default)]
    pub chrf_eps_smoothing: bool,
    /// TER's options (older reports: sacrebleu's defaults).
    #[serde(default)]
    pub ter: crate::metrics::ter::TerOptions,
    /// Per-file results, in the order given.
    pub files: Vec<FileReport>,
    /// One signature per metric family present (`wer`, `cer`, `bleu`, `chrf`, `ter`, `gleu`, `edits`).
    pub signatures: Vec<String>,
}

impl Run {
    /// The chrF options the run was scored with.
    pub fn chrf_options(&self) -> crate::metrics::chrf::ChrfOptions {
        crate::metrics::chrf::ChrfOptions {
            char_order: self.chrf_char_order,
            word_order: self.chrf_word_order,
            beta: self.chrf_beta,
            lowercase: self.chrf_lowercase,
            whitespace: self.chrf_whitespace,
            eps_smoothing: self.chrf_eps_smoothing,
        }
    }
}

fn default_chrf_char_order() -> usize {
    crate::metrics::chrf::CHAR_ORDER
}

fn default_chrf_beta() -> u32 {
    crate::metrics::chrf::BETA
}

fn default_bleu_tokenize() -> String {
    crate::metrics::bleu::Tokenizer::default().to_string()
}

/// The scores of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileReport {
    /// The path as given on the command line.
    pub path: String,
    /// Records read (scored or not).
    pub entries: u64,
    /// Records that could not be scored, each with the reason.
    pub unscored: Vec<Unscored>,
    /// Records without a prediction in a file that has predictions: scored with their 1-best.
    pub fallbacks: Vec<Unscored>,
    /// Records whose task was assumed (`asr`) because neither the record nor `--task` gave one.
    pub assumed_task: u64,
    /// Records where `neko correct`'s over-correction guard kept the 1-best, by reason
    /// (`fallback:edit`, ...). Empty for files that are not `neko correct` output.
    #[serde(default)]
    pub guard: std::collections::BTreeMap<String, u64>,
    /// The signature of the `neko correct` run that wrote the file (from `FILE.sig`), when
    /// there is one: model fingerprint, routing, decoding, prompt and guard settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
    /// Ids that more than one record of the file has (each record is scored: a file
    /// concatenated twice counts twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated_ids: Option<RepeatedIds>,
    /// `--against` BASE's records that could not be scored (a broken line, an unknown task,
    /// no reference): this file's records at their positions have no partner, and the
    /// comparison leaves them out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub against_unscored: Vec<Unscored>,
    /// The whole file first (`all`), then its groups.
    pub groups: Vec<GroupReport>,
    /// A row per scored record, with `--per-record` (written to its own file, not the report).
    #[serde(skip)]
    pub rows: Vec<super::records::RecordRow>,
}

/// Ids on more than one record of a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepeatedIds {
    /// How many ids repeat.
    pub ids: u64,
    /// The first that does (as JSON text), and the lines of its records.
    pub first: String,
    pub lines: Vec<usize>,
}

/// A record left out of (or specially treated in) the scores, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unscored {
    /// 0-based position among the file's records.
    pub index: usize,
    /// 1-based line where the record starts.
    pub line: usize,
    /// The record's id (or its position).
    pub id: Value,
    /// Why, in words.
    pub reason: String,
}

/// A file that could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileError {
    /// The path as given.
    pub path: String,
    /// The error.
    pub message: String,
}

/// Scores of a set of records: a whole file or one group of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    /// `all`, `source=NAME` or `task=NAME`.
    pub name: String,
    /// The records' task when they share one.
    pub task: Option<Task>,
    /// The normaliser (or `task=normaliser,...` when tasks with different defaults are mixed).
    pub normalizer: String,
    /// Records scored.
    pub records: u64,
    /// Reference words after normalisation.
    pub reference_words: u64,
    /// Reference characters after normalisation (whitespace runs count as one).
    pub reference_chars: u64,
    /// Records with their own prediction.
    pub predictions: u64,
    /// Word error rates; `None` (null) when no record was scored: no record, no rate.
    pub wer: Option<WerScores>,
    /// Character error rates; `None` as above.
    pub cer: Option<Pair<Rate>>,
    /// BLEU over the group's ST/MT records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bleu: Option<Pair<Scored<BleuStats>>>,
    /// chrF over the group's ST/MT records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chrf: Option<Pair<Scored<ChrfStats>>>,
    /// TER over the group's ST/MT records (lower is better).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ter: Option<Pair<Scored<TerStats>>>,
    /// GLEU over the group's GEC records (source = the 1-best).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gleu: Option<Pair<Scored<GleuStats>>>,
    /// Edit precision / recall / F0.5 of the predictions on the group's GEC records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edits: Option<Edits>,
    /// The paired bootstrap of the predictions against the 1-best (`--paired-bs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub significance: Option<super::bootstrap::Significance>,
    /// Each score's spread over resamples of the records (`--confidence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<super::bootstrap::Confidence>,
    /// How the predictions changed the records' word errors (files with predictions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<super::records::Changes>,
}

/// A 1-best value and, when the file has predictions, the corrected value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair<T> {
    /// The first hypothesis, as the recogniser gave it.
    pub one_best: T,
    /// The prediction (`neko correct` output), when present.
    pub corrected: Option<T>,
}

/// An error rate with its counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Matched tokens.
    pub hits: u64,
    /// Substitutions.
    pub substitutions: u64,
    /// Deletions.
    pub deletions: u64,
    /// Insertions.
    pub insertions: u64,
    /// Corpus rate: errors pooled over reference tokens, in percent (jiwer 4 convention for an
    /// empty reference side: 100 × insertions).
    pub rate: f64,
    /// Mean of the per-record rates over records with a non-empty reference, in percent.
    pub per_utterance: Option<f64>,
    /// Records in that mean.
    pub utterances: u64,
}

impl Rate {
    /// A rate from pooled counts and the per-record rates' sum and count.
    pub fn new(c: EditCounts, utt_sum: f64, utterances: u64) -> Self {
        Rate {
            hits: c.hits,
            substitutions: c.substitutions,
            deletions: c.deletions,
            insertions: c.insertions,
            rate: 100.0 * c.error_rate(),
            per_utterance: (utterances > 0).then(|| 100.0 * utt_sum / utterances as f64),
            utterances,
        }
    }

    /// Substitutions + deletions + insertions.
    pub fn errors(&self) -> u64 {
        self.substitutions + self.deletions + self.insertions
    }
}

/// Word error rates of the 1-best, the oracles and the predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WerScores {
    /// The first hypothesis.
    pub one_best: Rate,
    /// The best hypothesis of each record; `None` when a record gave only its 1-best.
    pub oracle_nbest: Option<Rate>,
    /// The best recombination of hypothesis words (see `docs/eval.md`); `None` as above.
    pub oracle_compositional: Option<Rate>,
    /// The predictions, when the file has them.
    pub corrected: Option<Rate>,
    /// `(1-best - corrected) / 1-best` of the corpus WERs, in percent.
    pub relative_reduction: Option<f64>,
}

/// A score (percent) with the statistics it was computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored<S> {
    /// The score, 0-100.
    pub score: f64,
    /// Records it covers.
    pub records: u64,
    /// Its sufficient statistics (GLEU with several references: those of the first draw).
    pub stats: S,
    /// GLEU with several references: the score is the mean over this many draws of one
    /// reference per record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draws: Option<u64>,
}

/// GEC edit scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edits {
    /// True positives, false positives and false negatives.
    pub counts: EditScore,
    /// Precision, percent.
    pub precision: f64,
    /// Recall, percent.
    pub recall: f64,
    /// F0.5, percent.
    pub f05: f64,
}

impl Edits {
    /// Scores from pooled counts.
    pub fn new(counts: EditScore) -> Self {
        Edits {
            counts,
            precision: 100.0 * counts.precision(),
            recall: 100.0 * counts.recall(),
            f05: 100.0 * counts.f_beta(0.5),
        }
    }
}

/// The paired bootstrap settings of a run, from its first group that has one (`--paired-bs`
/// gives every group with predictions the same).
pub fn first_significance(files: &[FileReport]) -> Option<&super::bootstrap::Significance> {
    files
        .iter()
        .flat_map(|f| &f.groups)
        .find_map(|g| g.significance.as_ref())
}

/// The first group's `--confidence` spreads, if any.
pub fn first_confidence(files: &[FileReport]) -> Option<&super::bootstrap::Confidence> {
    files
        .iter()
        .flat_map(|f| &f.groups)
        .find_map(|g| g.confidence.as_ref())
}
