//! `neko correct`: N-best records in, corrected records out (JSONL, input order).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use super::input::{self, Item};
use super::{ModelArgs, EXIT_ERROR, EXIT_OK};
use crate::backend::openai::{self, OpenAi, PromptAs};
use crate::backend::{render, BackendKind};
use crate::correct::{Constrain, CorrectOptions, Corrector, STOPPED};
use crate::guard::{Agreed, BaseLm, Dropped, GuardOptions, Margin, Nbest, Spacing};
use crate::model::RoutingMode;
use crate::output::{OutputRecord, OutputSink, RecordFailure};
use crate::record::{self, Entry, Record};
use crate::shard::{Shard, ShardLine};
use crate::style::StyleMode;
use crate::Task;

/// Flags of `neko correct`.
#[derive(Debug, Args)]
pub struct CorrectArgs {
    /// Input files: JSONL, HyPoradise JSON arrays, or plain text (one 1-best per line); `-` is
    /// standard input. Written to standard output, JSONL is corrected as it arrives.
    #[arg(default_value = "-")]
    pub inputs: Vec<PathBuf>,

    /// Task of records without a `task` field: asr, st, mt, ocr or gec. A record's own `task`
    /// field takes precedence.
    #[arg(long, env = "NEKO_TASK")]
    pub task: Option<Task>,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub decode: DecodeArgs,

    #[command(flatten)]
    pub backend: BackendArgs,

    /// Correct only slice I of N (0-based; `3/16` is the 4th of 16): the records at input
    /// positions k with k mod N = I, for job arrays. Lines then carry `index` (k) and `of`
    /// (records in the input); `neko merge` reassembles the shards in input order.
    #[arg(long, value_name = "I/N", env = "NEKO_SHARD")]
    pub shard: Option<Shard>,

    /// Write to FILE instead of stdout, atomically: lines go to FILE.partial, renamed to FILE
    /// when the run ends.
    #[arg(short, long, env = "NEKO_OUTPUT")]
    pub output: Option<PathBuf>,

    /// Continue an interrupted run of the same command: records whose ids are already in
    /// FILE.partial (or FILE) are skipped; order is kept. Refused when the earlier run's
    /// signature (FILE.partial.sig, or FILE.sig) differs, or FILE was written over since it was
    /// signed (FILE.sig's digest line). Needs -o.
    #[arg(long, env = "NEKO_RESUME", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub resume: bool,

    /// Stop at the first record that cannot be read (before the model loads) or corrected
    /// (the records before it written) with exit 2, instead of writing it with an `error`
    /// field and going on.
    #[arg(long, env = "NEKO_STRICT", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub strict: bool,

    /// Print each record's rendered prompt as JSONL (`id`, `task`, `prompt` text, `ids`,
    /// `max_new_tokens`) instead of correcting: what other engines need to see the same
    /// prompts (scripts/compare_engines.sh). To stdout: not with -o.
    #[arg(long, env = "NEKO_DUMP_PROMPTS", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub dump_prompts: bool,

    /// Largest record, in bytes; a longer line or array element is reported as an error
    /// record instead of being tokenised.
    #[arg(long, default_value_t = record::DEFAULT_MAX_RECORD_BYTES, env = "NEKO_MAX_RECORD_BYTES")]
    pub max_record_bytes: usize,
}

