//! The corrector: records in, corrected text out. It renders each record's task prompt,
//! batches records of one task by prompt length, decodes greedily and cuts out the answer.

mod score;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::backend::local::{self, InProcess};
use crate::backend::{Backend, Generation, Prompt};
use crate::constrain::{Pieces, WordConstraint};
use crate::generate::{self, DecodeStats, Finish, Request, Settings};
use crate::guard::{self, GuardOptions, Reason};
use crate::model::{Model, PrefixCache, RoutingMode};
use crate::prompt::Template;
use crate::record::Record;
use crate::style::StyleMode;
use crate::Task;

/// Records decoded together by default. Decoding reads every weight once per step for all rows,
/// so more rows make each token cheaper; prefill runs in small column chunks whatever the batch
/// ([`crate::generate`]). Measured on 200 chime4 records with SmolLM2 f32, one core
/// (docs/speed.md): 16 rows 1.11 records/s, 32 1.38, 48 1.51, 64 1.43 (padding grows).
pub const DEFAULT_BATCH_SIZE: usize = 48;

/// The default KV-cache budget of a batch in positions: 48 HyPoradise-sized rows (about 330
/// positions each with the answer bound); for SmolLM2 f32 about 750 MB of K/V at most.
pub const DEFAULT_MAX_BATCH_TOKENS: usize = 16384;

/// Decoding settings of `neko correct`.
#[derive(Debug, Clone)]
pub struct CorrectOptions {
    pub routing: RoutingMode,
    /// Bound on answer tokens; `None` derives it from the longest hypothesis.
    pub max_new_tokens: Option<usize>,
    /// Strings that end the answer (after some text has been written).
    pub stop: Vec<String>,
    /// Most records decoded together.
    pub batch_size: usize,
    /// Most KV-cache positions a batch may hold: rows × (shared prefix + longest row prompt +
    /// largest answer bound), padding included. A single record larger than this still runs
    /// alone.
    pub max_batch_tokens: usize,
    /// Compute the prompt prefix shared by a task's records once and reuse its KV cache.
    pub prefix_reuse: bool,
    /// The over-correction guard.
    pub guard: GuardOptions,
    /// Which records decode only their hypotheses' words ([`crate::constrain`]).
    pub constrain: Constrain,
    /// Whether ASR answers follow the hypotheses' casing and punctuation ([`crate::style`]).
    pub style: StyleMode,
}

/// Which records `--constrain` restricts to their hypotheses' words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Constrain {
    /// None: free decoding.
    None,
    /// ASR records (the default): adopted by a rule written before its out-of-domain dev
    /// decoding, docs/training.md "That rule, written before…".
    #[default]
    Asr,
    /// Every record.
    Words,
    /// Records with two or more hypotheses (ASR, MT N-best); a single hypothesis (OCR, GEC)
    /// decodes freely, as its corrections need words it does not have.
    Auto,
}

impl Constrain {
    /// Whether a record of this task with these hypotheses is constrained.
    pub fn applies(self, task: Task, hypotheses: &[String]) -> bool {
        match self {
            Constrain::None => false,
            Constrain::Asr => task == Task::Asr,
            Constrain::Words => true,
            Constrain::Auto => hypotheses.len() > 1,
        }
    }

    /// The name in signatures and flags.
    pub fn name(self) -> &'static str {
        match self {
            Constrain::None => "none",
            Constrain::Asr => "asr",
            Constrain::Words => "words",
            Constrain::Auto => "auto",
        }
    }
}

impl Default for CorrectOptions {
    fn default() -> Self {
        CorrectOptions {
            routing: RoutingMode::Learned,
            max_new_tokens: None,
            stop: vec!["\n".to_string()],
            batch_size: DEFAULT_BATCH_SIZE,
            max_batch_tokens: DEFAULT_MAX_BATCH_TOKENS,
            prefix_reuse: true,
            guard: GuardOptions::default(),
            constrain: Constrain::default(),
            style: StyleMode::Model,
        }
    }
}

