//! `neko guard`: the over-correction guard applied to predictions made elsewhere — by another
//! engine, or by an earlier `neko correct --no-guard` run, so that guard thresholds can be
//! compared without decoding again.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use super::{ModelArgs, EXIT_OK};
use crate::correct::{CorrectOptions, Corrector};
use crate::generate::Finish;
use crate::guard::{self, Agreed, BaseLm, Dropped, GuardOptions, Margin, Nbest, Spacing};
use crate::model::RoutingMode;
use crate::record::{self, Record};
use crate::style::StyleMode;
use crate::Task;

/// Flags of `neko guard`.
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// The input records the predictions were made from (their hypotheses; ids join them).
    #[arg(long)]
    pub input: PathBuf,

    /// Predictions: JSONL with `id` and `prediction` (`neko correct --no-guard` output).
    pub predictions: PathBuf,

    /// One edit threshold for every task, as `neko correct --guard-max-edit` (default: each
    /// task's own).
    #[arg(long, value_parser = guard::parse_max_edit)]
    pub max_edit: Option<f64>,

    /// The margin in nats, as `neko correct --guard-margin` (a number, `off`, or `task`:
    /// each task's own). Applies to lines with a `"margin"` (as `neko correct` writes it);
    /// others are scored only with `--score`.
    #[arg(long, default_value = "task", allow_hyphen_values = true)]
    pub margin: Margin,

    /// How the predictions were decoded, which sets ASR's `task` margin: `constrained` (as
    /// `neko correct` decodes by default; 4 nats) or `free` (`neko correct --constrain none`,
    /// a served model; 1.5).
    #[arg(long, value_enum, default_value = "constrained")]
    pub decoded: Decoded,

    /// ASR predictions that change a word every hypothesis agrees on, as `neko correct
    /// --guard-agreed`: `keep` (default) falls back to the 1-best, `free` lets them through.
    #[arg(long, value_enum, default_value = "keep")]
    pub agreed: Agreed,

    /// ASR predictions that are none of their hypotheses, as `neko correct --guard-nbest`:
    /// `pick` (default) falls back to the 1-best, `free` lets them through.
    #[arg(long, value_enum, default_value = "pick")]
    pub nbest: Nbest,

    /// ASR predictions that only leave out words of the 1-best, as `neko correct
    /// --guard-dropped`: `keep` (default) falls back to the 1-best, `free` lets them through.
    #[arg(long, value_enum, default_value = "keep")]
    pub dropped: Dropped,

    /// ASR predictions that only join or split words of the 1-best, as `neko correct
    /// --guard-spacing`: `keep` (default) falls back to the 1-best, `free` lets them through.
    #[arg(long, value_enum, default_value = "keep")]
    pub spacing: Spacing,

    /// Whether a kept ASR prediction that changes words must also be preferred by the base
    /// model under the corrector's experts, as `neko correct --guard-base-lm`: `on` (default)
    /// or a threshold in nats applies to lines with a `"base_lm"` (as `neko correct` writes
    /// it; others are scored only with `--score`), `off` does not check.
    #[arg(long, default_value = "on")]
    pub base_lm: BaseLm,

    /// Task of records whose prediction line and input record name none (default: asr).
    #[arg(long)]
    pub task: Option<Task>,

    /// Score the margin of kept predictions whose line has none (a served model's, another
    /// engine's) with a model here (`--model` and the model flags below; default neko-smol),
    /// as `neko correct` scores its own answers, so that the margin applies to them too and
    /// lines carry `"margin"`.
    #[arg(long)]
    pub score: bool,

    /// With --score: the routing the predictions were decoded with, as `neko correct
    /// --routing` (the margin depends on it).
    #[arg(long, value_enum, default_value_t = RoutingMode::Learned, requires = "score")]
    pub routing: RoutingMode,

    /// With --score: the prompt template file the predictions were decoded with, as `neko
    /// correct --prompt`.
    #[arg(long, requires = "score")]
    pub prompt: Option<PathBuf>,

    /// With --score: the answer-token bound the predictions were decoded with, as `neko
    /// correct --max-new-tokens` (it decides how much of a long input the prompt keeps).
    #[arg(long, requires = "score", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_new_tokens: Option<usize>,

    #[command(flatten)]
    pub model: ModelArgs,

    /// ASR predictions' casing and punctuation, as `neko correct --style`: `model` (default)
    /// keeps them; `follow` writes them in the hypotheses' convention (the rules of `neko
    /// correct --style follow`) before the checks (a
    /// line's `"margin"` is taken to score the prediction as the model wrote it, as `neko
    /// correct`'s does).
    #[arg(long, value_enum, default_value = "model")]
    pub style: StyleMode,

    /// Largest input record, in bytes, as `neko correct --max-record-bytes`.
    #[arg(long, default_value_t = record::DEFAULT_MAX_RECORD_BYTES, env = "NEKO_MAX_RECORD_BYTES", value_name = "N")]
    pub max_record_bytes: usize,
}