/// Decoding flags.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Expert routing: `learned` lets the gate route every token (the paper's inference; works
    /// for every checkpoint); `task` forces the task's expert (from config.json's
    /// `task_experts`) into each token's top-k.
    #[arg(long, value_enum, default_value_t = RoutingMode::Learned, env = "NEKO_ROUTING")]
    pub routing: RoutingMode,

    /// Most tokens per answer (default: twice the longest hypothesis's tokens plus 16).
    #[arg(long, env = "NEKO_MAX_NEW_TOKENS", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_new_tokens: Option<usize>,

    /// Most records decoded together in one batch.
    #[arg(long, default_value_t = crate::correct::DEFAULT_BATCH_SIZE, env = "NEKO_BATCH_SIZE", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch_size: usize,

    /// Most KV-cache positions per batch: rows × (shared prefix + longest prompt after it +
    /// largest answer bound), padding included. Records are sorted by prompt length and
    /// batches filled up to this (and to --batch-size rows).
    #[arg(long, default_value_t = crate::correct::DEFAULT_MAX_BATCH_TOKENS, env = "NEKO_MAX_BATCH_TOKENS", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_batch_tokens: usize,

    /// Recompute every prompt in full instead of computing the prompt prefix shared by a
    /// task's records once and reusing its KV cache (same output, slower).
    #[arg(long, env = "NEKO_NO_PREFIX_REUSE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub no_prefix_reuse: bool,

    /// A prompt template file replacing the built-in one of every task (see configs/prompts).
    #[arg(long, env = "NEKO_PROMPT")]
    pub prompt: Option<PathBuf>,

    /// A string that ends the answer; repeat for several (default: a newline).
    #[arg(long = "stop", env = "NEKO_STOP")]
    pub stop: Vec<String>,

    /// Turn off the over-correction guard (on by default: an empty, runaway, prompt-leaking or
    /// far-fetched answer falls back to the 1-best, marked `"guard": "fallback:<reason>"`).
    #[arg(long, env = "NEKO_NO_GUARD", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub no_guard: bool,

    /// The guard's edit threshold for every task: an answer whose edit distance to every
    /// hypothesis exceeds this fraction of that hypothesis's length (in words; characters for
    /// OCR and for text mostly in a script written without spaces) falls back to the 1-best. Default: per task, ASR 0.1, OCR 0.05, MT/ST/GEC 0.5.
    #[arg(long, env = "NEKO_GUARD_MAX_EDIT", value_parser = crate::guard::parse_max_edit)]
    pub guard_max_edit: Option<f64>,

    /// The guard's margin for every task, in nats: an answer is kept only if the model gives it
    /// at least this much more log-probability than what it changed (ASR: the same answer with
    /// its word edits undone, so formatting alone does not count; other tasks: the 1-best);
    /// `off` scores nothing. Default (`task`): ASR 4 (1.5 with `--constrain none`), OCR 1.5,
    /// MT/ST/GEC none.
    /// In-process backend only (`neko guard --score` scores a served model's answers
    /// afterwards); the answer's margin is written as `"margin"`.
    #[arg(
        long,
        env = "NEKO_GUARD_MARGIN",
        default_value = "task",
        allow_hyphen_values = true
    )]
    pub guard_margin: Margin,

    /// What the guard does with an ASR answer that changes what every hypothesis agrees on (a
    /// word they all have, or a word added where none adds one): `keep` (default) falls back
    /// to the 1-best (`"fallback:agreed"`), `free` lets it through. Records with a single
    /// hypothesis are not checked.
    #[arg(long, value_enum, default_value = "keep", env = "NEKO_GUARD_AGREED")]
    pub guard_agreed: Agreed,

    /// Whether an ASR answer must be one of its hypotheses (word for word; casing and
    /// punctuation may differ): `pick` (default) falls back to the 1-best (`"fallback:nbest"`)
    /// when it is none of them, so the model reranks the N-best and writes nothing of its own;
    /// `free` lets it write. Out of its training domain neko-smol picks well and writes badly:
    /// docs/training.md, "Picked, not written".
    #[arg(long, value_enum, default_value = "pick", env = "NEKO_GUARD_NBEST")]
    pub guard_nbest: Nbest,

    /// What the guard does with an ASR answer that only leaves out words of the 1-best (and
    /// changes nothing else): `keep` (default) falls back to the 1-best (`"fallback:dropped"`),
    /// `free` lets it through. Whisper's lower beams often drop a word, and a language model
    /// prefers a text with a token fewer almost whatever the token, so the margin and the base
    /// model's check cannot judge such a pick. Why: docs/training.md, "Dropped words".
    #[arg(long, value_enum, default_value = "keep", env = "NEKO_GUARD_DROPPED")]
    pub guard_dropped: Dropped,

    /// What the guard does with an ASR answer that only joins or splits words of the 1-best
    /// ("non zero" → "nonzero", nothing else changed): `keep` (default) falls back to the
    /// 1-best (`"fallback:spacing"`), `free` lets it through. Word boundaries are spelling
    /// conventions the recogniser learnt, not what was heard. Why: docs/training.md, "Word
    /// boundaries are not what was heard".
    #[arg(long, value_enum, default_value = "keep", env = "NEKO_GUARD_SPACING")]
    pub guard_spacing: Spacing,

    /// Whether an ASR answer that changes words must also be likelier under the corrector's
    /// base model, reading each text alone (no prompt, the low-rank experts left out), than
    /// the same answer with its word edits undone: `on` (default) falls back to the 1-best
    /// (`"fallback:base-lm"`) when the base model does not prefer it; a number of nats when it
    /// does not prefer it by at least that much (`on` is 0: by any amount); `off` does not ask. The
    /// difference is written as `"base_lm"`. Asked only of answers the margin check passed
    /// (`--guard-margin off` asks nothing). Only models of low-rank experts over a frozen base
    /// (neko-smol) have a base to ask; in-process backend only. Why: docs/training.md, "A
    /// second opinion".
    #[arg(long, default_value = "on", env = "NEKO_GUARD_BASE_LM")]
    pub guard_base_lm: BaseLm,

    /// Constrained decoding: the model writes only words (as written, punctuation included)
    /// that occur in some hypothesis of the record. `asr` (default with the in-process model)
    /// constrains ASR records and decodes the other tasks freely; `words` constrains every
    /// record; `auto` those with two or more hypotheses (N-best ASR, MT); `none` is free
    /// decoding. Words are split at whitespace: in a script written without spaces a sentence
    /// is one word, so only whole hypotheses can be written (use `none` there). Why ASR:
    /// docs/training.md, "That rule, written before…". A served model
    /// (`--backend openai`) decodes freely and refuses any value but `none`.
    #[arg(long, value_enum, env = "NEKO_CONSTRAIN")]
    pub constrain: Option<Constrain>,

    /// ASR answers' casing and punctuation: `model` (default) as the model writes them;
    /// `follow` writes them in the hypotheses' convention before the guard looks at them
    /// (lower case when no hypothesis has a capital, upper case when none has a small letter,
    /// no punctuation when none has any: marks between word characters become a space,
    /// thousands commas join, apostrophes inside words take the hypotheses' form and those at
    /// words' edges stay only where the hypotheses write such), so formatting no longer
    /// spends the edit limit on a
    /// HyPoradise- or Kaldi-style N-best. With neko-smol, `follow` helps in domain (synth dev)
    /// and hurts out of domain (HyPoradise): docs/training.md, "The style".
    #[arg(long, value_enum, default_value = "model", env = "NEKO_STYLE")]
    pub style: StyleMode,
}