/// A corrected text and how decoding ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    /// The text to output: the model's answer (in the hypotheses' style with `--style
    /// follow`, see [`crate::style`]), or the 1-best when the guard fell back.
    pub text: String,
    /// The answer as the model wrote it, where the style changed it: the margin scores this,
    /// the model's own text, not a restyled one it would find unlikely.
    pub written: Option<String>,
    pub finish: Finish,
    pub new_tokens: usize,
    /// Why the guard replaced the answer with the 1-best, if it did.
    pub guard: Option<Reason>,
    /// The answer's log-probability minus its margin baseline's (nats; for ASR the answer with
    /// its word edits undone, else the 1-best), where the margin check ran.
    pub margin: Option<f64>,
    /// The base model's log-probability of the answer minus its margin baseline's (nats, each
    /// text alone), where the base-model check ran ([`guard::check_base_lm`]).
    pub base_lm: Option<f64>,
    /// What had to be cut to fit the model's context, if anything.
    pub warning: Option<String>,
}

impl Correction {
    /// A guard score, or NaN where it could not be computed: unscored is unproven, so the
    /// check that reads it keeps the 1-best, and the warning says why.
    fn score_or_warn(&mut self, scored: Result<f64, String>, what: &str) -> f64 {
        scored.unwrap_or_else(|e| {
            let said = format!("{what} not scored: {e}");
            self.warning = Some(match self.warning.take() {
                Some(w) => format!("{w}; {said}"),
                None => said,
            });
            f64::NAN
        })
    }

    /// The 1-best instead of the answer, for `reason`.
    fn fall_back(&mut self, reason: Reason, best: &str) {
        self.guard = Some(reason);
        self.text = best.to_string();
        self.written = None;
    }
}

/// A record's prompt, and what had to be cut to fit it in the context.
struct Fitted {
    ids: Vec<u32>,
    /// The text `ids` encode (without BOS), for backends that take text.
    text: String,
    warning: Option<String>,
    /// Whether the 1-best itself was cut: an answer then covers only its head.
    best_cut: bool,
    /// The answer-token bound, within the positions the prompt leaves: a row that ran past
    /// the model's context would fail its whole batch.
    max_new: usize,
}

/// A model with its prompts and decoding settings.
pub struct Corrector {
    pub model: Model,
    pub options: CorrectOptions,
    prompt_override: Option<Template>,
    add_bos: Option<u32>,
    /// The tokenizer's special tokens (`<|im_start|>`, `</s>`, ...): neutralised in hypotheses,
    /// and a sign of a leaking prompt in answers.
    specials: Vec<String>,
    /// What the guard treats as prompt leaking into an answer: the section marker and the
    /// special tokens.
    guard_markers: Vec<String>,
    /// The shared prompt prefix of each task (the forced expert follows from the task).
    prefixes: BTreeMap<Task, PrefixCache>,
    /// Token and time counts of everything decoded so far.
    pub stats: DecodeStats,
    /// Where answers are generated when not by `model` in this process (`--backend openai`).
    remote: Option<Box<dyn Backend>>,
    /// Each token's text, built on first use by constrained decoding.
    pieces: Option<Pieces>,
    /// Set (by Ctrl-C) to stop before the next batch: [`Corrector::stop_when`].
    stop: Option<Arc<AtomicBool>>,
}

/// The largest `k` in `0..=n` with `fits(k)`, where `fits` holds up to some `k` and not beyond
/// and `fits(n)` is known to be false; 0 where nothing fits.
fn most_that_fit(
    n: usize,
    mut fits: impl FnMut(usize) -> Result<bool, String>,
) -> Result<usize, String> {
    let (mut lo, mut hi) = (0, n);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match fits(mid)? {
            true => lo = mid,
            false => hi = mid,
        }
    }
    Ok(lo)
}

/// An error's message without the backtrace candle appends when `RUST_BACKTRACE` is set: a
/// record's error line should say what failed, not carry kilobytes of stack. Context stays.
fn without_backtrace(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", without_backtrace(inner))
        }
        other => other.to_string(),
    }
}