/// How the predictions `neko guard` reads were decoded (`--decoded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Decoded {
    /// Under the hypotheses' words (`neko correct`'s default).
    Constrained,
    /// Freely.
    Free,
}

/// Runs `neko guard`: every prediction line, its ASR prediction in the hypotheses' style
/// (`--style`), replaced by the 1-best and `"guard": "fallback:<reason>"` added where the
/// guard rejects it. A prediction already guarded is kept. A prediction that hit the token
/// limit is not known here (`neko correct` also checks that). A line that cannot be checked
/// (its input record unreadable, no prediction text) gets an `error` and goes on unchanged.
pub fn run(args: &GuardArgs) -> anyhow::Result<u8> {
    // Said, not refused: NEKO_MODEL and its kin may be set for other commands.
    let m = &args.model;
    let named = m.model.as_deref().is_some_and(|s| !s.is_empty());
    if !args.score && (named || m.quant.is_some() || m.adapter.is_some()) {
        crate::say!("neko: guard: --model, --quant and --adapter (or NEKO_MODEL, NEKO_QUANT, NEKO_ADAPTER) are used only with --score; no model is loaded, nothing scored");
    }
    let input = record::input_name(&args.input);
    let entries = record::read_path_with_limit(&args.input, args.max_record_bytes)
        .with_context(|| format!("{input}: cannot read"))?;
    // Ids may repeat: the k-th prediction line with an id is the k-th input record with it.
    // Records that could not be read keep their place, for the error lines made of them.
    let mut inputs: HashMap<String, Vec<&record::Entry>> = HashMap::new();
    for e in &entries {
        inputs.entry(e.id().to_string()).or_default().push(e);
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let opts = GuardOptions {
        enabled: true,
        max_edit: args.max_edit,
        margin: args.margin,
        agreed: args.agreed,
        nbest: args.nbest,
        constrained: args.decoded == Decoded::Constrained,
        dropped: args.dropped,
        spacing: args.spacing,
        base_lm: args.base_lm,
    };
    // Scoring renders prompts as the decoding did: its routing, prompt and answer bound.
    let mut scorer = match args.score {
        true => Some(scorer(args)?),
        false => None,
    };
    let predictions = record::input_name(&args.predictions);
    let text = record::read_text(&args.predictions)
        .with_context(|| format!("{predictions}: cannot read"))?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    // Every line is read and joined to its input record before anything is written: a line
    // that joins none stops the run with no half-written output.
    let mut joined: Vec<(Value, Target)> = Vec::with_capacity(lines.len());
    let last = lines.len().saturating_sub(1);
    for (k, &(n, line)) in lines.iter().enumerate() {
        let at = || format!("{predictions}:{}", n + 1);
        let rec: Value = match serde_json::from_str(line) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) if k == 0 && line.trim_start().starts_with('[') => anyhow::bail!(
                "{}: a JSON array: neko guard reads JSON Lines, one prediction object per line",
                at()
            ),
            Ok(other) => anyhow::bail!("{}: expected a JSON object, found {other}", at()),
            // An interrupted run's file ends in a cut line: nothing to guard there.
            Err(e) if e.is_eof() && k == last && !text.ends_with('\n') => {
                crate::say!("neko: warning: {}: a cut last line, left out", at());
                continue;
            }
            Err(e) => return Err(e).with_context(at),
        };
        let id = match rec.get("id") {
            Some(v) if !v.is_null() => v.to_string(),
            _ => anyhow::bail!("{}: no `id` field: ids join predictions to {input}", at()),
        };
        let nth = seen.entry(id.clone()).or_default();
        let entry = inputs
            .get(&id)
            .and_then(|es| es.get(*nth))
            .with_context(|| {
                let more = if *nth > 0 { " as often" } else { "" };
                format!("{}: id {id} is not in {input}{more}", at())
            })?;
        *nth += 1;
        // Ids join by position in files without them: a line of another input would be
        // checked against, and fall back to, a stranger's 1-best.
        if let (Some(then), Ok(r)) = (rec["best"].as_str(), &entry.record) {
            if r.best().is_some_and(|now| now != then) {
                anyhow::bail!(
                    "{}: id {id}'s `best` is not the 1-best of {input}'s record (line {}): the predictions were made from another input",
                    at(),
                    entry.line
                );
            }
        }
        let target =
            target(&rec, entry, &input, args.task).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        joined.push((rec, target));
    }
    let bar = scorer
        .as_ref()
        .map(|_| super::progress_bar(Some(joined.len() as u64), "guard"));
    // Lines restyled by `neko correct --style follow` are checked as the model wrote them
    // unless --style follow is given again: answers that run kept may fall back here.
    let restyled = (joined.iter())
        .filter(|(rec, t)| matches!(t, Target::Check(_, Task::Asr)) && rec.get("written").is_some())
        .count();
    if restyled > 0 && args.style == StyleMode::Model {
        crate::say!("neko: guard: {restyled} line(s) carry `written` (made with --style follow): checked as the model wrote them, as --style model does; give --style follow to check them as that run did");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut tally = Tally::default();
    for (mut rec, target) in joined {
        match target {
            Target::Check(record, task) => {
                let checked =
                    guard_line(&mut rec, record, task, args.style, &opts, scorer.as_mut());
                tally.add(checked);
            }
            Target::Unchecked(why) => {
                rec["error"] = Value::from(format!("not guarded: {why}"));
                tally.unchecked += 1;
            }
            Target::Verdict => tally.passed += 1,
        }
        writeln!(out, "{rec}")?;
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    out.flush()?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    crate::say!("{}", tally.summary());
    Ok(EXIT_OK)
}

/// The corrector that scores margins and the base model's check (`--score`), rendering prompts
/// with the decoding's routing, prompt file and answer bound.
fn scorer(args: &GuardArgs) -> anyhow::Result<Corrector> {
    let prompt = super::read_prompt(args.prompt.as_deref())?;
    let options = CorrectOptions {
        routing: args.routing,
        max_new_tokens: args.max_new_tokens,
        ..CorrectOptions::default()
    };
    let scorer = Corrector::new(args.model.load()?, prompt, options);
    if args.routing == RoutingMode::Task {
        // A dense model, or a task map without --task's task: said once, not as every
        // line's unscored margin.
        (scorer.check_routing(args.task.unwrap_or(Task::Asr))).map_err(anyhow::Error::msg)?;
    }
    Ok(scorer)
}

/// Appends `note` to a line's `warning`, keeping what an earlier step said there.
fn warn(rec: &mut Value, note: String) {
    let joined = match rec.get("warning").and_then(Value::as_str) {
        Some(w) if !w.is_empty() => format!("{note}; {w}"),
        _ => note,
    };
    rec["warning"] = Value::from(joined);
}

/// What is done with a prediction line.
enum Target<'a> {
    /// It is checked against its input record, as a record of the task.
    Check(&'a Record, Task),
    /// It already has a verdict (a guard's or an error) and passes through as it is.
    Verdict,
    /// It cannot be checked, for the reason given.
    Unchecked(String),
}

/// What to do with prediction line `rec`, joined to its input `entry`; an error for a task
/// name that is none.
fn target<'a>(
    rec: &Value,
    entry: &'a record::Entry,
    input: &str,
    default_task: Option<Task>,
) -> anyhow::Result<Target<'a>> {
    // A null field is no field (pandas and others write absent values as null).
    let has = |field: &str| rec.get(field).is_some_and(|v| !v.is_null());
    if has("guard") || rec.get("error").is_some_and(record::is_error) {
        return Ok(Target::Verdict);
    }
    let record = match &entry.record {
        Ok(r) => r,
        Err(e) => {
            let field = e
                .field
                .as_ref()
                .map(|f| format!(" `{f}`"))
                .unwrap_or_default();
            let why = format!("{input}:{}{field}: {}", entry.line, e.message);
            return Ok(Target::Unchecked(format!(
                "its input record could not be read ({why})"
            )));
        }
    };
    if !rec["prediction"].is_string() {
        return Ok(Target::Unchecked("no `prediction` text".to_string()));
    }
    let named = rec["task"].as_str().map(str::to_string);
    let task = match named.or(record.task.clone()) {
        Some(t) => t.parse::<Task>()?,
        None => default_task.unwrap_or(Task::Asr),
    };
    Ok(Target::Check(record, task))
}

