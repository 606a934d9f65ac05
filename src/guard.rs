//! The over-correction guard: an LLM corrector must never make a transcript worse by inventing
//! text. A prediction that is empty, runs away, leaks the prompt's markers, or strays further
//! from every hypothesis than a set edit ratio is replaced by the 1-best, and the output says
//! why (`"guard": "fallback:<reason>"`). Where the model can score text (in-process decoding),
//! an answer must also be likelier by a margin than what it changed ([`default_margin`],
//! [`margin_baseline`]).

use crate::generate::Finish;
use crate::metrics::align::Op;
use crate::Task;

/// What an edit is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Words,
    /// Characters, for OCR: its errors are inside words, and one wrong word can hide a
    /// rewritten line from a word count of the same length.
    Chars,
}

/// How far a prediction may stray from the nearest hypothesis: at most `ratio` edits per unit
/// of that hypothesis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub ratio: f64,
    pub unit: Unit,
}

/// Each task's default limit, chosen on the synth dev splits (never a test set) with
/// neko-smol's answers (docs/training.md, "The guard, chosen per task"): ASR gains only from
/// small edits of an N-best that is mostly right (0.1 of the words); OCR's corrections help
/// by characters only within 0.05 of the line's characters; MT and GEC corrections move far
/// from the input and keep most of their gain at 0.5, which still stops invented text.
pub fn default_limit(task: Task) -> Limit {
    match task {
        Task::Asr => Limit {
            ratio: 0.1,
            unit: Unit::Words,
        },
        Task::Ocr => Limit {
            ratio: 0.05,
            unit: Unit::Chars,
        },
        Task::St | Task::Mt | Task::Gec => Limit {
            ratio: 0.5,
            unit: Unit::Words,
        },
    }
}

/// Each task's default margin in nats: an answer is kept only if the model gives it at least
/// this much more log-probability than its [`margin_baseline`] (for ASR the answer with its
/// word edits undone, so the model must prefer its edits and not just its formatting; else
/// the 1-best; both scored as the whole answer, end token included). 1.5 was chosen on the
/// synth dev splits with neko-smol (docs/training.md, "The margin"): among the answers the
/// edit limit lets through, those the model barely prefers are as often worse as better on
/// ASR and OCR. Constrained ASR answers (`constrained`, the default decoding) ask for 4: on
/// Whisper base hearing a natural voice, the dev set most like HyPoradise's strong
/// recognisers, 1.5 was worse than the 1-best and 4 the best margin that kept both synth ASR
/// dev splits ahead of theirs (docs/training.md, "A stronger-sounding dev set"). On MT and GEC
/// the margin hardly changes the dev scores, and scoring would nearly double their cost
/// (almost every answer differs from the input), so they have none.
pub fn default_margin(task: Task, constrained: bool) -> Option<f64> {
    match task {
        Task::Asr if constrained => Some(4.0),
        Task::Asr | Task::Ocr => Some(1.5),
        Task::St | Task::Mt | Task::Gec => None,
    }
}

/// Guard settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardOptions {
    /// Whether the guard runs at all (`--no-guard` turns it off).
    pub enabled: bool,
    /// One edit ratio for every task (`--guard-max-edit`), counted in each task's unit;
    /// `None` uses [`default_limit`].
    pub max_edit: Option<f64>,
    /// The margin check's threshold. Only a corrector that can score text applies it.
    pub margin: Margin,
    /// What happens to an ASR answer that changes what every hypothesis agrees on
    /// ([`changes_agreed_words`]; `--guard-agreed`).
    pub agreed: Agreed,
    /// Whether an ASR answer must be one of its hypotheses, no longer than the 1-best
    /// ([`is_a_pick`]; `--guard-nbest`).
    pub nbest: Nbest,
    /// Whether ASR answers were decoded under the hypotheses' words (`neko correct`'s default;
    /// `--constrain none` and served models decode freely): ASR's [`default_margin`] depends
    /// on it.
    pub constrained: bool,
    /// What happens to an ASR answer that only leaves out words of the 1-best
    /// ([`only_drops_words`]; `--guard-dropped`).
    pub dropped: Dropped,
    /// What happens to an ASR answer that only joins or splits words of the 1-best
    /// ([`only_moves_spaces`]; `--guard-spacing`).
    pub spacing: Spacing,
    /// Whether an ASR answer that changes words must also be likelier than its
    /// [`margin_baseline`] under the corrector's base model ([`check_base_lm`];
    /// `--guard-base-lm`).
    pub base_lm: BaseLm,
}

/// What the guard does with ASR answers that only leave out words of the 1-best
/// (`--guard-dropped`; [`only_drops_words`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Dropped {
    /// Fall back to the 1-best (`"guard": "fallback:dropped"`).
    #[default]
    Keep,
    /// Let the answer leave them out.
    Free,
}

/// What the guard does with ASR answers that only join or split words of the 1-best
/// (`--guard-spacing`; [`only_moves_spaces`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Spacing {
    /// Fall back to the 1-best (`"guard": "fallback:spacing"`).
    #[default]
    Keep,
    /// Let the answer move the 1-best's word boundaries.
    Free,
}

/// The base-model check of ASR answers (`--guard-base-lm`; [`check_base_lm`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BaseLm {
    /// An answer the base model does not prefer by at least this many nats (0: by any amount)
    /// falls back to the 1-best (`"guard": "fallback:base-lm"`).
    On(f64),
    /// No such check.
    Off,
}

/// The base-model check's default threshold, in nats: the base model must prefer the answer
/// by any amount (docs/training.md, "A second opinion").
pub const DEFAULT_BASE_LM: f64 = 0.0;

impl Default for BaseLm {
    fn default() -> Self {
        BaseLm::On(DEFAULT_BASE_LM)
    }
}

impl std::str::FromStr for BaseLm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on" | "default" => Ok(BaseLm::default()),
            "off" | "none" => Ok(BaseLm::Off),
            _ => s
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t >= 0.0)
                .map(BaseLm::On)
                .ok_or_else(|| format!("`{s}`: a threshold in nats (0 or more), `on` or `off`")),
        }
    }
}

/// Which margin the guard asks for (`--guard-margin`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Margin {
    /// Each task's [`default_margin`].
    #[default]
    PerTask,
    /// No margin check (`off`): answers are not scored.
    Off,
    /// This many nats for every task (may be negative: the baseline may then be likelier by up
    /// to that much).
    All(f64),
}

/// What the guard does with ASR answers that change words every hypothesis agrees on
/// (`--guard-agreed`; [`changes_agreed_words`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Agreed {
    /// Fall back to the 1-best (`"guard": "fallback:agreed"`).
    #[default]
    Keep,
    /// Let the answer change them.
    Free,
}

