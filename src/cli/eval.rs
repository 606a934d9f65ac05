//! `neko eval`: scores files of records (raw benchmark files or `neko correct` output) and
//! optionally gates on a baseline report. Data goes to stdout, diagnostics to stderr.
//!
//! Exit codes: 0 scored (and no regression); 1 a score regressed against `--baseline` by more
//! than `--max-regression`, a file scored fewer or more records than its baseline, or no file
//! matched the baseline; 2 an error (bad flags, an unreadable file or baseline). A file that
//! cannot be read is reported and the other files are still scored.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{EXIT_ERROR, EXIT_OK, EXIT_REGRESSION};
use crate::eval::{self, baseline, GroupBy, Report, Settings};
use crate::normalize::Normalizer;
use crate::Task;

/// Flags of `neko eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Record files to score: JSONL (`neko correct` output has `prediction`), HyPoradise JSON
    /// arrays, or plain text; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// References in a file of their own, one per line (as jiwer and sacrebleu take them):
    /// line k is the reference of the k-th record of every FILE, which must have as many
    /// records as it has lines. sclite `trn` (`text (ID)`) and Kaldi `text` (`ID text`) pair
    /// by utterance id instead; an M2 gold standard (GEC) gives sentence k's corrections (one
    /// per annotator) to record k, and its sentence as the source. Replaces the records' own
    /// references (`output`). Given again (`--ref a --ref b`), each further file adds a
    /// reference (BLEU, chrF, TER, GLEU and edits use all; WER and CER the first).
    #[arg(long = "ref", env = "NEKO_EVAL_REF", value_name = "REF")]
    pub reference: Vec<PathBuf>,

    /// Task of every record (asr, st, mt, ocr, gec). Default: each record's `task` field, and
    /// asr for records without one (said on stderr).
    #[arg(long, env = "NEKO_EVAL_TASK", value_name = "TASK")]
    pub task: Option<Task>,

    /// Normaliser applied to references, hypotheses and predictions before scoring: a stage or a
    /// `+`-joined pipeline of stages (none, basic, h2t, whisper-en, whisper-basic, lower, punct,
    /// space), optionally versioned (`h2t@1`). A comma-separated list scores once per
    /// normaliser. Default: per task, asr whisper-en, st/mt/ocr/gec none.
    #[arg(
        long,
        env = "NEKO_EVAL_NORMALIZER",
        value_delimiter = ',',
        value_name = "SPEC"
    )]
    pub normalizer: Vec<Normalizer>,

    /// Groups reported inside each file: auto (by `source` when records carry one, else by
    /// task when a file mixes tasks), source, task or none.
    #[arg(
        long,
        env = "NEKO_EVAL_GROUP_BY",
        default_value = "auto",
        value_name = "BY"
    )]
    pub group_by: GroupBy,

    /// Print the report as JSON (the format `--baseline` reads) instead of tables.
    #[arg(long, env = "NEKO_EVAL_JSON", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub json: bool,

    /// A report written earlier with `--json`: compare every file's whole-file scores with it
    /// and exit 1 if any is worse by more than `--max-regression`, if a file's number of scored
    /// records differs from the baseline's, if a metric the baseline measured is missing, or if
    /// no file matches the baseline.
    #[arg(long, env = "NEKO_EVAL_BASELINE", value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Tolerance of `--baseline`, in absolute points of each metric's percentage: 0.2 lets
    /// WER go from 8.40 to 8.60 (or BLEU from 30.00 to 29.80) and no further.
    #[arg(
        long,
        env = "NEKO_EVAL_MAX_REGRESSION",
        default_value_t = 0.0,
        value_name = "POINTS"
    )]
    pub max_regression: f64,

    /// Paired bootstrap of each file's (and group's) predictions against its 1-best: the change
    /// in every metric with its 95% interval and the share of resamples in which the
    /// predictions are better (sacrebleu's flag and defaults: 1,000 resamples, seed 12345).
    #[arg(long, env = "NEKO_EVAL_PAIRED_BS", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub paired_bs: bool,

    /// Another system's output (a `neko correct` file, or a 1-best file), the same records in
    /// the same order: the paired bootstrap compares every FILE with it, record by record,
    /// instead of with its own 1-best (sacrebleu's `--paired-bs` with a baseline system).
    /// Implies `--paired-bs`. The records' ids and references must be BASE's; records without
    /// ids of their own (plain-text lines) pair by position, and a plain-text BASE has no
    /// references: give them with `--ref`.
    #[arg(long, env = "NEKO_EVAL_AGAINST", value_name = "BASE")]
    pub against: Option<PathBuf>,

    /// Each score with its spread over resamples of the records, as sacrebleu's
    /// `--confidence`: the mean of the resampled scores ± half the width of their central 95%
    /// (`--paired-bs-n` resamples, the same draws as `--paired-bs`).
    #[arg(long, env = "NEKO_EVAL_CONFIDENCE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub confidence: bool,

    /// Paired approximate randomization beside the paired bootstrap, as sacrebleu's
    /// `--paired-ar`: each metric's change gets a two-sided p-value, the share of trials (each
    /// record's two outputs swapped at random) whose difference is at least the observed one.
    /// Implies `--paired-bs`; with `--against`, against BASE.
    #[arg(long, env = "NEKO_EVAL_PAIRED_AR", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub paired_ar: bool,

    /// Trials of `--paired-ar` (sacrebleu's default, 10,000).
    #[arg(
        long,
        env = "NEKO_EVAL_PAIRED_AR_N",
        default_value_t = eval::randomization::DEFAULT_TRIALS,
        value_name = "N"
    )]
    pub paired_ar_n: usize,

    /// Resamples of `--paired-bs` and `--confidence`.
    #[arg(
        long,
        env = "NEKO_EVAL_PAIRED_BS_N",
        default_value_t = eval::bootstrap::DEFAULT_RESAMPLES,
        value_name = "N"
    )]
    pub paired_bs_n: usize,

    /// Write a JSON line per scored record (per normaliser) to FILE: its word errors, of the
    /// 1-best and of the prediction, their alignments as jiwer lays them out, and `change`
    /// (the prediction's errors minus the 1-best's), to find the records a correction broke:
    /// `jq -r 'select(.change > 0) | .corrected.alignment | .ref, .hyp, .ops' FILE`.
    #[arg(long, env = "NEKO_EVAL_PER_RECORD", value_name = "FILE")]
    pub per_record: Option<PathBuf>,

    /// BLEU's tokeniser, as sacrebleu's `--tokenize`: 13a (mteval-v13a, the default), intl
    /// (mteval-v14: Unicode punctuation and symbols apart), zh (Chinese characters apart, then
    /// 13a; sacrebleu's choice for Chinese targets), char (every character), none (whitespace).
    /// Named in the BLEU signature (`tok:intl`).
    #[arg(
        long,
        env = "NEKO_EVAL_TOKENIZE",
        default_value = "13a",
        value_name = "TOK"
    )]
    pub tokenize: crate::metrics::bleu::Tokenizer,

    /// BLEU lower-cases the text first, as sacrebleu's `--lowercase` (`-lc`): case-insensitive
    /// BLEU, named `case:lc` in its signature. chrF and TER are left as they are.
    #[arg(long, env = "NEKO_EVAL_LOWERCASE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub lowercase: bool,

    /// BLEU's smoothing, as sacrebleu's `--smooth-method`: exp (mteval-v13a's, the default),
    /// floor (a zero precision counts as `--smooth-value` matches, 0.1 by default), add-k
    /// (`--smooth-value` added to the matches and n-grams of orders 2-4, 1 by default), none.
    #[arg(long, env = "NEKO_EVAL_SMOOTH_METHOD", default_value = "exp", value_name = "METHOD",
          value_parser = clap::builder::PossibleValuesParser::new(crate::metrics::bleu::Smooth::METHODS))]
    pub smooth_method: String,

    /// The value of `--smooth-method floor` or `add-k`, as sacrebleu's `--smooth-value`.
    #[arg(long, env = "NEKO_EVAL_SMOOTH_VALUE", value_name = "V")]
    pub smooth_value: Option<f64>,

    /// chrF's word n-gram order, as sacrebleu's `--chrf-word-order`: 0 (chrF, the default) or 2
    /// (chrF++: word unigrams and bigrams beside the character n-grams). Named in the chrF
    /// signature (`nw:2`).
    #[arg(long, env = "NEKO_EVAL_CHRF_WORD_ORDER", default_value_t = 0, value_name = "N",
          value_parser = clap::value_parser!(u8).range(0..=2))]
    pub chrf_word_order: u8,

    /// chrF's character n-gram order, as sacrebleu's `--chrf-char-order`: 1 to 6 (the default).
    #[arg(long, env = "NEKO_EVAL_CHRF_CHAR_ORDER", default_value_t = 6, value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..=6))]
    pub chrf_char_order: u8,

    /// chrF's beta, recall's weight, as sacrebleu's `--chrf-beta` (default 2: chrF2).
    #[arg(
        long,
        env = "NEKO_EVAL_CHRF_BETA",
        default_value_t = 2,
        value_name = "N"
    )]
    pub chrf_beta: u32,

    /// chrF lower-cases the text first, as sacrebleu's `--chrf-lowercase`.
    #[arg(long, env = "NEKO_EVAL_CHRF_LOWERCASE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub chrf_lowercase: bool,

    /// chrF's character n-grams keep whitespace, as sacrebleu's `--chrf-whitespace`.
    #[arg(long, env = "NEKO_EVAL_CHRF_WHITESPACE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub chrf_whitespace: bool,

    /// chrF averages each order's F-score, an empty order counting as epsilon (chrF++.py's,
    /// Moses' and NLTK's smoothing), as sacrebleu's `--chrf-eps-smoothing`.
    #[arg(long, env = "NEKO_EVAL_CHRF_EPS_SMOOTHING", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub chrf_eps_smoothing: bool,

    /// TER keeps case, as sacrebleu's `--ter-case-sensitive` (by default TER lower-cases).
    #[arg(long, env = "NEKO_EVAL_TER_CASE_SENSITIVE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub ter_case_sensitive: bool,

    /// TER applies Tercom's normalisation, as sacrebleu's `--ter-normalized`: punctuation split
    /// off words (not inside numbers), XML entities decoded, `'s` apart, lines joined.
    #[arg(long, env = "NEKO_EVAL_TER_NORMALIZED", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub ter_normalized: bool,

    /// TER removes `. , ? : ; ! " ( )` first, as sacrebleu's `--ter-no-punct`.
    #[arg(long, env = "NEKO_EVAL_TER_NO_PUNCT", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub ter_no_punct: bool,

    /// TER's Asian support, as sacrebleu's `--ter-asian-support`: with `--ter-normalized`, CJK
    /// characters apart; with `--ter-no-punct`, CJK and full-width punctuation removed too.
    #[arg(long, env = "NEKO_EVAL_TER_ASIAN_SUPPORT", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub ter_asian_support: bool,

    /// Largest record, in bytes, as `neko correct --max-record-bytes`; a longer one is unscored.
    #[arg(long, default_value_t = crate::record::DEFAULT_MAX_RECORD_BYTES, env = "NEKO_MAX_RECORD_BYTES", value_name = "N")]
    pub max_record_bytes: usize,
}