/// What one guarded line came to.
struct Checked {
    fallback: Option<guard::Reason>,
    /// Kept with the margin check on for its task but no margin to check.
    unmargined: bool,
    /// Kept with the base-model check on for its task but no `"base_lm"` to check.
    unchecked_base: bool,
}

/// Counts for the summary on stderr.
#[derive(Default)]
struct Tally {
    checked: usize,
    /// Lines that already had a verdict (a guard's or an error), passed through.
    passed: usize,
    /// Lines that could not be checked (an `error` added).
    unchecked: usize,
    fallbacks: std::collections::BTreeMap<&'static str, usize>,
    unmargined: usize,
    unchecked_base: usize,
}

impl Tally {
    fn add(&mut self, c: Checked) {
        self.checked += 1;
        if let Some(r) = c.fallback {
            *self.fallbacks.entry(r.name()).or_default() += 1;
        }
        self.unmargined += usize::from(c.unmargined);
        self.unchecked_base += usize::from(c.unchecked_base);
    }

    fn summary(&self) -> String {
        let fell: usize = self.fallbacks.values().sum();
        let reasons: Vec<String> = (self.fallbacks.iter())
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let mut s = format!(
            "neko guard: {} lines checked, {fell} fell back",
            self.checked
        );
        if !reasons.is_empty() {
            s += &format!(" ({})", reasons.join(", "));
        }
        if self.passed > 0 {
            s += &format!(
                "; {} passed through (a verdict or an error already)",
                self.passed
            );
        }
        if self.unchecked > 0 {
            s += &format!(
                "; {} not guarded (an `error` added: input unreadable or no prediction)",
                self.unchecked
            );
        }
        if self.unmargined > 0 {
            s += &format!(
                "; {} kept without the margin check (no `margin`; --score scores them)",
                self.unmargined
            );
        }
        if self.unchecked_base > 0 {
            s += &format!(
                "; {} kept without the base-model check (no `base_lm`; --score scores them)",
                self.unchecked_base
            );
        }
        s
    }
}