/// The error of a record whose batch never ran because the run was told to stop.
pub const STOPPED: &str = "not decoded: the run was stopped";

impl Corrector {
    /// Wraps a loaded model. `prompt` replaces every task's built-in template.
    pub fn new(mut model: Model, prompt: Option<Template>, mut options: CorrectOptions) -> Self {
        // ASR's default margin follows the decoding (`Constrain::Auto` leaves a record with
        // one hypothesis free, but its run counts as constrained: one margin per run).
        options.guard.constrained = options.constrain != Constrain::None;
        // Only a model of low-rank experts over a frozen base has a base model to ask.
        if !model.decoder.set_base_only(false) {
            options.guard.base_lm = guard::BaseLm::Off;
        }
        let add_bos = bos_to_add(&model);
        let specials = crate::prompt::special_tokens(&model.tokenizer);
        let mut guard_markers = vec!["###".to_string()];
        guard_markers.extend(specials.iter().cloned());
        Corrector {
            model,
            options,
            prompt_override: prompt,
            add_bos,
            specials,
            guard_markers,
            prefixes: BTreeMap::new(),
            stats: DecodeStats::default(),
            remote: None,
            pieces: None,
            stop: None,
        }
    }

    /// Stops decoding once `flag` is set: in process before the next batch, served before
    /// the next request (those in flight are answered). The records left get the error
    /// [`STOPPED`], so an interrupted run ends soon rather than after its whole window.
    pub fn stop_when(&mut self, flag: Arc<AtomicBool>) {
        if let Some(b) = &mut self.remote {
            b.stop_when(flag.clone());
        }
        self.stop = Some(flag);
    }

    /// Why the served backend stopped answering for good, if it did (a server gone): the
    /// records it left got [`STOPPED`].
    pub fn backend_failure(&self) -> Option<String> {
        self.remote.as_ref().and_then(|b| b.failure())
    }

    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// A corrector whose answers come from `backend` (a server); `model` then only renders
    /// prompts (its tokenizer and chat template; it may have no weights).
    pub fn with_backend(
        model: Model,
        prompt: Option<Template>,
        options: CorrectOptions,
        backend: Box<dyn Backend>,
    ) -> Self {
        // A served model's answers cannot be scored here (no margin check), nor its tokens
        // chosen (no constrained decoding: the CLI refuses asking for it).
        let options = CorrectOptions {
            guard: options.guard.without_margin(),
            constrain: Constrain::None,
            ..options
        };
        let mut c = Corrector::new(model, prompt, options);
        c.remote = Some(backend);
        c
    }

    /// How many records to hand [`Corrector::correct_task`] at once to keep the backend busy.
    pub fn window(&self) -> usize {
        match &self.remote {
            Some(b) => b.window(),
            None => local::window(&self.options),
        }
    }

    /// The signature part naming where answers come from.
    fn engine_signature(&self) -> String {
        match &self.remote {
            Some(b) => b.signature(),
            None => local::signature(&self.model),
        }
    }

    /// The template used for a task.
    pub fn template(&self, task: Task) -> Template {
        self.prompt_override
            .clone()
            .unwrap_or_else(|| Template::builtin(task))
    }

    /// Checks that the routing mode can serve a task: task routing needs the model's task map.
    pub fn check_routing(&self, task: Task) -> Result<(), String> {
        self.forced_expert(task).map(|_| ())
    }

    fn forced_expert(&self, task: Task) -> Result<Option<usize>, String> {
        forced_expert(&self.model.config, self.options.routing, task)
    }

    /// The decoding request for a record as `correct_task` builds it: its prompt ids (fitted to
    /// the context) and answer-token bound. What `neko correct --dump-prompts` prints.
    pub fn request(&self, task: Task, record: &Record) -> Result<Request, String> {
        let max_new = self.max_new_tokens(record);
        let p = self.fit_prompt(task, &record.hypotheses, max_new)?;
        Ok(Request {
            prompt: p.ids,
            max_new_tokens: p.max_new,
        })
    }