/// What the guard asks of an ASR answer's words (`--guard-nbest`; [`is_a_pick`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Nbest {
    /// The answer must be one of its hypotheses, word for word, with no more words than the
    /// 1-best; else it falls back to the 1-best (`"guard": "fallback:nbest"`).
    #[default]
    Pick,
    /// The answer may write its own words.
    Free,
}

impl std::str::FromStr for Margin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" | "none" => Ok(Margin::Off),
            "task" | "default" => Ok(Margin::PerTask),
            _ => s
                .parse::<f64>()
                .ok()
                .filter(|m| !m.is_nan())
                .map(Margin::All)
                .ok_or_else(|| format!("`{s}`: a margin in nats, `off` or `task`")),
        }
    }
}

impl Default for GuardOptions {
    fn default() -> Self {
        Self::on()
    }
}

impl GuardOptions {
    /// The guard on, with each task's default limit, for constrained answers.
    pub fn on() -> Self {
        GuardOptions {
            enabled: true,
            max_edit: None,
            margin: Margin::PerTask,
            agreed: Agreed::Keep,
            nbest: Nbest::default(),
            constrained: true,
            dropped: Dropped::default(),
            spacing: Spacing::default(),
            base_lm: BaseLm::default(),
        }
    }

    /// These options without the checks that score text (for predictions no model here can
    /// score): the margin and the base model's.
    pub fn without_margin(&self) -> Self {
        GuardOptions {
            margin: Margin::Off,
            base_lm: BaseLm::Off,
            ..self.clone()
        }
    }

    /// Whether an answer for `task` must also be preferred by the corrector's base model: ASR
    /// only, the one task where it was measured (docs/training.md, "A second opinion"), and
    /// only where the margin check runs (a second opinion on what passed it; `off` scores
    /// nothing).
    pub fn asks_base_lm(&self, task: Task) -> bool {
        matches!(self.base_lm, BaseLm::On(_)) && task == Task::Asr && self.margin(task).is_some()
    }

    /// The margin that applies to `task`, if any.
    pub fn margin(&self, task: Task) -> Option<f64> {
        if !self.enabled {
            return None;
        }
        match self.margin {
            Margin::PerTask => default_margin(task, self.constrained),
            Margin::Off => None,
            Margin::All(m) => Some(m),
        }
    }

    /// Whether the agreement check applies to `task`: to ASR's N-best only, where hypotheses
    /// are a recogniser's alternatives for the same audio (MT's come from different systems,
    /// OCR and GEC give one).
    pub fn keeps_agreed(&self, task: Task) -> bool {
        self.enabled && self.agreed == Agreed::Keep && task == Task::Asr
    }

    /// Whether an answer for `task` may not just leave out words of its 1-best: ASR only, whose
    /// lower hypotheses often drop a word the audio has.
    pub fn keeps_dropped(&self, task: Task) -> bool {
        self.enabled && self.dropped == Dropped::Keep && task == Task::Asr
    }

    /// Whether an answer for `task` may not just join or split words of its 1-best: ASR only,
    /// where word boundaries are the recogniser's spelling conventions, not what was heard.
    pub fn keeps_spacing(&self, task: Task) -> bool {
        self.enabled && self.spacing == Spacing::Keep && task == Task::Asr
    }

    /// Whether an answer for `task` must be one of its hypotheses: ASR only, whose N-best are
    /// a recogniser's alternatives for the same audio.
    pub fn picks(&self, task: Task) -> bool {
        self.enabled && self.nbest == Nbest::Pick && task == Task::Asr
    }

    /// The limit that applies to `task`.
    pub fn limit(&self, task: Task) -> Limit {
        let mut limit = default_limit(task);
        if let Some(r) = self.max_edit {
            limit.ratio = r;
        }
        limit
    }