impl DecodeArgs {
    /// The guard flags set off their defaults: under `--no-guard` they do nothing.
    fn guard_flags_set(&self) -> Vec<&'static str> {
        the_set(&[
            (self.guard_max_edit.is_some(), "--guard-max-edit"),
            (self.guard_margin != Margin::default(), "--guard-margin"),
            (self.guard_agreed != Agreed::default(), "--guard-agreed"),
            (self.guard_nbest != Nbest::default(), "--guard-nbest"),
            (self.guard_dropped != Dropped::default(), "--guard-dropped"),
            (self.guard_spacing != Spacing::default(), "--guard-spacing"),
            (self.guard_base_lm != BaseLm::default(), "--guard-base-lm"),
        ])
    }

    /// Every decoding flag set off its default but --routing: a synthetic `neko bench` uses
    /// none of them.
    pub fn flags_set_but_routing(&self) -> Vec<&'static str> {
        let mut set = the_set(&[
            (self.max_new_tokens.is_some(), "--max-new-tokens"),
            (
                self.batch_size != crate::correct::DEFAULT_BATCH_SIZE,
                "--batch-size",
            ),
            (
                self.max_batch_tokens != crate::correct::DEFAULT_MAX_BATCH_TOKENS,
                "--max-batch-tokens",
            ),
            (self.no_prefix_reuse, "--no-prefix-reuse"),
            (self.prompt.is_some(), "--prompt"),
            (!self.stop.is_empty(), "--stop"),
            (self.no_guard, "--no-guard"),
            (self.constrain.is_some(), "--constrain"),
            (self.style != StyleMode::default(), "--style"),
        ]);
        set.extend(self.guard_flags_set());
        set
    }

    /// The decoding options these flags ask for.
    pub fn options(&self) -> CorrectOptions {
        let mut o = CorrectOptions {
            routing: self.routing,
            max_new_tokens: self.max_new_tokens,
            batch_size: self.batch_size.max(1),
            max_batch_tokens: self.max_batch_tokens,
            prefix_reuse: !self.no_prefix_reuse,
            guard: GuardOptions {
                enabled: !self.no_guard,
                max_edit: self.guard_max_edit,
                margin: self.guard_margin,
                agreed: self.guard_agreed,
                nbest: self.guard_nbest,
                dropped: self.guard_dropped,
                spacing: self.guard_spacing,
                base_lm: self.guard_base_lm,
                // Set from `constrain` when the corrector is made.
                ..GuardOptions::on()
            },
            constrain: self.constrain.unwrap_or_default(),
            style: self.style,
            ..CorrectOptions::default()
        };
        if !self.stop.is_empty() {
            o.stop = self.stop.iter().map(|s| unescape(s)).collect();
        }
        o
    }
}

const DEFAULT_CONCURRENCY: usize = 8;
const DEFAULT_TIMEOUT: f64 = 300.0;
const DEFAULT_RETRIES: u32 = 5;
const DEFAULT_RETRY_BACKOFF: f64 = 0.5;

/// Where answers are generated.
#[derive(Debug, Args)]
pub struct BackendArgs {
    /// `local`: the candle model in this process. `openai`: an OpenAI-compatible completions
    /// server (vLLM, TGI, llama.cpp, mistral.rs) at --endpoint; --model then supplies only the
    /// tokenizer and chat template that render prompts (no weights are read).
    #[arg(long, value_enum, default_value_t, env = "NEKO_BACKEND")]
    pub backend: BackendKind,

    /// The server's API base URL, up to /v1 (`http://127.0.0.1:8000/v1`).
    #[arg(long, env = "NEKO_ENDPOINT")]
    pub endpoint: Option<String>,

    /// The `model` name requests carry (vLLM's --served-model-name); default: the first model
    /// the server lists.
    #[arg(long, env = "NEKO_SERVED_MODEL")]
    pub served_model: Option<String>,

    /// Requests in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, env = "NEKO_CONCURRENCY")]
    pub concurrency: usize,

    /// Seconds one request may take (connect, queue, generate, read) before it is retried.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT, env = "NEKO_TIMEOUT")]
    pub timeout: f64,

    /// Retries of a request that failed with 429, a 5xx status, a timeout or a dropped
    /// connection; a record whose request still fails gets an error line.
    #[arg(long, default_value_t = DEFAULT_RETRIES, env = "NEKO_RETRIES")]
    pub retries: u32,

    /// Seconds before the first retry; each further retry waits twice as long (at most 30 s),
    /// or what the server's Retry-After says.
    #[arg(long, default_value_t = DEFAULT_RETRY_BACKOFF, env = "NEKO_RETRY_BACKOFF")]
    pub retry_backoff: f64,