/// Runs `neko eval`.
pub fn run(args: &EvalArgs) -> anyhow::Result<u8> {
    if !(args.max_regression >= 0.0 && args.max_regression.is_finite()) {
        anyhow::bail!("--max-regression must be a non-negative number of points");
    }
    if args.per_record.as_deref() == Some(std::path::Path::new("-")) {
        anyhow::bail!("--per-record needs a file: the report goes to standard output");
    }
    let all_read =
        (args.files.iter().chain(&args.reference)).chain(args.baseline.iter().chain(&args.against));
    if all_read.filter(|p| p.as_os_str() == "-").count() > 1 {
        anyhow::bail!("- given twice (as a file, --ref, --baseline or --against): standard input can be read once");
    }
    if let Some(out) = &args.per_record {
        // The rows would overwrite a file being scored (`--per-record out.jsonl out.jsonl`).
        let read = (args.files.iter().chain(&args.reference))
            .chain(args.baseline.iter().chain(&args.against));
        super::check_output_path(
            "--per-record",
            out,
            &read.map(PathBuf::as_path).collect::<Vec<_>>(),
        )?;
    }
    let paired_bs = args.paired_bs || args.paired_ar;
    if (paired_bs || args.confidence || args.against.is_some()) && args.paired_bs_n == 0 {
        anyhow::bail!("--paired-bs-n must be at least 1");
    }
    if args.paired_ar && args.paired_ar_n == 0 {
        anyhow::bail!("--paired-ar-n must be at least 1");
    }
    let smooth = crate::metrics::bleu::Smooth::new(&args.smooth_method, args.smooth_value)
        .map_err(anyhow::Error::msg)?;
    // Not errors either: a job's environment may set them for runs with the test on.
    if !(paired_bs || args.confidence || args.against.is_some())
        && args.paired_bs_n != eval::bootstrap::DEFAULT_RESAMPLES
    {
        crate::say!("neko: --paired-bs-n has no effect without --paired-bs, --paired-ar, --against or --confidence");
    }
    if !args.paired_ar && args.paired_ar_n != eval::randomization::DEFAULT_TRIALS {
        crate::say!("neko: --paired-ar-n has no effect without --paired-ar");
    }
    if args.baseline.is_none() && args.max_regression != 0.0 {
        // Not an error: NEKO_EVAL_MAX_REGRESSION may be set for a CI gate's other runs.
        crate::say!("neko: --max-regression has no effect without --baseline");
    }
    // Read the baseline first: a typo in its path should fail before any scoring.
    let baseline = args.baseline.as_deref().map(read_baseline).transpose()?;
    let refs = (args.reference.iter())
        .map(|p| {
            let refs = eval::refs::read(p)
                .with_context(|| format!("cannot read references {}", p.display()))?;
            anyhow::Ok((crate::record::input_name(p), refs))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut inputs, errors) = eval::read(&args.files, args.max_record_bytes);
    for e in &errors {
        crate::say!("neko: {}: {}", e.path, e.message);
    }
    if inputs.is_empty() {
        anyhow::bail!("no input file could be read");
    }
    // The base system's file meets the references as the others do, last.
    if let Some(path) = &args.against {
        let (mut base, errors) = eval::read(std::slice::from_ref(path), args.max_record_bytes);
        if let Some(e) = errors.first() {
            anyhow::bail!("--against {}: {}", e.path, e.message);
        }
        inputs.append(&mut base);
    }
    for (k, (name, refs)) in refs.iter().enumerate() {
        let mode = match k {
            0 => eval::refs::Mode::Replace,
            _ => eval::refs::Mode::Add,
        };
        apply_references(&mut inputs, refs, name, mode)?;
    }
    let mut against = args.against.as_ref().and_then(|_| inputs.pop());
    if let Some(base) = &mut against {
        for input in &mut inputs {
            eval::against::check_pairs(base, input).map_err(anyhow::Error::msg)?;
            eval::against::share_tasks(base, input);
        }
        // Again: a file before the one that named a task takes it through BASE too.
        for input in &mut inputs {
            eval::against::share_tasks(base, input);
        }
    }
    let settings = Settings {
        task: args.task,
        normalizers: args.normalizer.clone(),
        group_by: args.group_by,
        paired_bs: (paired_bs || against.is_some()).then_some(eval::bootstrap::PairedBs {
            resamples: args.paired_bs_n,
            seed: eval::bootstrap::SEED,
        }),
        paired_ar: args.paired_ar.then_some(eval::randomization::PairedAr {
            trials: args.paired_ar_n,
            seed: eval::bootstrap::SEED,
        }),
        confidence: args.confidence.then_some(eval::bootstrap::PairedBs {
            resamples: args.paired_bs_n,
            seed: eval::bootstrap::SEED,
        }),
        per_record: args.per_record.is_some(),
        against,
        bleu: crate::metrics::bleu::BleuOptions {
            tokenize: args.tokenize,
            lowercase: args.lowercase,
            smooth,
        },
        chrf: crate::metrics::chrf::ChrfOptions {
            char_order: args.chrf_char_order.into(),
            word_order: args.chrf_word_order.into(),
            beta: args.chrf_beta,
            lowercase: args.chrf_lowercase,
            whitespace: args.chrf_whitespace,
            eps_smoothing: args.chrf_eps_smoothing,
        },
        ter: crate::metrics::ter::TerOptions {
            case_sensitive: args.ter_case_sensitive,
            normalized: args.ter_normalized,
            no_punct: args.ter_no_punct,
            asian_support: args.ter_asian_support,
        },
    };
    let mut report = eval::evaluate(&inputs, &settings);
    report.errors = errors;
    if let Some(path) = &args.per_record {
        write_rows(path, &mut report)
            .with_context(|| format!("cannot write --per-record {}", path.display()))?;
    }
    note_assumed_task(&report);
    note_nothing_scored(&report);
    note_repeated_ids(&report);
    note_against_unscored(&report, args.against.as_deref());
    if paired_bs && args.against.is_none() && !has_predictions(&report) {
        crate::say!("neko: --paired-bs and --paired-ar compare predictions with the 1-best, and no file here has a `prediction` (score `neko correct` output)");
    }
    if let Some((path, base)) = &baseline {
        let c = baseline::compare(&report, base, path, args.max_regression)?;
        report.comparison = Some(c);
    }
    // The verdict stands whether or not a reader took the whole report: a gate piped into
    // `head` must still fail on a regression.
    let code = exit_code(&report);
    match write_report(&report, args.json) {
        Err(e) if super::is_broken_pipe(&e) => Ok(code),
        written => written.map(|_| code),
    }
}

/// Writes every run's per-record rows to `path` as JSON Lines, whole or not at all (a
/// temporary file beside it, renamed), and takes them out of the report.
fn write_rows(path: &std::path::Path, report: &mut Report) -> anyhow::Result<()> {
    let mut text = String::new();
    for file in report.runs.iter_mut().flat_map(|r| r.files.iter_mut()) {
        for row in std::mem::take(&mut file.rows) {
            text += &serde_json::to_string(&row)?;
            text.push('\n');
        }
    }
    super::write_whole(path, text.as_bytes())
}

/// Gives the records one `--ref` file's references, and says on stderr how they were paired.
fn apply_references(
    inputs: &mut [eval::Input],
    refs: &[String],
    name: &str,
    mode: eval::refs::Mode,
) -> anyhow::Result<()> {
    let applied = eval::refs::apply(inputs, refs, name, mode).map_err(anyhow::Error::msg)?;
    for path in &applied.kaldi_inputs {
        crate::say!("neko: {path}: read as Kaldi text: each line's first word is an utterance id of --ref {name}");
    }
    if applied.pairing != eval::refs::Pairing::Position {
        crate::say!("neko: --ref {name}: {}", applied.pairing.describe());
    }
    if applied.ids_scored {
        crate::say!(
            "neko: warning: every line of --ref {name} opens with a numbered word, no two alike, as Kaldi \
             text's utterance ids do, but they are not the records' ids: the records pair by position and \
             those words are scored as words. For Kaldi text, give the records their ids (README, Input)"
        );
    }
    let replaced = applied.replaced;
    if replaced > 0 {
        crate::say!("neko: {replaced} record(s) had a reference of their own (`output`) that --ref {name} replaced");
    }
    Ok(())
}

fn read_baseline(path: &std::path::Path) -> anyhow::Result<(String, Report)> {
    let text = crate::record::read_text(path)
        .with_context(|| format!("cannot read baseline {}", path.display()))?;
    let report: Report = serde_json::from_str(&text).with_context(|| {
        format!(
            "baseline {} is not a `neko eval --json` report",
            path.display()
        )
    })?;
    Ok((path.display().to_string(), report))
}

/// Whether any file of the report was scored with predictions.
fn has_predictions(report: &Report) -> bool {
    (report.runs.iter()).flat_map(|r| &r.files).any(|f| {
        (f.groups.first()).is_some_and(|g| g.wer.as_ref().is_some_and(|w| w.corrected.is_some()))
    })
}

/// Says on stderr which files have ids on more than one record: each is scored, and a file
/// concatenated twice, or two runs' outputs joined, is easy to miss otherwise.
fn note_repeated_ids(report: &Report) {
    let Some(run) = report.runs.first() else {
        return;
    };
    for f in &run.files {
        if let Some(r) = &f.repeated_ids {
            let lines: Vec<String> = r.lines.iter().map(usize::to_string).collect();
            crate::say!(
                "neko: {}: {} id(s) on more than one record (the first, {}, on lines {}): each \
                 record is scored",
                f.path,
                r.ids,
                r.first,
                lines.join(", ")
            );
        }
    }
}

/// The files of the run in which no record was scored (empty, all errors, no references):
/// nothing was measured there, which is an error (exit 2) however the other files did, since a
/// table of dashes is easy to miss in a CI log and a gate must not pass on it.
fn scoring_nothing(report: &Report) -> impl Iterator<Item = &eval::FileReport> {
    (report.runs.first().into_iter())
        .flat_map(|run| &run.files)
        .filter(|f| f.groups.first().is_none_or(|g| g.records == 0))
}

fn note_nothing_scored(report: &Report) {
    for f in scoring_nothing(report) {
        crate::say!(
            "neko: {}: no record scored ({} read, {} unscored): nothing measured, exit 2",
            f.path,
            f.entries,
            f.unscored.len()
        );
    }
}

/// BASE's records that could not be scored: the comparison leaves their partners out, or
/// is not made at all when none could be.
fn note_against_unscored(report: &Report, base: Option<&std::path::Path>) {
    let (Some(run), Some(base)) = (report.runs.first(), base) else {
        return;
    };
    let Some(f) = run.files.iter().find(|f| !f.against_unscored.is_empty()) else {
        return;
    };
    let first = &f.against_unscored[0];
    crate::say!(
        "neko: --against {}: {} of its records not scored, so their partners are left out of the comparison; the first: line {} (id {}): {}",
        base.display(),
        f.against_unscored.len(),
        first.line,
        first.id,
        first.reason
    );
}

fn note_assumed_task(report: &Report) {
    let Some(run) = report.runs.first() else {
        return;
    };
    let assumed: u64 = run.files.iter().map(|f| f.assumed_task).sum();
    if assumed > 0 {
        crate::say!(
            "neko: {assumed} record(s) have no `task` field and no --task was given: scored as asr"
        );
    }
}

fn write_report(report: &Report, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        out.write_all(eval::text::render(report).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

fn exit_code(report: &Report) -> u8 {
    if !report.errors.is_empty() || scoring_nothing(report).next().is_some() {
        return EXIT_ERROR;
    }
    match &report.comparison {
        Some(c) if c.nothing_compared() => {
            crate::say!(
                "neko: nothing compared with {}: no file of this run is in it (matched by path, else by file name)",
                c.baseline
            );
            EXIT_REGRESSION
        }
        Some(c) if c.regressions > 0 => {
            crate::say!(
                "neko: {} regression(s) against {} (max regression {} points):",
                c.regressions,
                c.baseline,
                c.max_regression
            );
            // Named on stderr too: with --json > FILE the CI log shows only this.
            for line in regression_lines(c) {
                crate::say!("neko:   {line}");
            }
            note_unchecked(c);
            EXIT_REGRESSION
        }
        Some(c) => {
            note_unchecked(c);
            EXIT_OK
        }
        None => EXIT_OK,
    }
}

/// What regressed, a line each: the checks worse by more than the tolerance, then the baseline
/// files and metrics this run lacks.
fn regression_lines(c: &crate::eval::baseline::Comparison) -> Vec<String> {
    let value = |metric: &str, v: f64| match metric {
        "records" => format!("{v:.0}"),
        _ => format!("{v:.2}"),
    };
    let worse = (c.checks.iter().filter(|k| k.regressed)).map(|k| {
        format!(
            "{}: {} {} -> {} (worse by {})",
            k.file,
            k.metric,
            value(&k.metric, k.baseline),
            value(&k.metric, k.current),
            value(&k.metric, k.worse_by)
        )
    });
    let missing = (c.missing.iter()).map(|f| format!("{f}: in the baseline, not in this run"));
    let lacking =
        (c.missing_metrics.iter()).map(|m| format!("{m}: measured in the baseline, not now"));
    worse.chain(missing).chain(lacking).collect()
}

/// The baseline's normalisers this run did not score with: their numbers were not checked.
fn note_unchecked(c: &crate::eval::baseline::Comparison) {
    if !c.unchecked_normalizers.is_empty() {
        crate::say!(
            "neko: note: the baseline's scores under normaliser(s) {} were not checked: this run did not score with them",
            c.unchecked_normalizers.join(", ")
        );
    }
}