    /// The guard's part of a signature, e.g. `asr:w0.1+m1.5,mt:w0.5` or `off`.
    pub fn signature(&self, tasks: &[Task]) -> String {
        if !self.enabled {
            return "off".into();
        }
        tasks
            .iter()
            .map(|&t| {
                let l = self.limit(t);
                let unit = match l.unit {
                    Unit::Words => "w",
                    Unit::Chars => "c",
                };
                let margin = self.margin(t).map_or(String::new(), |m| format!("+m{m}"));
                let agreed = if self.keeps_agreed(t) { "+agreed" } else { "" };
                let pick = if self.picks(t) { "+pick" } else { "" };
                let dropped = if self.keeps_dropped(t) {
                    "+dropped"
                } else {
                    ""
                };
                let spacing = if self.keeps_spacing(t) {
                    "+spacing"
                } else {
                    ""
                };
                let base = match self.base_lm {
                    // Written without its threshold at 0, as before thresholds were settable.
                    BaseLm::On(n) if self.asks_base_lm(t) && n == 0.0 => "+base-lm".to_string(),
                    BaseLm::On(n) if self.asks_base_lm(t) => format!("+base-lm{n}"),
                    _ => String::new(),
                };
                let checks = format!("{margin}{agreed}{pick}{dropped}{spacing}{base}");
                format!("{}:{unit}{}{checks}", t.name(), l.ratio)
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Why a prediction was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The prediction is empty while the 1-best is not.
    Empty,
    /// Decoding hit the token limit (the answer did not end by itself).
    Length,
    /// An n-gram repeats over and over where no hypothesis repeats it.
    Repeat,
    /// The prediction contains the prompt's section markers or chat tokens.
    Markers,
    /// The prediction is further from every hypothesis than the edit ratio allows.
    Edit,
    /// The prediction changes what every hypothesis agrees on: a word they all have, or a
    /// word added where none adds one.
    Agreed,
    /// The prediction is none of the hypotheses, or one longer than the 1-best (ASR with
    /// `--guard-nbest pick`).
    Nbest,
    /// The prediction is the 1-best with words left out, and nothing else changed (ASR with
    /// `--guard-dropped keep`).
    Dropped,
    /// The prediction is the 1-best with words joined or split, and nothing else changed (ASR
    /// with `--guard-spacing keep`).
    Spacing,
    /// The model does not prefer the prediction to its baseline by the margin.
    Margin,
    /// The corrector's base model, without the prompt, does not prefer the prediction to its
    /// baseline.
    BaseLm,
    /// The 1-best was cut to fit the model's context, so the answer covers only its head.
    Cut,
}

impl Reason {
    /// The name used in `"guard": "fallback:<name>"`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Empty => "empty",
            Reason::Length => "length",
            Reason::Repeat => "repeat",
            Reason::Markers => "markers",
            Reason::Edit => "edit",
            Reason::Agreed => "agreed",
            Reason::Nbest => "nbest",
            Reason::Dropped => "dropped",
            Reason::Spacing => "spacing",
            Reason::Margin => "margin",
            Reason::BaseLm => "base-lm",
            Reason::Cut => "cut",
        }
    }

    /// The output line's `"guard"` value: `fallback:<name>`.
    pub fn label(self) -> String {
        format!("fallback:{}", self.name())
    }
}

/// Checks an answer the model wrote as `written` and that is output as `prediction` (in the
/// hypotheses' style, [`crate::style`]; often the same text): `None` keeps it, `Some(reason)`
/// falls back to the 1-best. `markers` are strings that belong to the prompt, never to an
/// answer; they are looked for in what the model wrote (the style strips `###`), the rest in
/// what is output.
pub fn check(
    written: &str,
    prediction: &str,
    hypotheses: &[String],
    task: Task,
    finish: Finish,
    markers: &[String],
    opts: &GuardOptions,
) -> Option<Reason> {
    if !opts.enabled {
        return None;
    }
    let best = hypotheses.first().map(String::as_str).unwrap_or("");
    if prediction.trim().is_empty() {
        return (!best.trim().is_empty()).then_some(Reason::Empty);
    }
    if finish == Finish::Length {
        return Some(Reason::Length);
    }
    let leaks = |text: &str, m: &String| !m.is_empty() && text.contains(m.as_str());
    if markers
        .iter()
        .any(|m| leaks(written, m) && !hypotheses.iter().any(|h| leaks(h, m)))
    {
        return Some(Reason::Markers);
    }
    let words: Vec<&str> = prediction.split_whitespace().collect();
    if has_runaway_repeat(&words) && !hypotheses.iter().any(|h| has_runaway_repeat(&split(h))) {
        return Some(Reason::Repeat);
    }
    let limit = opts.limit(task);
    let chars = squeeze(prediction);
    let nearest = hypotheses
        .iter()
        .map(|h| match limit.unit {
            // A script written without spaces (Chinese, Japanese, Thai) has no words to count:
            // a whole sentence would be one, and any change all of it. Its characters are.
            Unit::Words if !unspaced(h) && !unspaced(prediction) => {
                let hw = split(h);
                word_edits(&words, &hw) as f64 / hw.len().max(1) as f64
            }
            Unit::Words | Unit::Chars => {
                let hc = squeeze(h);
                crate::metrics::align::distance(&chars, &hc) as f64 / hc.len().max(1) as f64
            }
        })
        .fold(f64::INFINITY, f64::min);
    if nearest > limit.ratio {
        return Some(Reason::Edit);
    }
    if opts.keeps_agreed(task) && changes_agreed_words(prediction, hypotheses) {
        return Some(Reason::Agreed);
    }
    if opts.picks(task) && !is_a_pick(prediction, hypotheses) {
        return Some(Reason::Nbest);
    }
    if opts.keeps_dropped(task) && only_drops_words(prediction, best) {
        return Some(Reason::Dropped);
    }
    (opts.keeps_spacing(task) && only_moves_spaces(prediction, best)).then_some(Reason::Spacing)
}

/// Whether `prediction` is `best` with words joined or split and nothing else changed: their
/// words (compared as [`word_key`]s, so "its" and "it's" differ) are not the same, but written
/// without spaces they are ("non zero" and "nonzero"). Word boundaries are spelling
/// conventions the recogniser learnt from its transcripts and the corrector cannot hear;
/// on the dev sets three of the four such picks were worse than the 1-best (docs/training.md,
/// "Word boundaries are not what was heard").
pub fn only_moves_spaces(prediction: &str, best: &str) -> bool {
    let (p, b) = (word_keys(prediction), word_keys(best));
    p != b && p.concat() == b.concat()
}

/// Whether `prediction` is `best` with one or more words left out and nothing else changed
/// (words compared as [`word_key`]s, as ASR is scored). Whisper's lower beams often drop a
/// word, and a language model gives a text with a token fewer a higher log-probability
/// almost whatever the token, so neither the margin nor the base model's opinion is evidence
/// for such a pick; on the dev set most like HyPoradise's strong recognisers all 26 of them
/// were worse than the 1-best (docs/training.md, "Dropped words").
pub fn only_drops_words(prediction: &str, best: &str) -> bool {
    let (p, b) = (word_keys(prediction), word_keys(best));
    let mut rest = b.iter();
    p.len() < b.len() && p.iter().all(|w| rest.any(|x| x == w))
}

/// Whether `prediction` is a pick: it says what one of `hypotheses` says, word for word (words
/// compared as [`word_key`]s, as ASR is scored: casing and punctuation around words may differ), and has no more words than the 1-best. Out of its training domain neko-smol
/// picks well among an N-best and writes badly: on an out-of-domain dev set its answers that
/// were a hypothesis won, those that combined the hypotheses' words anew or added a word of
/// their own lost, and so did its picks of a longer hypothesis, on the dev set and on records
/// held out to check that (docs/training.md, "Picked, not written").
pub fn is_a_pick(prediction: &str, hypotheses: &[String]) -> bool {
    let words = word_keys(prediction);
    picks(hypotheses).any(|(_, h)| h == words)
}

/// The hypotheses an ASR answer may pick, by position and as [`word_keys`]: those with no more
/// words than the 1-best, the 1-best first.
pub(crate) fn picks(hypotheses: &[String]) -> impl Iterator<Item = (usize, Vec<String>)> + '_ {
    let mut keys = hypotheses.iter().map(|h| word_keys(h)).enumerate();
    let best = keys.next();
    let best_len = best.as_ref().map_or(0, |(_, k)| k.len());
    best.into_iter()
        .chain(keys.filter(move |(_, k)| k.len() <= best_len))
}

/// Whether `prediction` changes the 1-best where the N-best agrees: substitutes or drops a
/// word that every other hypothesis has too, or adds a word between two words where no
/// hypothesis adds one. Words are compared as [`word_key`]s (as ASR is scored). A recogniser's N-best that agrees on a word is rarely wrong about it, and a small
/// corrector outside its training domain overrules it mostly wrongly (chosen on an
/// out-of-domain dev set: docs/training.md, "Agreed words"). A single hypothesis says nothing
/// about agreement, so such records are not checked.
pub fn changes_agreed_words(prediction: &str, hypotheses: &[String]) -> bool {
    let Some((best, others)) = hypotheses.split_first() else {
        return false;
    };
    if others.is_empty() {
        return false;
    }
    let best = word_keys(best);
    let (mut open_words, mut open_gaps) = (vec![false; best.len()], vec![false; best.len() + 1]);
    for h in others {
        for_each_change(&best, &word_keys(h), |at, op| match op {
            Op::Insert => open_gaps[at] = true,
            _ => open_words[at] = true,
        });
    }
    let mut agreed = false;
    for_each_change(&best, &word_keys(prediction), |at, op| {
        agreed |= match op {
            Op::Insert => !open_gaps[at],
            _ => !open_words[at],
        };
    });
    agreed
}