    /// Send prompts as `text` (every engine; the server parses special tokens) or as the
    /// token `ids` neko's tokenizer gives (vLLM, llama.cpp's server; exactly the in-process
    /// tokens).
    #[arg(long, value_enum, default_value_t, env = "NEKO_PROMPT_AS")]
    pub prompt_as: PromptAs,

    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "NEKO_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl BackendArgs {
    /// Refuses flags that do not fit the chosen backend.
    fn validate(&self, model: &ModelArgs, decode: &DecodeArgs) -> anyhow::Result<()> {
        match self.backend {
            BackendKind::Local if self.endpoint.is_some() => {
                bail!("--endpoint needs --backend openai")
            }
            BackendKind::Local => Ok(()),
            BackendKind::Openai => {
                if self.endpoint.is_none() {
                    bail!("--backend openai needs --endpoint URL (e.g. http://127.0.0.1:8000/v1)");
                }
                if model.adapter.is_some() || model.quant.is_some() {
                    bail!("--adapter and --quant change in-process weights; with --backend openai the server's model is used as served");
                }
                if decode.constrain.is_some_and(|c| c != Constrain::None) {
                    bail!("--constrain (or NEKO_CONSTRAIN) needs the in-process model: the completions API gives no control over each token; a served model decodes freely without it (or with `none`)");
                }
                if decode.routing != RoutingMode::Learned {
                    bail!("--routing task forces experts in process; a server routes as its model does");
                }
                // At most a day: larger (or NaN) seconds are no duration.
                let seconds = |s: f64, least: f64| s >= least && s <= 86_400.0;
                if self.concurrency == 0
                    || !seconds(self.timeout, f64::MIN_POSITIVE)
                    || !seconds(self.retry_backoff, 0.0)
                {
                    bail!("--concurrency must be positive, --timeout a positive number of seconds and --retry-backoff a non-negative one (at most 86400)");
                }
                Ok(())
            }
        }
    }

    /// The flags given (set off their defaults) that the chosen backend does not use:
    /// refusing them would break job scripts that set them for either backend, so they are
    /// named in a warning instead.
    fn unused_flags(&self, model: &ModelArgs, decode: &DecodeArgs) -> Vec<&'static str> {
        match self.backend {
            BackendKind::Local => the_set(&[
                (self.served_model.is_some(), "--served-model"),
                (self.concurrency != DEFAULT_CONCURRENCY, "--concurrency"),
                (self.timeout != DEFAULT_TIMEOUT, "--timeout"),
                (self.retries != DEFAULT_RETRIES, "--retries"),
                (
                    self.retry_backoff != DEFAULT_RETRY_BACKOFF,
                    "--retry-backoff",
                ),
                (self.prompt_as != PromptAs::default(), "--prompt-as"),
                (self.api_key.is_some(), "--api-key"),
            ]),
            BackendKind::Openai => the_set(&[
                (model.dtype != "auto", "--dtype"),
                (model.device != "cpu", "--device"),
                (
                    decode.batch_size != crate::correct::DEFAULT_BATCH_SIZE,
                    "--batch-size",
                ),
                (
                    decode.max_batch_tokens != crate::correct::DEFAULT_MAX_BATCH_TOKENS,
                    "--max-batch-tokens",
                ),
                (decode.no_prefix_reuse, "--no-prefix-reuse"),
                (decode.guard_base_lm != BaseLm::default(), "--guard-base-lm"),
            ]),
        }
    }

    /// The client these flags describe, connected (the server is asked for its models).
    fn connect(&self, stop: Vec<String>) -> anyhow::Result<OpenAi> {
        OpenAi::connect(openai::Options {
            endpoint: self.endpoint.clone().unwrap_or_default(),
            model: self.served_model.clone(),
            concurrency: self.concurrency,
            timeout: Duration::from_secs_f64(self.timeout),
            retries: self.retries,
            backoff: Duration::from_secs_f64(self.retry_backoff),
            prompt_as: self.prompt_as,
            stop,
            api_key: self.api_key.clone(),
        })
    }
}

/// `\n` and `\t` typed on a command line mean the characters.
fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

/// Why the earlier output cannot be resumed with this input, once every record has claimed
/// its line: lines of another input, or in another order.
fn resume_refusal(sink: &OutputSink) -> Option<String> {
    if let Some(id) = sink.mismatched().first() {
        return Some(format!(
            "the earlier output's line for id {id} has another 1-best than this input's record \
             ({} such line(s)): it was written from another input",
            sink.mismatched().len()
        ));
    }
    if let Some(id) = sink.disordered() {
        return Some(format!(
            "the earlier output's lines are not in input order (id {id})"
        ));
    }
    let unclaimed = sink.unclaimed();
    let id = unclaimed.first()?;
    Some(format!(
        "the earlier output has {} line(s) that no input record matches (id {id}): it was not \
         written from this input",
        unclaimed.len()
    ))
}