    /// The prompt's token ids for a record.
    pub fn encode_prompt(&self, task: Task, record: &Record) -> Result<Vec<u32>, String> {
        self.fit_prompt(task, &record.hypotheses, usize::MAX)
            .map(|p| p.ids)
    }

    /// The prompt's text and ids, as `neko train` renders them
    /// ([`crate::prompt::model_prompt_ids`]): special tokens in hypotheses neutralised, the
    /// chat template applied, BOS added to the ids where the model asks. Backends that take
    /// text are sent the text.
    fn render(&self, task: Task, hypotheses: &[String]) -> Result<(String, Vec<u32>), String> {
        let text = crate::prompt::model_prompt_text(
            &self.model,
            &self.template(task),
            hypotheses,
            &self.specials,
        );
        let ids = crate::prompt::encode_model_prompt(&self.model, &text, self.add_bos)?;
        Ok((text, ids))
    }

    /// The context policy: when the prompt plus `max_new` answer tokens do not fit the model's
    /// context, drop the lowest-ranked hypotheses first, then cut the 1-best's last words.
    fn fit_prompt(
        &self,
        task: Task,
        hypotheses: &[String],
        max_new: usize,
    ) -> Result<Fitted, String> {
        let context = self.model.config.max_position_embeddings;
        let budget = context.saturating_sub(max_new.min(context / 2));
        let mut hyps = hypotheses.to_vec();
        let (mut text, mut ids) = self.render(task, &hyps)?;
        if ids.len() <= budget {
            return Ok(Fitted {
                max_new: max_new.min(context - ids.len()),
                ids,
                text,
                warning: None,
                best_cut: false,
            });
        }
        let given = hyps.len();
        if given > 1 {
            // The most hypotheses, best first, that fit (by bisection: a render per try).
            let fits = |k: usize| Ok(self.render(task, &hypotheses[..k])?.1.len() <= budget);
            let kept = 1 + most_that_fit(given - 1, |j| fits(j + 1))?;
            hyps.truncate(kept);
            (text, ids) = self.render(task, &hyps)?;
        }
        let words: Vec<&str> = hypotheses[0].split_whitespace().collect();
        let total_words = words.len();
        let mut cut_note = None;
        if ids.len() > budget {
            // The most words of the 1-best that fit, found by bisection: tokens per word vary
            // too much (other scripts, OCR noise) for a cut guessed from the overshoot.
            let fits = |hyp: String| -> Result<bool, String> {
                Ok(self.render(task, &[hyp])?.1.len() <= budget)
            };
            let kept = most_that_fit(total_words, |k| fits(words[..k].join(" ")))?;
            let mut cut = words[..kept].join(" ");
            cut_note = Some(format!("cut the 1-best to {kept} of {total_words} words"));
            if kept == 0 {
                // Not even one word (a line without spaces): as many characters as fit.
                let chars: Vec<char> = words.first().map_or(vec![], |w| w.chars().collect());
                let n = most_that_fit(chars.len(), |k| fits(chars[..k].iter().collect()))?;
                cut = chars[..n].iter().collect();
                cut_note = Some(format!(
                    "cut the 1-best to {n} of {} characters",
                    chars.len()
                ));
            }
            hyps = vec![cut];
            (text, ids) = self.render(task, &hyps)?;
        }
        if ids.len() > budget {
            return Err(format!(
                "the prompt template alone ({} tokens) leaves fewer than the {} positions kept \
                 for the answer in the context of {context}",
                ids.len(),
                context - budget
            ));
        }
        let mut warning = format!(
            "prompt over the {context}-token context: kept {} of {given} hypotheses",
            hyps.len()
        );
        let best_cut = cut_note.is_some();
        if let Some(note) = cut_note {
            warning += &format!(", {note}");
        }
        Ok(Fitted {
            max_new: max_new.min(context - ids.len()),
            ids,
            text,
            warning: Some(warning),
            best_cut,
        })
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        let enc = self
            .model
            .tokenizer
            .encode(text, true)
            .map_err(|e| format!("tokenizer: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The answer-token bound for a record: twice its longest hypothesis plus some slack, so a
    /// correction can add words but cannot run on for pages.
    fn max_new_tokens(&self, record: &Record) -> usize {
        if let Some(n) = self.options.max_new_tokens {
            return n;
        }
        let longest = record
            .hypotheses
            .iter()
            .map(|h| self.encode(h).map(|ids| ids.len()).unwrap_or(h.len()))
            .max()
            .unwrap_or(0);
        2 * longest + 16
    }

    /// Corrects records that all share one task. Results are in the order given.
    pub fn correct_task(
        &mut self,
        task: Task,
        records: &[&Record],
    ) -> Vec<Result<Correction, String>> {
        let forced = match self.forced_expert(task) {
            Ok(f) => f,
            Err(e) => return records.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results: Vec<Option<Result<Correction, String>>> = vec![None; records.len()];
        let mut prompts: Vec<Prompt> = Vec::new();
        let mut fitted: Vec<(usize, Option<String>, bool)> = Vec::new();
        if (records.iter()).any(|r| self.options.constrain.applies(task, &r.hypotheses)) {
            self.build_pieces();
        }
        for (i, r) in records.iter().enumerate() {
            let max_new = self.max_new_tokens(r);
            match self.fit_prompt(task, &r.hypotheses, max_new) {
                Ok(p) => {
                    let max_new = p.max_new;
                    fitted.push((i, p.warning, p.best_cut));
                    let constraint = (self.options.constrain.applies(task, &r.hypotheses))
                        .then_some(self.pieces.as_ref())
                        .flatten()
                        .map(|pieces| {
                            let tokenizer = &self.model.tokenizer;
                            Arc::new(WordConstraint::new(&r.hypotheses, tokenizer, pieces))
                        });
                    prompts.push(Prompt {
                        ids: p.ids,
                        text: p.text,
                        max_new_tokens: max_new,
                        constraint,
                    });
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let generated = match self.remote.as_mut() {
            Some(backend) => backend.generate(task, &prompts),
            None => InProcess {
                corrector: self,
                forced,
            }
            .generate(task, &prompts),
        };
        for (((i, warning, best_cut), g), p) in fitted.into_iter().zip(generated).zip(&prompts) {
            results[i] = Some(g.map(|g| {
                let mut c = self.answer(task, records[i], &g, p.constraint.as_deref());
                c.warning = warning;
                // An answer to the head of a cut 1-best would lose its tail; the edit limits
                // of MT, ST and GEC (half the words) let such an answer through.
                if best_cut && self.options.guard.enabled && c.guard.is_none() {
                    c.fall_back(guard::Reason::Cut, records[i].best().unwrap_or_default());
                }
                self.check_margin(task, forced, records[i], &p.ids, &mut c);
                c
            }));
        }
        results
            .into_iter()
            .map(|r| r.expect("every record has a result"))
            .collect()
    }

    /// Continues prompts of one task with this corrector's own model ([`InProcess`]): sorted
    /// by length into token-budget batches after the task's shared prefix.
    pub(crate) fn generate_local(
        &mut self,
        task: Task,
        forced: Option<usize>,
        prompts: &[Prompt],
    ) -> Vec<Result<Generation, String>> {
        let mut results: Vec<Option<Result<Generation, String>>> = vec![None; prompts.len()];
        let mut ready: Vec<(usize, Request)> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let request = Request {
                    prompt: p.ids.clone(),
                    max_new_tokens: p.max_new_tokens,
                };
                (i, request)
            })
            .collect();
        let prefix = match self.shared_prefix(task, forced, &ready) {
            Ok(p) => p,
            Err(e) => {
                let e = format!("decoding failed: {}", without_backtrace(&e));
                return prompts.iter().map(|_| Err(e.clone())).collect();
            }
        };
        let n = prefix.as_ref().map_or(0, PrefixCache::len);
        for (_, r) in &mut ready {
            r.prompt.drain(..n);
        }
        // Similar lengths together waste the least padding.
        ready.sort_by_key(|(_, r)| r.prompt.len());
        let mut start = 0;
        while start < ready.len() && !self.stopped() {
            let end = start + self.batch_len(n, &ready[start..]);
            let chunk = &ready[start..end];
            start = end;
            let requests: Vec<Request> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let constraints: Vec<Option<&WordConstraint>> = chunk
                .iter()
                .map(|(i, _)| prompts[*i].constraint.as_deref())
                .collect();
            let outcome = self.decode(prefix.as_ref(), &requests, &constraints, forced);
            for (k, (i, _)) in chunk.iter().enumerate() {
                results[*i] = Some(match &outcome {
                    Ok(gen) => Ok(Generation {
                        // Special tokens stay in the text so the guard can see a leaking prompt.
                        text: self
                            .model
                            .tokenizer
                            .decode(&gen[k].tokens, false)
                            .unwrap_or_default(),
                        finish: gen[k].finish,
                        tokens: gen[k].tokens.len(),
                    }),
                    Err(e) => Err(format!("decoding failed: {}", without_backtrace(e))),
                });
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(STOPPED.to_string())))
            .collect()
    }

    /// How many of `sorted` (by row prompt length) go in the next batch: at most
    /// `batch_size`, and at most `max_batch_tokens` KV positions counting the shared prefix,
    /// padding to the longest row and the largest answer bound; at least one. A batch runs
    /// until its largest answer bound, and its longest row must stay within the model's
    /// positions all that time, though each row alone was fitted to its own bound.
    fn batch_len(&self, prefix: usize, sorted: &[(usize, Request)]) -> usize {
        let context = self.model.config.max_position_embeddings;
        let (mut longest, mut max_new) = (0, 0);
        for (rows, (_, r)) in sorted.iter().enumerate() {
            longest = longest.max(r.prompt.len());
            max_new = max_new.max(r.max_new_tokens);
            let positions = prefix + longest + max_new;
            let full = rows >= self.options.batch_size
                || (rows + 1) * positions > self.options.max_batch_tokens
                || positions > context;
            if rows > 0 && full {
                return rows;
            }
        }
        sorted.len()
    }

    /// The task's shared prefix, computed once per task: the longest common token prefix of
    /// the prompts (each keeps at least one token of its own). Later calls reuse it, cut to
    /// what their prompts share (exact: a prefix's K/V never depends on later tokens).
    /// `None` when reuse is off, unsupported, or under 8 tokens.
    fn shared_prefix(
        &mut self,
        task: Task,
        forced: Option<usize>,
        ready: &[(usize, Request)],
    ) -> candle_core::Result<Option<PrefixCache>> {
        const MIN_PREFIX: usize = 8;
        if !self.options.prefix_reuse || ready.is_empty() {
            return Ok(None);
        }
        let mut lcp: &[u32] = &ready[0].1.prompt;
        lcp = &lcp[..lcp.len().saturating_sub(1)];
        for (_, r) in &ready[1..] {
            let n = common_prefix(lcp, &r.prompt[..r.prompt.len().saturating_sub(1)]);
            lcp = &lcp[..n];
        }
        if let Some(cached) = self.prefixes.get_mut(&task) {
            let n = common_prefix(&cached.tokens, lcp);
            if n >= MIN_PREFIX {
                cached.truncate(n)?;
                return Ok(Some(cached.clone()));
            }
        }
        if lcp.len() < MIN_PREFIX {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let Some(prefix) = self.model.decoder.prefill_prefix(lcp, forced)? else {
            return Ok(None);
        };
        self.stats.prefixes += 1;
        self.stats.prefix_tokens += prefix.len();
        self.stats.prefill_s += started.elapsed().as_secs_f64();
        self.prefixes.insert(task, prefix.clone());
        Ok(Some(prefix))
    }

    fn decode(
        &mut self,
        prefix: Option<&PrefixCache>,
        requests: &[Request],
        constraints: &[Option<&WordConstraint>],
        forced: Option<usize>,
    ) -> candle_core::Result<Vec<generate::Generated>> {
        let eos = self.model.config.eos_token_ids.clone();
        let constrained = constraints.iter().any(Option::is_some);
        if constrained {
            self.build_pieces();
        }
        let pieces = self.pieces.as_ref();
        let choose = |i: usize, tokens: &[u32], logits: &[f32]| -> Option<u32> {
            match (constraints[i], pieces) {
                (Some(c), Some(p)) => c.choose(p, tokens, logits),
                _ => Some(generate::argmax(logits)),
            }
        };
        let tokenizer = &self.model.tokenizer;
        let stop = &self.options.stop;
        let stopped = |tokens: &[u32]| -> bool {
            // Special tokens kept, as the answer is decoded: a stop string that is one
            // (`<end_of_turn>`) must stop the decoding it will cut.
            let text = tokenizer.decode(tokens, false).unwrap_or_default();
            let text = text.trim_start();
            stop.iter()
                .any(|s| !s.is_empty() && text.contains(s.as_str()))
        };
        let settings = Settings {
            eos: &eos,
            forced_expert: forced,
            stopped: &stopped,
            choose: if constrained { Some(&choose) } else { None },
        };
        generate::greedy_batch_with(
            self.model.decoder.as_mut(),
            prefix,
            requests,
            &settings,
            &mut self.stats,
        )
    }

    /// Each token's text, for constrained decoding: built once, on first use.
    fn build_pieces(&mut self) {
        if self.pieces.is_none() {
            self.pieces = Some(Pieces::new(
                &self.model.tokenizer,
                &self.model.config.eos_token_ids,
                &self.options.stop,
            ));
        }
    }

    /// What the guard treats as the prompt leaking into an answer: the section marker and the
    /// model's special tokens.
    pub fn guard_markers(&self) -> &[String] {
        &self.guard_markers
    }

    /// The answer: the generated text up to the first stop string, trimmed, then guarded.
    fn answer(
        &self,
        task: Task,
        record: &Record,
        generated: &Generation,
        constraint: Option<&WordConstraint>,
    ) -> Correction {
        let finish = generated.finish;
        let mut text = generated.text.trim_start();
        // The chat template's end of turn ends the answer too (a server that did not stop at
        // it, asked again without stop strings, leaves it in the text).
        let end_of_turn = self
            .model
            .chat
            .as_ref()
            .map(|c| c.end_of_turn().to_string());
        for s in (self.options.stop.iter().chain(&end_of_turn)).filter(|s| !s.is_empty()) {
            if let Some(at) = text.find(s.as_str()) {
                text = &text[..at];
            }
        }
        let mut text = text.trim();
        if let Some(c) = constraint {
            text = c.drop_open_word(text);
        }
        let written = text.to_string();
        let text = self.options.style.apply(task, &record.hypotheses, &written);
        let guard = guard::check(
            &written,
            &text,
            &record.hypotheses,
            task,
            finish,
            &self.guard_markers,
            &self.options.guard,
        );
        let (text, written) = match guard {
            Some(_) => (record.best().unwrap_or_default().to_string(), None),
            None => {
                let written = (written != text).then_some(written);
                (text, written)
            }
        };
        Correction {
            text,
            written,
            finish,
            new_tokens: generated.tokens,
            guard,
            margin: None,
            base_lm: None,
            warning: None,
        }
    }
}

/// The BOS id to put before a prompt. In a chat template's conversation, when the template
/// writes `{{ bos_token }}`: `apply_chat_template` tokenises without the tokenizer's own
/// special tokens, so that is its only BOS. Otherwise when `tokenizer_config.json` asks for one
/// (`add_bos_token`; the tokenizer's own post-processor may add it too, and it is not doubled).
pub fn bos_to_add(model: &Model) -> Option<u32> {
    let dir = model.files.tokenizer.parent();
    let settings: serde_json::Value = (dir.map(|d| d.join("tokenizer_config.json")))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let wanted = match &model.chat {
        Some(chat) => chat.bos(),
        None => settings.get("add_bos_token").and_then(|v| v.as_bool()) == Some(true),
    };
    if !wanted {
        return None;
    }
    // config.json's id, else the token tokenizer_config.json names (what transformers uses).
    let named = match settings.get("bos_token") {
        Some(serde_json::Value::String(s)) => Some(s.as_str()),
        Some(o) => o.get("content").and_then(|c| c.as_str()),
        None => None,
    };
    let id = model
        .config
        .bos_token_id
        .or_else(|| model.tokenizer.token_to_id(named?));
    if id.is_none() {
        crate::say!(
            "neko: warning: {}: a BOS token is asked for, but neither config.json's \
             bos_token_id nor tokenizer_config.json's bos_token names one in the vocabulary: \
             prompts go without it",
            model.files.spec
        );
    }
    id
}

impl Corrector {
    /// The correction run's signature: every setting that changes the predictions, like
    /// sacrebleu's (`correct|model:fp-...|routing:learned|decode:greedy|...`). `neko correct`
    /// prints it and writes it beside `-o FILE` as `FILE.sig`; `neko eval` reports it.
    pub fn signature(&self, tasks: &[Task]) -> String {
        use sha2::{Digest, Sha256};
        let model = self
            .model
            .files
            .fingerprint()
            .unwrap_or_else(|_| "unreadable".into());
        let prompts: String = tasks
            .iter()
            .map(|&t| {
                let tpl = self.template(t);
                let short = crate::model::files::hex(&Sha256::digest(tpl.text().as_bytes())[..4]);
                format!("{t}={}@{short}", tpl.origin)
            })
            .collect::<Vec<_>>()
            .join(",");
        let o = &self.options;
        let routing = format!("{:?}", o.routing).to_lowercase();
        let max_new = o
            .max_new_tokens
            .map_or("auto".to_string(), |n| n.to_string());
        let decode = decode_signature(o.constrain, tasks);
        let guard = o.guard.signature(tasks);
        let style = o.style.name();
        let chat = if self.model.chat.is_some() {
            "yes"
        } else {
            "no"
        };
        format!(
            "correct|model:fp-{model}|{}|routing:{routing}|decode:{decode}|max_new:{max_new}|stop:{:?}|prompt:{prompts}|chat:{chat}|guard:{guard}|style:{style}|neko:{}",
            self.engine_signature(),
            o.stop,
            env!("CARGO_PKG_VERSION")
        )
    }
}

/// The signature's decoding: `greedy`, `+words` where every record is constrained, `+auto` as
/// asked, and for the ASR default what it did to this run's tasks, so a run of ASR records
/// signs as `--constrain words` does (the same decoding).
fn decode_signature(constrain: Constrain, tasks: &[Task]) -> String {
    let asr = tasks.iter().filter(|&&t| t == Task::Asr).count();
    match constrain {
        Constrain::None => "greedy".to_string(),
        Constrain::Asr if asr == 0 => "greedy".to_string(),
        Constrain::Asr if asr == tasks.len() => "greedy+words".to_string(),
        c => format!("greedy+{}", c.name()),
    }
}

/// Length of the longest common prefix of two token sequences.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The expert `routing` forces for `task`'s tokens: none for learned routing; for task
/// routing, the task's expert from the model's config, refused for a dense model or a task
/// the config does not map.
pub fn forced_expert(
    config: &crate::model::ModelConfig,
    routing: RoutingMode,
    task: Task,
) -> Result<Option<usize>, String> {
    match routing {
        RoutingMode::Learned => Ok(None),
        RoutingMode::Task if !config.is_moe() => Err(
            "--routing task: the model is dense (no experts to force); its signature would say task routing that never ran".to_string(),
        ),
        RoutingMode::Task => config.task_expert(task).map(Some).ok_or_else(|| {
            format!("--routing task: the model's config.json has no `task_experts` entry for `{task}` (a GGUF file carries none: --routing learned)")
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_error_keeps_the_message_and_drops_the_backtrace() {
        let e = candle_core::Error::Msg("index-select invalid index 512".into()).bt();
        assert_eq!(
            super::without_backtrace(&e),
            "index-select invalid index 512"
        );
        let e = candle_core::Error::Msg("no such row".into())
            .bt()
            .context("prefill");
        assert_eq!(super::without_backtrace(&e), "prefill: no such row");
    }
}