/// Calls `f(at, op)` for each change of an alignment of `best` to `other`: `at` is the
/// position in `best` of the word substituted or deleted, or of the word an insertion comes
/// before (`best.len()` at the end).
fn for_each_change(best: &[String], other: &[String], mut f: impl FnMut(usize, Op)) {
    let mut at = 0;
    for op in crate::metrics::align::align(best, other) {
        if op != Op::Equal {
            f(at, op);
        }
        at += usize::from(op != Op::Insert);
    }
}

/// The words of `text` as [`word_key`]s, leaving out those with no letter or digit.
pub(crate) fn word_keys(text: &str) -> Vec<String> {
    split(text)
        .into_iter()
        .map(word_key)
        .filter(|k| !k.is_empty())
        .collect()
}

/// Parses an edit limit (`--guard-max-edit`, `neko guard --max-edit`): a ratio of at least 0.
/// NaN is refused: no edit distance exceeds it, so it would keep every answer.
pub fn parse_max_edit(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t >= 0.0 => Ok(t),
        _ => Err(format!(
            "`{s}` is not a ratio of at least 0 (0.1: a tenth of the words)"
        )),
    }
}

/// The margin check of an answer the other checks kept: `margin` is its log-probability minus
/// its [`margin_baseline`]'s, in nats. `None` keeps it; `Some(Margin)` falls back (a NaN
/// margin too).
pub fn check_margin(margin: f64, task: Task, opts: &GuardOptions) -> Option<Reason> {
    let need = opts.margin(task)?;
    (margin.is_nan() || margin < need).then_some(Reason::Margin)
}

/// The base-model check: `diff` is the base model's log-probability of the answer minus its
/// [`margin_baseline`]'s, each text alone (no prompt). neko-smol sometimes prefers a lower
/// hypothesis of a strong recogniser for reasons of its own (the prompt, its experts); plain
/// English, its base, shares few of those preferences, and asking it to agree sent back more
/// worse picks than better ones on every dev set tried (docs/training.md, "A second opinion").
/// The base model must prefer the answer (d > 0), and by at least the threshold.
pub fn check_base_lm(diff: f64, task: Task, opts: &GuardOptions) -> Option<Reason> {
    let BaseLm::On(need) = opts.base_lm else {
        return None;
    };
    if !opts.asks_base_lm(task) {
        return None;
    }
    (diff.is_nan() || diff <= 0.0 || diff < need).then_some(Reason::BaseLm)
}

/// What the margin compares an answer with. ASR is scored on normalised words (casing and
/// punctuation do not count), so only the answer's word edits are put to the test: the answer
/// with them undone ([`undo_word_edits`]). The other tasks are scored on the text as written,
/// so every change counts: the 1-best.
pub fn margin_baseline(task: Task, answer: &str, best: &str) -> String {
    match task {
        Task::Asr => undo_word_edits(answer, best),
        Task::St | Task::Mt | Task::Ocr | Task::Gec => best.trim().to_string(),
    }
}

/// The answer with its word edits undone: what ASR's margin compares the answer with. Words are
/// aligned as [`word_key`]s (so casing and punctuation around words are not edits);
/// where the answer changed, dropped or added a word of the 1-best, the 1-best's word comes
/// back (in the answer's casing and punctuation around it) or the added word goes. Only the
/// answer's formatting of the 1-best is left: a model that prefers formatted text to a
/// lowercase, unpunctuated 1-best (HyPoradise's style) must still prefer its word edits.
pub fn undo_word_edits(answer: &str, best: &str) -> String {
    // Only tokens with a key are words; the answer's others ("—", "&") stay where they are.
    let (a, b) = (split(answer), split(best));
    let (ka, kb): (Vec<String>, Vec<String>) = (
        a.iter().map(|w| word_key(w)).collect(),
        b.iter().map(|w| word_key(w)).collect(),
    );
    let (ia, ib): (Vec<usize>, Vec<usize>) = (
        (0..a.len()).filter(|&i| !ka[i].is_empty()).collect(),
        (0..b.len()).filter(|&j| !kb[j].is_empty()).collect(),
    );
    let keys = |k: &[String], idx: &[usize]| idx.iter().map(|&i| k[i].clone()).collect::<Vec<_>>();
    let (mut i, mut j, mut next) = (0, 0, 0);
    let mut out: Vec<String> = Vec::with_capacity(b.len());
    for op in crate::metrics::align::align(&keys(&kb, &ib), &keys(&ka, &ia)) {
        if op != Op::Delete {
            // The answer's punctuation-only tokens before its next word.
            out.extend(a[next..ia[i]].iter().map(|t| t.to_string()));
            next = ia[i] + 1;
        }
        match op {
            Op::Equal => out.push(a[ia[i]].to_string()),
            Op::Substitute => out.push(dress_like(b[ib[j]], a[ia[i]])),
            Op::Delete => out.push(b[ib[j]].to_string()),
            Op::Insert => {}
        }
        i += usize::from(op != Op::Delete);
        j += usize::from(op != Op::Insert);
    }
    out.extend(a[next..].iter().map(|t| t.to_string()));
    out.join(" ")
}

/// What counts as a word for the guard, as for ASR scoring: the word without the punctuation
/// around it, lowercased, its apostrophes (any of [`is_apostrophe`]'s) written `'`. Casing and
/// the punctuation around a word do not count; what is inside one does: "aren't" and "arent",
/// "1.5" and "15", "e-mail" and "email" are different words to whisper-en, the ASR default
/// (which spells "aren't" out as "are not"), and to unnormalised scoring.
fn word_key(w: &str) -> String {
    use crate::normalize::basic::{is_apostrophe, is_word_char};
    // A word starts at a letter or digit; it ends after one and the marks on it.
    let word: String = (w.trim_start_matches(|c: char| !c.is_alphanumeric()))
        .trim_end_matches(|c: char| !is_word_char(c))
        .chars()
        .map(|c| if is_apostrophe(c) { '\'' } else { c })
        .collect();
    lowercase(&word)
}

/// Lower case as a reader compares words: Turkish `İ` is `i` (Unicode lowers it to `i` and a
/// combining dot, which no hypothesis written in lower case has).
pub(crate) fn lowercase(s: &str) -> String {
    // Whole-string lowering keeps Greek's final sigma (ΤΗΣ → της); the combining dot that
    // Python's lower() leaves after an `i` from `İ` goes too.
    s.replace('İ', "I").to_lowercase().replace("i\u{307}", "i")
}