/// The flags whose condition holds (each `(set, "--flag")`).
fn the_set(flags: &[(bool, &'static str)]) -> Vec<&'static str> {
    flags
        .iter()
        .filter(|(set, _)| *set)
        .map(|&(_, f)| f)
        .collect()
}

/// Says which of the flags given do nothing `when`.
pub fn warn_unused(flags: &[&str], when: &str) {
    match flags {
        [] => {}
        [one] => crate::say!("neko: warning: {one} has no effect {when}"),
        many => crate::say!("neko: warning: {} have no effect {when}", many.join(", ")),
    }
}

/// Runs `neko correct`.
pub fn run(args: &CorrectArgs) -> anyhow::Result<u8> {
    // Checked here rather than by clap, which counts a switch's environment twin as given
    // even when it says `0`.
    if args.dump_prompts && (args.output.is_some() || args.resume) {
        bail!("--dump-prompts prints prompts to stdout: not with -o or --resume");
    }
    if args.resume && args.output.is_none() {
        bail!("--resume needs -o FILE: it continues the run that was writing FILE");
    }
    args.backend.validate(&args.model, &args.decode)?;
    let backend = match args.backend.backend {
        BackendKind::Local => "with the in-process model (--backend local)",
        BackendKind::Openai => "with --backend openai",
    };
    warn_unused(
        &args.backend.unused_flags(&args.model, &args.decode),
        backend,
    );
    if args.decode.no_guard {
        warn_unused(&args.decode.guard_flags_set(), "under --no-guard");
    }
    if let Some(out) = &args.output {
        let inputs: Vec<_> = args.inputs.iter().map(PathBuf::as_path).collect();
        super::check_output_path("-o", out, &inputs)?;
    }
    match streams(args) {
        true => run_streamed(args),
        false => run_whole(args),
    }
}

/// Whether the input is read as it arrives, beside the decoding, rather than whole before the
/// model loads: when writing to standard output without --shard, --strict or --dump-prompts.
/// Those look at every record first (a shard's count, the first bad record), and `-o FILE`
/// signs its partial file with the whole input's tasks before its first line, for --resume.
fn streams(args: &CorrectArgs) -> bool {
    args.output.is_none() && args.shard.is_none() && !args.strict && !args.dump_prompts
}

/// The whole input read first: every check on it is made before the model loads.
fn run_whole(args: &CorrectArgs) -> anyhow::Result<u8> {
    let (mut items, input_fingerprint) = input::read_whole(&args.inputs, args.max_record_bytes)?;
    check_tasks_given(&items, args.task)?;
    // The tasks of the whole input, so that every shard of a run has the same signature.
    if let Some(given) = args.task {
        let mut own = OwnTasks::default();
        own.add(&items, given);
        own.say(given);
    }
    let tasks = used_tasks(&items, args.task);
    let total = items.len();
    if let Some(shard) = args.shard {
        items.retain(|it| shard.contains(it.position));
    }
    if args.strict {
        if let Some(bad) = items.iter().find_map(|it| strict_failure(it, args.task)) {
            bail!("--strict: {bad}");
        }
    }
    let mut corrector = make_corrector(args)?;
    for &task in &tasks {
        corrector.check_routing(task).map_err(anyhow::Error::msg)?;
    }
    if args.dump_prompts {
        return dump_prompts(&corrector, &items, args.task, args.shard.map(|_| total));
    }
    let signature = corrector.signature(&tasks);
    let mut sink = match &args.output {
        None => OutputSink::stdout(),
        Some(p) if args.resume => {
            let shard = args.shard.map(|s| (s, total, input_fingerprint.as_str()));
            OutputSink::resume(p, &signature, shard)?
        }
        Some(p) => OutputSink::create(p, Some(&signature))?,
    };
    let todo: Vec<Item> = items
        .into_iter()
        .filter(|it| {
            let best = it.entry.record.as_ref().ok().and_then(|r| r.best());
            !sink.already_written(&it.entry.id(), best)
        })
        .collect();
    if let Some(refusal) = resume_refusal(&sink) {
        sink.abandon();
        bail!("cannot resume: {refusal}; start over without --resume");
    }
    if sink.resumed() > 0 {
        crate::say!(
            "neko: resuming: {} records already written, {} to go",
            sink.resumed(),
            todo.len()
        );
    }
    let interrupted = super::interrupt_flag("finishing the current batch");
    let mut run = Run {
        args,
        progress: super::progress_bar(Some(todo.len() as u64), "correcting"),
        sink,
        stats: Stats::default(),
        interrupted,
        sharded: args.shard.map(|_| (total, input_fingerprint)),
        started: Instant::now(),
    };
    let window = corrector.window();
    let mut todo = todo.into_iter();
    let windows = std::iter::from_fn(|| {
        let w: Vec<Item> = todo.by_ref().take(window).collect();
        (!w.is_empty()).then_some(Ok(w))
    });
    let stopped = run.decode(&mut corrector, windows, |_, _| Ok(()))?;
    run.finish(stopped, &signature)
}

/// The input read as it arrives, once the model has loaded: each window's lines are written
/// once it is decoded. The checks of [`run_whole`] are made on what has arrived: that a task
/// is given, on the first record that can be corrected; a task's routing, on its first record.
fn run_streamed(args: &CorrectArgs) -> anyhow::Result<u8> {
    input::check_streamable(&args.inputs)?;
    let mut corrector = make_corrector(args)?;
    let interrupted = super::interrupt_flag("finishing the current batch");
    let windows = input::stream(
        &args.inputs,
        args.max_record_bytes,
        corrector.window(),
        interrupted.clone(),
    );
    let mut run = Run {
        args,
        progress: super::progress_bar(None, "correcting"),
        sink: OutputSink::stdout(),
        stats: Stats::default(),
        interrupted,
        sharded: None,
        started: Instant::now(),
    };
    let mut tasks: Vec<Task> = Vec::new();
    let mut own = OwnTasks::default();
    let mut correctable_seen = false;
    let stopped = run.decode(
        &mut corrector,
        windows,
        |corrector, window| -> Result<_, StopAt> {
            for (keep, item) in window.iter().enumerate() {
                let Ok(record) = &item.entry.record else {
                    continue;
                };
                let stop = |error| StopAt { keep, error };
                // Read whole, a run without --task stops when no record has a task; streamed,
                // when the first record that can be corrected has none (a forgotten --task).
                if !std::mem::replace(&mut correctable_seen, true) {
                    check_tasks_given(std::slice::from_ref(item), args.task).map_err(stop)?;
                }
                if let Ok(task) = resolve_task(record, args.task) {
                    if !tasks.contains(&task) {
                        let routed = corrector.check_routing(task);
                        routed.map_err(|e| stop(anyhow::Error::msg(e)))?;
                        tasks.push(task);
                    }
                }
            }
            if let Some(given) = args.task {
                own.add(window, given);
            }
            Ok(())
        },
    );
    if let Some(given) = args.task {
        own.say(given);
    }
    let stopped = stopped?;
    tasks.sort();
    run.finish(stopped, &corrector.signature(&tasks))
}

/// Only records that can be corrected need a task: an input of error lines alone (an empty
/// N-best, an upstream failure) still gets its error lines.
fn check_tasks_given(items: &[Item], task: Option<Task>) -> anyhow::Result<()> {
    let correctable = items.iter().any(|it| it.entry.record.is_ok());
    if task.is_none() && correctable && !items.iter().any(|it| has_task(&it.entry)) {
        bail!(
            "no task given: pass --task (asr, st, mt, ocr or gec) or give records a `task` field"
        );
    }
    Ok(())
}

/// The corrector of `--backend`: the model in process, or a server's answers.
fn make_corrector(args: &CorrectArgs) -> anyhow::Result<Corrector> {
    let prompt = super::read_prompt(args.decode.prompt.as_deref())?;
    let options = args.decode.options();
    Ok(match args.backend.backend {
        BackendKind::Local => Corrector::new(args.model.load()?, prompt, options),
        BackendKind::Openai => {
            let model = render::load(&args.model.spec()?, !args.model.no_chat_template)?;
            super::say_chat_ignored(&model);
            if args.dump_prompts {
                // Rendering needs neither weights nor the server.
                Corrector::new(model, prompt, options)
            } else {
                // In process the chat template's end of turn (`<|im_end|>`) ends an answer
                // whatever the config calls EOS; a server stops only at what it is sent.
                let mut stop = options.stop.clone();
                if let Some(end) = model.chat.as_ref().map(|c| c.end_of_turn().to_string()) {
                    if !stop.contains(&end) {
                        stop.push(end);
                    }
                }
                let server = args.backend.connect(stop)?;
                if matches!(args.decode.guard_margin, Margin::All(_)) {
                    crate::say!("neko: warning: --guard-margin needs the in-process backend: served answers are not scored here (`neko guard --score --model M` scores them afterwards)");
                }
                Corrector::with_backend(model, prompt, options, Box::new(server))
            }
        }
    })
}

/// A window that may not be decoded whole: its first `keep` records are, then the run stops
/// with `error` (a streamed run's check on what has arrived).
struct StopAt {
    keep: usize,
    error: anyhow::Error,
}

/// A run's output while it decodes: where lines go, what has been counted, and whether
/// Ctrl-C was pressed.
struct Run<'a> {
    args: &'a CorrectArgs,
    sink: OutputSink,
    stats: Stats,
    progress: indicatif::ProgressBar,
    interrupted: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Under --shard: the whole input's record count and fingerprint, for shard lines.
    sharded: Option<(usize, String)>,
    started: Instant,
}

impl Run<'_> {
    /// Decodes window after window and writes their lines in input order; `before` sees each
    /// window first and may end the run with an error. Records are sorted and batched (or
    /// sent) within a window. An interrupted window writes the records before its first
    /// undecoded one, so that `--resume` continues in input order. `Some(code)`: the run
    /// stopped early (Ctrl-C, a server gone, --strict), and has said why.
    fn decode(
        &mut self,
        corrector: &mut Corrector,
        windows: impl Iterator<Item = anyhow::Result<Vec<Item>>>,
        before: impl FnMut(&Corrector, &[Item]) -> Result<(), StopAt>,
    ) -> anyhow::Result<Option<u8>> {
        corrector.stop_when(self.interrupted.clone());
        let stopped = self.decode_windows(corrector, windows, before);
        if stopped.is_err() {
            // The error is said after the bar is gone, not under it.
            self.progress.finish_and_clear();
        }
        stopped
    }

    fn decode_windows(
        &mut self,
        corrector: &mut Corrector,
        windows: impl Iterator<Item = anyhow::Result<Vec<Item>>>,
        mut before: impl FnMut(&Corrector, &[Item]) -> Result<(), StopAt>,
    ) -> anyhow::Result<Option<u8>> {
        for window in windows {
            let mut window = window.map_err(|e| self.after_written(e))?;
            let stop = before(corrector, &window).err().map(|s| {
                window.truncate(s.keep);
                s.error
            });
            let outputs = match self.interrupted.load(Ordering::SeqCst) {
                true => Vec::new(),
                false => correct_window(corrector, &window, self.args.task),
            };
            let done = outputs.iter().take_while(|o| o.is_some()).count();
            for (out, item) in outputs.into_iter().flatten().zip(&window).take(done) {
                if let Some(code) = self.write(&out, item)? {
                    return Ok(Some(code));
                }
            }
            let written = self.stats.records;
            (self.sink.flush()).map_err(|e| write_failed(&self.sink, e, written))?;
            if let (Some(e), true) = (stop, done == window.len()) {
                return Err(self.after_written(e));
            }
            // A window handed over empty: Ctrl-C while the input was silent.
            if done < window.len() || window.is_empty() {
                self.progress.finish_and_clear();
                if let Some(why) = corrector.backend_failure() {
                    crate::say!("neko: error: the server stopped answering: {why}");
                }
                crate::say!("{}", self.sink.interrupted_message(written));
                return Ok(Some(EXIT_ERROR));
            }
        }
        Ok(None)
    }

    /// A streamed run meets a bad input or an unroutable task mid-run: its error says how
    /// many lines were written before it.
    fn after_written(&self, e: anyhow::Error) -> anyhow::Error {
        match self.stats.records {
            0 => e,
            n => anyhow::anyhow!("{e:#}\n(the {n} records before it were written)"),
        }
    }

    /// One output line; under --strict, a record that failed ends the run (`Some(code)`).
    fn write(&mut self, out: &OutputRecord, item: &Item) -> anyhow::Result<Option<u8>> {
        if let (true, Some(e)) = (self.args.strict, &out.error) {
            // The records before it are written; a resume without --strict goes on.
            self.sink.flush()?;
            self.progress.finish_and_clear();
            crate::say!(
                "neko: error: --strict: {}:{}: {}",
                e.file,
                e.line,
                e.message
            );
            crate::say!("{}", self.sink.interrupted_message(self.stats.records));
            crate::say!("neko: (a resume with --strict stops at this record again; without it, the record gets its error line and the run goes on)");
            return Ok(Some(EXIT_ERROR));
        }
        let wrote = match &self.sharded {
            None => self.sink.write(out),
            Some((total, input)) => self.sink.write(&ShardLine {
                record: out,
                index: item.position,
                of: *total,
                input,
            }),
        };
        let written = self.stats.records;
        wrote.map_err(|e| write_failed(&self.sink, e, written))?;
        self.stats.count(out, item, &self.progress);
        self.progress.inc(1);
        Ok(None)
    }

    /// Completes the output and says what the run did, with its signature; or the code of a
    /// run that stopped early.
    fn finish(self, stopped: Option<u8>, signature: &str) -> anyhow::Result<u8> {
        if let Some(code) = stopped {
            return Ok(code);
        }
        self.progress.finish_and_clear();
        self.sink.finish()?;
        self.stats.report(self.started.elapsed().as_secs_f64());
        crate::say!("neko: {signature}");
        Ok(EXIT_OK)
    }
}

/// A write that failed mid-run (a full disk): the error, which names the file, and how to
/// go on, as after an interruption; a closed pipe is only the reader having gone.
fn write_failed(sink: &OutputSink, e: std::io::Error, written: usize) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return e.into();
    }
    anyhow::anyhow!("{e}\n{}", sink.interrupted_message(written))
}