/// The guard on one prediction line (`rec`, whose `prediction` is a string), in place: the
/// prediction in `style`, then the checks; with a `scorer`, a kept prediction without a
/// `"margin"` is scored first. Prompt markers are the scorer's (`###` and its model's special
/// tokens), else `###` and ChatML/Llama special tokens.
fn guard_line(
    rec: &mut Value,
    record: &Record,
    task: Task,
    style: StyleMode,
    opts: &GuardOptions,
    mut scorer: Option<&mut Corrector>,
) -> Checked {
    let markers = match &scorer {
        Some(scorer) => scorer.guard_markers().to_vec(),
        None => ["###", "<|im_start|>", "<|im_end|>", "<s>", "</s>"]
            .map(String::from)
            .to_vec(),
    };
    let hyps = &record.hypotheses;
    // The model's own text where `neko correct --style follow` restyled the prediction.
    let written = (rec.get("written").and_then(Value::as_str))
        .or(rec["prediction"].as_str())
        .unwrap_or_default()
        .to_string();
    let pred = style.apply(task, hyps, &written);
    let mut verdict = guard::check(&written, &pred, hyps, task, Finish::Eos, &markers, opts);
    // `null` is no score (serde writes a NaN so; tools write it for "none"): scored again.
    let given = |rec: &Value, key: &str| rec.get(key).filter(|v| !v.is_null()).is_some();
    if let (None, Some(scorer), false) = (verdict, scorer.as_deref_mut(), given(rec, "margin")) {
        if opts.margin(task).is_some() {
            match scorer.margin_of(task, record, &written) {
                Ok(Some(m)) => rec["margin"] = Value::from(m),
                Ok(None) => {}
                // Unscored is unproven, as in `neko correct`: the 1-best stays.
                Err(e) => {
                    warn(rec, format!("margin not scored: {e}"));
                    verdict = Some(guard::Reason::Margin);
                }
            }
        }
    }
    let margin = rec.get("margin").and_then(Value::as_f64);
    let mut verdict = verdict.or_else(|| guard::check_margin(margin?, task, opts));
    // Only an answer that differs from its baseline has a margin to check.
    let best = hyps.first().map(String::as_str).unwrap_or_default();
    let baseline = guard::margin_baseline(task, &written, best);
    let needs_margin = baseline != written;
    // As in `neko correct`, a scoring model without low-rank experts has no base model to ask.
    let has_base = scorer.as_ref().is_none_or(|s| s.has_base_lm());
    let asks_base = verdict.is_none() && needs_margin && opts.asks_base_lm(task) && has_base;
    if let (true, Some(scorer), false) = (asks_base, scorer, given(rec, "base_lm")) {
        if scorer.has_base_lm() {
            match scorer.base_lm_diff(&written, &baseline) {
                Ok(d) => rec["base_lm"] = Value::from(d),
                Err(e) => {
                    warn(rec, format!("base model not scored: {e}"));
                    verdict = Some(guard::Reason::BaseLm);
                }
            }
        }
    }
    let base_lm = rec.get("base_lm").and_then(Value::as_f64);
    if asks_base && verdict.is_none() {
        verdict = base_lm.and_then(|d| guard::check_base_lm(d, task, opts));
    }
    match verdict {
        Some(reason) => {
            rec["prediction"] = Value::from(hyps.first().cloned().unwrap_or_default());
            rec["guard"] = Value::from(reason.label());
            // The 1-best is no model's text.
            if let Some(o) = rec.as_object_mut() {
                o.remove("written");
            }
        }
        None => {
            // As `neko correct` writes it: the model's own text stays in `written` when the style
            // changed it, so guarding this line again checks and scores the model's text.
            match (written != pred, rec.as_object_mut()) {
                (true, _) => rec["written"] = Value::from(written),
                (false, Some(o)) => {
                    o.remove("written");
                }
                (false, None) => {}
            }
            rec["prediction"] = Value::from(pred);
        }
    }
    Checked {
        fallback: verdict,
        unmargined: verdict.is_none()
            && margin.is_none()
            && needs_margin
            && opts.margin(task).is_some(),
        unchecked_base: verdict.is_none() && asks_base && base_lm.is_none(),
    }
}