/// `word` (its letters) with `like`'s punctuation before and after and its capital first
/// letter.
fn dress_like(word: &str, like: &str) -> String {
    use crate::normalize::basic::is_word_char;
    let core = (word.trim_start_matches(|c: char| !c.is_alphanumeric()))
        .trim_end_matches(|c: char| !is_word_char(c));
    let lead: String = like.chars().take_while(|c| !c.is_alphanumeric()).collect();
    let rest = &like[lead.len()..];
    let tail = &rest[rest.trim_end_matches(|c: char| !is_word_char(c)).len()..];
    let capital = rest.chars().next().is_some_and(char::is_uppercase);
    let mut chars = core.chars();
    let core = match chars.next() {
        Some(c) if capital => c.to_uppercase().chain(chars).collect(),
        _ => core.to_string(),
    };
    format!("{lead}{core}{tail}")
}

/// Characters with runs of whitespace made one space (as CER counts them).
/// Whether `s` is mostly in a script written without spaces between words (Han, kana
/// (half-width too), Bopomofo, Thai, Lao, Tibetan, Khmer, Myanmar): half of its letters or
/// more. A name in such a script inside English
/// ("we flew to 東京") leaves the text counted in words.
fn unspaced(s: &str) -> bool {
    let letters = s.chars().filter(|c| c.is_alphanumeric());
    let (mut all, mut unspaced) = (0usize, 0usize);
    for c in letters {
        all += 1;
        unspaced += usize::from(matches!(c as u32,
            0x3040..=0x30FF | 0x3100..=0x312F | 0x31A0..=0x31FF | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0xFF66..=0xFF9F | 0x20000..=0x2FA1F
            | 0x0E00..=0x0EFF | 0x0F00..=0x0FFF | 0x1780..=0x17FF | 0x1000..=0x109F));
    }
    all > 0 && 2 * unspaced >= all
}

fn squeeze(s: &str) -> Vec<char> {
    split(s).join(" ").chars().collect()
}