/// `--dump-prompts`: one JSON line per readable record with the prompt neko would decode;
/// under `--shard`, with the record's `index` and the input's `of`, as correct's lines.
fn dump_prompts(
    corrector: &Corrector,
    items: &[Item],
    default: Option<Task>,
    sharded_of: Option<usize>,
) -> anyhow::Result<u8> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut skipped = 0;
    for item in items {
        let request = item.entry.record.as_ref().ok().and_then(|record| {
            let task = resolve_task(record, default).ok()?;
            Some((task, corrector.request(task, record).ok()?))
        });
        let Some((task, request)) = request else {
            skipped += 1;
            continue;
        };
        let text = corrector
            .model
            .tokenizer
            .decode(&request.prompt, false)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        let mut line = serde_json::json!({
            "id": item.entry.id(),
            "task": task.name(),
            "prompt": text,
            "ids": request.prompt,
            "max_new_tokens": request.max_new_tokens,
        });
        if let Some(of) = sharded_of {
            line["index"] = item.position.into();
            line["of"] = of.into();
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    if skipped > 0 {
        // Their ids are missing from the prompts: say so, and where to see why.
        crate::say!("neko: --dump-prompts skipped {skipped} record(s) that cannot be corrected; run without --dump-prompts for their error lines");
    }
    Ok(EXIT_OK)
}

/// Counts for the summary line on stderr.
#[derive(Default)]
struct Stats {
    records: usize,
    failed: usize,
    /// Answered records whose prediction differs from their 1-best.
    changed: usize,
    guarded: usize,
    warned: usize,
    /// Answers to a single hypothesis that `--guard-nbest pick` sent back: with one hypothesis
    /// the pick leaves the model only formatting, which a user may not expect.
    lone_picks: usize,
}

impl Stats {
    fn count(&mut self, out: &OutputRecord, item: &Item, progress: &indicatif::ProgressBar) {
        self.records += 1;
        self.failed += usize::from(out.error.is_some());
        self.changed += usize::from(out.error.is_none() && out.prediction != out.best);
        self.guarded += usize::from(out.guard.is_some());
        let lone = item
            .entry
            .record
            .as_ref()
            .is_ok_and(|r| r.hypotheses.len() == 1);
        let picked = out.guard == Some(crate::guard::Reason::Nbest.label());
        self.lone_picks += usize::from(lone && picked);
        if let Some(w) = &out.warning {
            self.warned += 1;
            progress
                .suspend(|| crate::say!("neko: warning: {}:{}: {w}", item.file, item.entry.line));
        }
    }

    fn report(&self, secs: f64) {
        crate::say!(
            "neko: {} records: {} answered ({} changed from their 1-best), {} failed (error field), {} guard fallbacks, {} with a warning (cut to fit, a guard score not computed, an earlier step's error); {secs:.1}s, {:.2} records/s",
            self.records,
            self.records - self.failed,
            self.changed,
            self.failed,
            self.guarded,
            self.warned,
            self.records as f64 / secs.max(1e-9)
        );
        if self.lone_picks > 0 {
            crate::say!(
                "neko: {} ASR answers to a single hypothesis fell back (fallback:nbest): an answer must be one of its hypotheses, so with one it may change only formatting; --guard-nbest free lets the model correct words",
                self.lone_picks
            );
        }
    }
}

/// Under `--strict`, the first record that cannot be corrected, described.
fn strict_failure(item: &Item, default: Option<Task>) -> Option<String> {
    let at = format!("{}:{}", item.file, item.entry.line);
    match &item.entry.record {
        // An earlier step's error (a recogniser's) is said to be one: it is not neko's.
        Err(e) if e.upstream => Some(format!("{at}: an earlier step's error: {e}")),
        Err(e) => Some(format!("{at}: {e}")),
        Ok(r) => resolve_task(r, default).err().map(|m| format!("{at}: {m}")),
    }
}

/// Records that carry a `task` other than `--task` (theirs wins): how many, and the first's.
#[derive(Default)]
struct OwnTasks {
    count: usize,
    first: Option<String>,
}

impl OwnTasks {
    fn add(&mut self, items: &[Item], given: Task) {
        let others = (items.iter())
            .filter_map(|it| it.entry.record.as_ref().ok()?.task.clone())
            .filter(|t| t.parse::<Task>().ok() != Some(given));
        for task in others {
            self.count += 1;
            self.first.get_or_insert(task);
        }
    }

    /// Said on stderr: a wrong file passed to the wrong command is easy to miss otherwise.
    fn say(&self, given: Task) {
        if let Some(first) = &self.first {
            crate::say!(
                "neko: {} record(s) carry their own `task` (the first: {first}), which wins over --task {given}",
                self.count
            );
        }
    }
}

fn has_task(entry: &Entry) -> bool {
    entry.record.as_ref().is_ok_and(|r| r.task.is_some())
}

fn used_tasks(items: &[Item], default: Option<Task>) -> Vec<Task> {
    let mut tasks: Vec<Task> = items
        .iter()
        .filter_map(|it| it.entry.record.as_ref().ok())
        .filter_map(|r| resolve_task(r, default).ok())
        .collect();
    tasks.sort();
    tasks.dedup();
    tasks
}

/// The record's own task, else the command line's.
fn resolve_task(record: &Record, default: Option<Task>) -> Result<Task, String> {
    match (&record.task, default) {
        (Some(t), _) => t.parse::<Task>().map_err(|e| e.to_string()),
        (None, Some(t)) => Ok(t),
        (None, None) => {
            Err("no task: the record has no `task` field and --task was not given".into())
        }
    }
}

/// Corrects one window of records and returns their output lines in input order; `None` for a
/// record left undecoded because the run was stopped.
fn correct_window(
    corrector: &mut Corrector,
    chunk: &[Item],
    default: Option<Task>,
) -> Vec<Option<OutputRecord>> {
    let mut outputs: Vec<Option<OutputRecord>> = vec![None; chunk.len()];
    let mut by_task: std::collections::BTreeMap<Task, Vec<usize>> = Default::default();
    for (i, item) in chunk.iter().enumerate() {
        let failure = |field: Option<&str>, message: String| RecordFailure {
            file: item.file.clone(),
            line: item.entry.line,
            field: field.map(str::to_string),
            message,
        };
        match &item.entry.record {
            Err(e) => {
                let mut out = OutputRecord::unreadable(&item.entry, &item.file, e);
                // A record without a task field would have been corrected as --task's.
                out.task = out.task.or(default.map(|t| t.name().to_string()));
                outputs[i] = Some(out);
            }
            Ok(r) => match resolve_task(r, default) {
                Ok(t) => by_task.entry(t).or_default().push(i),
                Err(m) => {
                    outputs[i] = Some(OutputRecord::failed(r, None, failure(Some("task"), m)))
                }
            },
        }
    }
    for (task, idx) in by_task {
        let records: Vec<&Record> = idx
            .iter()
            .map(|&i| chunk[i].entry.record.as_ref().expect("readable"))
            .collect();
        let results = corrector.correct_task(task, &records);
        for ((&i, r), result) in idx.iter().zip(&records).zip(results) {
            outputs[i] = Some(match result {
                // Not decoded: no line, so that a resumed run decodes it.
                Err(m) if m == STOPPED => continue,
                Ok(c) => OutputRecord::corrected(r, task.name(), c),
                Err(m) => OutputRecord::failed(
                    r,
                    Some(task.name()),
                    RecordFailure {
                        file: chunk[i].file.clone(),
                        line: chunk[i].entry.line,
                        field: None,
                        message: m,
                    },
                ),
            });
        }
    }
    outputs
}