fn split(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// An n-gram (n ≤ 4) repeated back to back: 4+ times for single words, 3+ times for longer
/// n-grams. Ordinary text almost never does this; a looping decoder does.
fn has_runaway_repeat(words: &[&str]) -> bool {
    (1..=4usize).any(|n| {
        let need = if n == 1 { 4 } else { 3 };
        (0..words.len()).any(|start| {
            let mut count = 1;
            let mut at = start + n;
            while at + n <= words.len() && words[at..at + n] == words[start..start + n] {
                count += 1;
                at += n;
            }
            count >= need
        })
    })
}

/// Word-level Levenshtein distance.
fn word_edits(a: &[&str], b: &[&str]) -> usize {
    crate::metrics::align::distance(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::check`] of an answer output as written.
    fn check(
        prediction: &str,
        hypotheses: &[String],
        task: Task,
        finish: Finish,
        markers: &[String],
        opts: &GuardOptions,
    ) -> Option<Reason> {
        super::check(
            prediction, prediction, hypotheses, task, finish, markers, opts,
        )
    }

    fn hyps(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn verdict(pred: &str, h: &[&str], finish: Finish) -> Option<&'static str> {
        let markers = vec!["###".to_string(), "<|im_end|>".to_string()];
        let opts = GuardOptions {
            max_edit: Some(0.3),
            ..GuardOptions::on()
        };
        check(pred, &hyps(h), Task::Gec, finish, &markers, &opts).map(Reason::name)
    }

    #[test]
    fn keeps_a_close_correction() {
        assert_eq!(
            verdict(
                "the cat sat on the mat",
                &["the cat sad on the mat", "a cat sat"],
                Finish::Stop
            ),
            None
        );
    }

    #[test]
    fn falls_back_for_each_reason() {
        let h = ["the cat sat on the mat"];
        assert_eq!(verdict("  ", &h, Finish::Stop), Some("empty"));
        assert_eq!(
            verdict("the cat sat on the mat", &h, Finish::Length),
            Some("length")
        );
        assert_eq!(
            verdict("the cat ### Response:", &h, Finish::Eos),
            Some("markers")
        );
        assert_eq!(
            verdict("the cat the cat the cat sat", &h, Finish::Eos),
            Some("repeat")
        );
        assert_eq!(
            verdict("dogs are running in the park today", &h, Finish::Eos),
            Some("edit")
        );
    }

    /// Casing does not count, Turkish `İ` included (lowered by Unicode to `i` and a combining
    /// dot, so "İstanbul" and "istanbul" were two words).
    #[test]
    fn word_keys_ignore_casing_turkish_dotted_i_too() {
        assert_eq!(word_keys("İstanbul, Don’t!"), word_keys("istanbul don't"));
        assert_eq!(word_keys("i\u{307}stanbul"), word_keys("İstanbul"));
        assert_eq!(word_keys("ΤΗΣ"), word_keys("της"));
    }

    /// Text written without spaces counts characters, not words: a Chinese sentence is one
    /// "word", so adding its final full stop was an edit of all of it (1.0, over MT's 0.5).
    #[test]
    fn unspaced_scripts_count_characters() {
        let on = GuardOptions::on();
        let h = hyps(&["我们明天去北京"]);
        let mt = |pred: &str| check(pred, &h, Task::Mt, Finish::Eos, &[], &on).map(Reason::name);
        assert_eq!(mt("我们明天去北京。"), None);
        assert_eq!(mt("他们昨天在上海吃饭了很多"), Some("edit"));
        // Spaced text still counts words.
        let h = hyps(&["the cat sat"]);
        let mt = |pred: &str| check(pred, &h, Task::Mt, Finish::Eos, &[], &on).map(Reason::name);
        assert_eq!(mt("dogs ran far away now"), Some("edit"));
        // A name in such a script inside spaced text leaves it counted in words.
        let h = hyps(&["we flew to 東京 with friends"]);
        let mt = |pred: &str| check(pred, &h, Task::Mt, Finish::Eos, &[], &on).map(Reason::name);
        assert_eq!(mt("they went to 東京 alone today"), Some("edit"));
    }

    #[test]
    fn what_the_hypotheses_contain_is_not_held_against_the_prediction() {
        assert_eq!(verdict("no no no no", &["no no no no"], Finish::Eos), None);
        assert_eq!(
            verdict("use ### here", &["use ### here"], Finish::Eos),
            None
        );
        assert_eq!(verdict("", &[""], Finish::Eos), None);
    }

    #[test]
    fn disabled_guard_keeps_everything() {
        let off = GuardOptions {
            enabled: false,
            ..GuardOptions::on()
        };
        assert_eq!(
            check("", &hyps(&["x"]), Task::Asr, Finish::Length, &[], &off),
            None
        );
    }

    #[test]
    fn the_margin_applies_per_task_and_can_be_set_for_all_or_none() {
        let on = GuardOptions::on();
        // Constrained ASR answers (the default) need 4 nats, free ones 1.5, OCR 1.5.
        assert_eq!(check_margin(3.9, Task::Asr, &on), Some(Reason::Margin));
        assert_eq!(check_margin(4.0, Task::Asr, &on), None);
        let unconstrained = GuardOptions {
            constrained: false,
            ..GuardOptions::on()
        };
        assert_eq!(
            check_margin(1.0, Task::Asr, &unconstrained),
            Some(Reason::Margin)
        );
        assert_eq!(check_margin(1.5, Task::Asr, &unconstrained), None);
        assert_eq!(check_margin(0.2, Task::Ocr, &on), Some(Reason::Margin));
        assert_eq!(check_margin(1.5, Task::Ocr, &on), None);
        assert_eq!(
            unconstrained.signature(&[Task::Asr, Task::Ocr]),
            "asr:w0.1+m1.5+agreed+pick+dropped+spacing+base-lm,ocr:c0.05+m1.5"
        );
        // An unscored (NaN) answer is not proven better than the 1-best.
        assert_eq!(check_margin(f64::NAN, Task::Asr, &on), Some(Reason::Margin));
        // MT and GEC have no default margin.
        assert_eq!(check_margin(-5.0, Task::Mt, &on), None);
        assert_eq!(check_margin(-5.0, Task::Gec, &on), None);
        let all = GuardOptions {
            margin: "4".parse().unwrap(),
            ..GuardOptions::on()
        };
        assert_eq!(check_margin(3.0, Task::Mt, &all), Some(Reason::Margin));
        assert_eq!(
            all.signature(&[Task::Asr, Task::Mt]),
            "asr:w0.1+m4+agreed+pick+dropped+spacing+base-lm,mt:w0.5+m4"
        );
        for none in [
            on.without_margin(),
            GuardOptions {
                enabled: false,
                ..on.clone()
            },
        ] {
            assert_eq!(check_margin(-5.0, Task::Asr, &none), None);
        }
        assert_eq!(
            on.signature(&[Task::Asr, Task::Ocr, Task::Mt]),
            "asr:w0.1+m4+agreed+pick+dropped+spacing+base-lm,ocr:c0.05+m1.5,mt:w0.5"
        );
        assert_eq!(
            on.without_margin().signature(&[Task::Asr]),
            "asr:w0.1+agreed+pick+dropped+spacing"
        );
        assert_eq!("off".parse::<Margin>(), Ok(Margin::Off));
        assert_eq!("-2".parse::<Margin>(), Ok(Margin::All(-2.0)));
        assert!("NaN".parse::<Margin>().is_err() && "x".parse::<Margin>().is_err());
        // NaN would keep every answer: no edit distance exceeds it.
        assert!(parse_max_edit("NaN").is_err() && parse_max_edit("-0.1").is_err());
        assert_eq!(parse_max_edit("0.1"), Ok(0.1));
    }

    #[test]
    fn an_asr_answer_may_not_just_drop_words_of_the_1_best() {
        let hyps = [
            "and so this is it".to_string(),
            "so this is it".to_string(),
            "and so this is the end".to_string(),
        ];
        let on = GuardOptions::on();
        let check = |p: &str, task: Task, o: &GuardOptions| {
            super::check(p, p, &hyps, task, Finish::Eos, &[], o)
        };
        // A lower hypothesis that leaves out the first word: back to the 1-best.
        assert!(only_drops_words("so this is it", &hyps[0]));
        assert_eq!(
            check("so this is it", Task::Asr, &on),
            Some(Reason::Dropped)
        );
        assert_eq!(Reason::Dropped.label(), "fallback:dropped");
        // Words left out anywhere, as words: casing and punctuation are not words.
        assert!(only_drops_words("And, this is.", "and so this is it"));
        // Not a deletion: the same words, a substitution, a substitution with a deletion, or
        // the words in another order.
        assert!(!only_drops_words("and so this is it", &hyps[0]));
        assert!(!only_drops_words("and so this was it", &hyps[0]));
        assert!(!only_drops_words("so this was it", &hyps[0]));
        assert!(!only_drops_words("this so is it", &hyps[0]));
        // No words dropped from none: an empty answer is the empty check's business.
        assert!(!only_drops_words("", ""));
        // ASR only, and only while kept.
        assert_eq!(check("so this is it", Task::Mt, &on), None);
        let free = GuardOptions {
            dropped: Dropped::Free,
            ..on.clone()
        };
        assert_eq!(check("so this is it", Task::Asr, &free), None);
        assert_eq!(
            on.signature(&[Task::Asr]),
            "asr:w0.1+m4+agreed+pick+dropped+spacing+base-lm"
        );
        assert_eq!(
            free.signature(&[Task::Asr]),
            "asr:w0.1+m4+agreed+pick+spacing+base-lm"
        );
    }

    #[test]
    fn an_asr_answer_may_not_just_join_or_split_words_of_the_1_best() {
        let hyps = [
            "every non zero space has a basis".to_string(),
            "every nonzero space has a basis".to_string(),
            "every non zero space has a bias".to_string(),
        ];
        let on = GuardOptions::on();
        let check = |p: &str, task: Task, o: &GuardOptions| {
            super::check(p, p, &hyps, task, Finish::Eos, &[], o)
        };
        // Two words joined into one, nothing else changed: back to the 1-best.
        assert!(only_moves_spaces(
            "every nonzero space has a basis",
            &hyps[0]
        ));
        assert_eq!(
            check("every nonzero space has a basis", Task::Asr, &on),
            Some(Reason::Spacing)
        );
        assert_eq!(Reason::Spacing.label(), "fallback:spacing");
        // A split is one too, and casing and punctuation around words do not count.
        assert!(only_moves_spaces(
            "Every non zero space, has a basis.",
            "every nonzero space has a basis"
        ));
        // Not a boundary change: the same words, a substitution, an apostrophe (a word of its
        // own to whisper-en), or a join with a substitution.
        assert!(!only_moves_spaces(
            "Every non zero space has a basis.",
            &hyps[0]
        ));
        assert!(!only_moves_spaces(
            "every non zero space has a bias",
            &hyps[0]
        ));
        assert!(!only_moves_spaces("it's here", "its here"));
        assert!(!only_moves_spaces(
            "every nonzero space has a bias",
            &hyps[0]
        ));
        // ASR only, and only while kept.
        assert_eq!(
            check("every nonzero space has a basis", Task::Mt, &on),
            None
        );
        let free = GuardOptions {
            spacing: Spacing::Free,
            ..on.clone()
        };
        assert_eq!(
            check("every nonzero space has a basis", Task::Asr, &free),
            None
        );
        assert_eq!(
            free.signature(&[Task::Asr]),
            "asr:w0.1+m4+agreed+pick+dropped+base-lm"
        );
    }

    #[test]
    fn the_base_model_must_prefer_an_asr_answer() {
        let on = GuardOptions::on();
        // Any preference keeps it; none (or an unscored NaN) sends it back.
        assert_eq!(check_base_lm(0.001, Task::Asr, &on), None);
        assert_eq!(check_base_lm(0.0, Task::Asr, &on), Some(Reason::BaseLm));
        assert_eq!(check_base_lm(-3.0, Task::Asr, &on), Some(Reason::BaseLm));
        assert_eq!(
            check_base_lm(f64::NAN, Task::Asr, &on),
            Some(Reason::BaseLm)
        );
        assert_eq!(Reason::BaseLm.label(), "fallback:base-lm");
        // ASR only; off with `--guard-base-lm off`, `--no-guard`, `--guard-margin off`, or
        // where nothing can be scored.
        assert_eq!(check_base_lm(-3.0, Task::Ocr, &on), None);
        let off = GuardOptions {
            base_lm: BaseLm::Off,
            ..on.clone()
        };
        let disabled = GuardOptions {
            enabled: false,
            ..on.clone()
        };
        let unscored = GuardOptions {
            margin: Margin::Off,
            ..on.clone()
        };
        for none in [&off, &disabled, &on.without_margin(), &unscored] {
            assert_eq!(check_base_lm(-3.0, Task::Asr, none), None);
        }
        // The default's signature is in the dropped-words test.
        let signed = off.signature(&[Task::Asr]);
        assert_eq!(signed, "asr:w0.1+m4+agreed+pick+dropped+spacing");
    }

    #[test]
    fn a_base_model_threshold_asks_for_that_much_preference() {
        let four = GuardOptions {
            base_lm: "4".parse().unwrap(),
            ..GuardOptions::on()
        };
        assert_eq!(check_base_lm(4.0, Task::Asr, &four), None);
        assert_eq!(check_base_lm(3.99, Task::Asr, &four), Some(Reason::BaseLm));
        assert_eq!(check_base_lm(-1.0, Task::Asr, &four), Some(Reason::BaseLm));
        assert_eq!(
            four.signature(&[Task::Asr]),
            "asr:w0.1+m4+agreed+pick+dropped+spacing+base-lm4"
        );
        // `on` is the default, 0 nats: any preference.
        let on: BaseLm = "on".parse().unwrap();
        assert_eq!(on, BaseLm::On(DEFAULT_BASE_LM));
        assert_eq!("off".parse::<BaseLm>(), Ok(BaseLm::Off));
        assert_eq!("2.5".parse::<BaseLm>(), Ok(BaseLm::On(2.5)));
        for bad in ["-1", "nan", "inf", "yes"] {
            assert!(bad.parse::<BaseLm>().is_err(), "{bad}");
        }
    }

    #[test]
    fn asr_answers_keep_what_every_hypothesis_agrees_on() {
        let h = hyps(&[
            "the cat sad on the mat",
            "the cat sat on the mat",
            "the cat sad on a mat",
        ]);
        // Where the hypotheses differ the answer may choose, in any casing and punctuation.
        assert!(!changes_agreed_words("The cat sat on a mat.", &h));
        assert!(!changes_agreed_words("the cat sad on the mat", &h));
        // Every hypothesis has "cat" and "on", and none adds a word after "mat".
        assert!(changes_agreed_words("the hat sat on the mat", &h));
        assert!(changes_agreed_words("the cat sat the mat", &h));
        assert!(changes_agreed_words("the cat sat on the mat today", &h));
        // A word added where a hypothesis adds one is not against the agreement.
        let added = hyps(&["we went home", "we went back home"]);
        assert!(!changes_agreed_words("we went right home", &added));
        assert!(changes_agreed_words("we all went home", &added));
        // A single hypothesis (or none) says nothing about agreement.
        assert!(!changes_agreed_words("a dog", &hyps(&["the cat"])));
        assert!(!changes_agreed_words("a dog", &[]));

        let on = GuardOptions::on();
        let check = |p: &str, task, opts: &GuardOptions| {
            super::check(p, p, &h, task, Finish::Eos, &[], opts)
        };
        let lax = GuardOptions {
            max_edit: Some(1.0),
            nbest: Nbest::Free,
            ..on.clone()
        };
        assert_eq!(
            check("the hat sat on the mat", Task::Asr, &lax),
            Some(Reason::Agreed)
        );
        // ASR only, and only while kept; `--guard-agreed free` and `--no-guard` let it through.
        assert_eq!(check("the hat sat on the mat", Task::Mt, &lax), None);
        let free = GuardOptions {
            agreed: Agreed::Free,
            ..lax.clone()
        };
        assert_eq!(check("the hat sat on the mat", Task::Asr, &free), None);
        assert_eq!(
            free.signature(&[Task::Asr]),
            "asr:w1+m4+dropped+spacing+base-lm"
        );
        // The agreement is checked before the pick: its reason is the one given.
        assert_eq!(
            check(
                "the hat sat on the mat",
                Task::Asr,
                &GuardOptions {
                    nbest: Nbest::Pick,
                    ..lax.clone()
                }
            ),
            Some(Reason::Agreed)
        );
        assert_eq!(
            lax.signature(&[Task::Asr, Task::Mt]),
            "asr:w1+m4+agreed+dropped+spacing+base-lm,mt:w1"
        );
        // The edit limit is checked first: its reason is the one given.
        assert_eq!(check("a dog ran off", Task::Asr, &on), Some(Reason::Edit));
    }

    #[test]
    fn undoing_word_edits_keeps_only_the_answers_formatting() {
        let best = "you know they will not take paper that is shiny";
        // Formatting only: nothing to undo.
        let formatted = "You know, they will not take paper that is shiny.";
        assert_eq!(undo_word_edits(formatted, best), formatted);
        // A substitution, an insertion and a deletion come back as the 1-best's words, in the
        // answer's casing and punctuation.
        assert_eq!(
            undo_word_edits("You know, they won't take the paper that's shiny!", best),
            "You know, they will not take paper that is shiny!"
        );
        assert_eq!(undo_word_edits("Shine.", "shiny"), "Shiny.");
        // Only ASR ignores formatting: OCR and the others are scored on the text as written.
        assert_eq!(margin_baseline(Task::Asr, formatted, best), formatted);
        assert_eq!(margin_baseline(Task::Ocr, formatted, best), best);
        assert_eq!(undo_word_edits("", "a b"), "a b");
        assert_eq!(undo_word_edits("a b", ""), "");
    }

    #[test]
    fn an_apostrophe_inside_a_word_is_part_of_it() {
        let best = "they aren't at the engineer's";
        // Dropping or adding one is a word edit: the margin scores it against the 1-best's
        // words, the pick refuses it and the agreement check sees it.
        assert_eq!(
            undo_word_edits("They arent at the engineers.", best),
            "They aren't at the engineer's."
        );
        assert!(!is_a_pick("they arent at the engineer's", &hyps(&[best])));
        assert!(changes_agreed_words(
            "they aren't at the engineers",
            &hyps(&[best, "they are at the engineer's"])
        ));
        // Quotes around a word and a typographic apostrophe are formatting.
        let formatted = "'They aren\u{2019}t' at the \"engineer's\"";
        assert_eq!(undo_word_edits(formatted, best), formatted);
        assert!(is_a_pick(formatted, &hyps(&[best])));
    }

    #[test]
    fn punctuation_inside_a_word_is_part_of_it_and_alone_is_formatting() {
        let best = "it will cost about 1.5 million for the well-known bridge";
        // A changed number or a joined compound is a word edit to every check.
        let edited = "It will cost about 15 million for the wellknown bridge.";
        assert_eq!(
            undo_word_edits(edited, best),
            "It will cost about 1.5 million for the well-known bridge."
        );
        assert!(!is_a_pick(edited, &hyps(&[best])));
        assert!(changes_agreed_words(edited, &hyps(&[best, best])));
        // A dash or an ampersand on its own is formatting: nothing to undo, and a real edit
        // beside one gets a clean baseline.
        let dashed = "It will cost – about 1.5 million for the well-known bridge.";
        assert_eq!(undo_word_edits(dashed, best), dashed);
        assert!(is_a_pick(dashed, &hyps(&[best])));
        assert_eq!(
            undo_word_edits("So I think — we should go", "so i think uh we should go"),
            "So I think uh — we should go"
        );
        assert_eq!(undo_word_edits("a c b", "a - b"), "a b");
        assert_eq!(undo_word_edits("– a b –", "a x b"), "– a x b –");
    }

    /// A mark on a letter (a Thai tone mark, a virama, a combining accent) is part of its word:
    /// dropping one at a word's end is a word edit, not formatting.
    #[test]
    fn a_mark_on_a_letter_is_part_of_its_word() {
        let best = "ไม่ใช่ un cafe\u{301}";
        assert!(!is_a_pick("ไม่ใช un cafe", &hyps(&[best])));
        assert!(is_a_pick("ไม่ใช่ un cafe\u{301}.", &hyps(&[best])));
        assert_eq!(
            undo_word_edits("ไม่ใช un cafe!", best),
            "ไม่ใช่ un cafe\u{301}!"
        );
        // A variation selector dresses a symbol: an emoji after a word is still formatting.
        let loved = "i love you";
        assert!(is_a_pick("I love you ❤\u{fe0f}!", &hyps(&[loved])));
        assert!(is_a_pick("i love you❤\u{fe0f}", &hyps(&[loved])));
    }

    #[test]
    fn asr_answers_must_be_one_of_their_hypotheses_when_picking() {
        let h = hyps(&[
            "the cat sad on the mat",
            "the cat sat on the mat",
            "the cat sat on the mat today",
            "a cat sat on mat",
        ]);
        // A hypothesis, in any casing and punctuation, is a pick; the 1-best too, and a
        // shorter one.
        assert!(is_a_pick("The cat sat on the mat.", &h));
        assert!(is_a_pick("the cat sad on the mat", &h));
        assert!(is_a_pick("A cat sat on mat.", &h));
        // A new word, or the hypotheses' words combined anew, is not; nor is a hypothesis
        // longer than the 1-best.
        assert!(!is_a_pick("the cat sat on a mat", &h));
        assert!(!is_a_pick(
            "the cat sat on the mat",
            &hyps(&["the cat sad on the mat"])
        ));
        assert!(!is_a_pick("the cat sat on the mat today", &h));
        assert!(!is_a_pick("a", &[]));

        let lax = GuardOptions {
            max_edit: Some(1.0),
            agreed: Agreed::Free,
            ..GuardOptions::on()
        };
        let check = |p: &str, task, opts: &GuardOptions| {
            super::check(p, p, &h, task, Finish::Eos, &[], opts)
        };
        assert_eq!(check("The cat sat on the mat!", Task::Asr, &lax), None);
        assert_eq!(
            check("the cat sat on a mat", Task::Asr, &lax),
            Some(Reason::Nbest)
        );
        assert_eq!(Reason::Nbest.name(), "nbest");
        // ASR only (MT's hypotheses come from different systems), and only while picking.
        assert_eq!(check("the cat sat on a mat", Task::Mt, &lax), None);
        let free = GuardOptions {
            nbest: Nbest::Free,
            ..lax.clone()
        };
        assert_eq!(check("the cat sat on a mat", Task::Asr, &free), None);
        assert_eq!(
            free.signature(&[Task::Asr]),
            "asr:w1+m4+dropped+spacing+base-lm"
        );
        assert_eq!(
            lax.signature(&[Task::Asr]),
            "asr:w1+m4+pick+dropped+spacing+base-lm"
        );
        let off = GuardOptions {
            enabled: false,
            ..lax
        };
        assert_eq!(check("the cat sat on a mat", Task::Asr, &off), None);
    }

    #[test]
    fn each_task_counts_in_its_own_unit_and_limit() {
        let on = GuardOptions {
            nbest: Nbest::Free,
            ..GuardOptions::on()
        };
        let h = hyps(&["the quick brown fox jumps over the lazy dog today"]);
        // One word of ten changed: within ASR's 0.1, and MT's 0.5.
        let one = "the quick brown fox jumped over the lazy dog today";
        assert_eq!(check(one, &h, Task::Asr, Finish::Eos, &[], &on), None);
        // Two words of ten: over ASR's limit, within MT's.
        let two = "the quick brown fox jumped over a lazy dog today";
        assert_eq!(
            check(two, &h, Task::Asr, Finish::Eos, &[], &on),
            Some(Reason::Edit)
        );
        assert_eq!(check(two, &h, Task::Mt, Finish::Eos, &[], &on), None);
        // OCR counts characters: two letters mended in 49 pass 0.05, a new word does not.
        let ocr = hyps(&["the quick brovvn fox jumps over the lazy dog today"]);
        assert_eq!(
            check(
                one.replace("jumped", "jumps").as_str(),
                &ocr,
                Task::Ocr,
                Finish::Eos,
                &[],
                &on
            ),
            None
        );
        assert_eq!(
            check(
                "the quick brown fox leaps over the lazy dog today",
                &ocr,
                Task::Ocr,
                Finish::Eos,
                &[],
                &on
            ),
            Some(Reason::Edit)
        );
        // --guard-max-edit sets one ratio for every task, in each task's unit.
        let loose = GuardOptions {
            max_edit: Some(0.3),
            ..on
        };
        assert_eq!(check(two, &h, Task::Asr, Finish::Eos, &[], &loose), None);
    }

    #[test]
    fn word_edit_distance() {
        assert_eq!(word_edits(&["a", "b", "c"], &["a", "c"]), 1);
        assert_eq!(word_edits(&[], &["a", "b"]), 2);
        assert_eq!(word_edits(&["x", "y"], &["y", "x"]), 2);
    }
}
