//! References from a file of their own (`neko eval --ref FILE`), in the three shapes speech
//! and MT scoring tools take: one reference per line, line k for the k-th record of every
//! scored file (jiwer, sacrebleu); sclite's `trn`, `text (ID)`; Kaldi's `text`, `ID text`. The
//! last two pair by utterance id, so records in another order, or a shard, still meet theirs.
//! Several files (`--ref a --ref b`, as sacrebleu's `-r a b`) give each record several
//! references, the first file's first.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use super::Input;
use crate::record::trn;

/// The lines of `path` (a blank line is an empty reference; a last line break ends the last one
/// rather than starting another). Read as text whatever it looks like: a reference that
/// happens to be `null` or `"quoted"` is that text. A byte-order mark is
/// [`crate::record::read_text`]'s to skip. Trailing whitespace is cut, as sacrebleu's command
/// line cuts its reference lines (only `--chrf-whitespace` would see it).
pub fn read(path: &Path) -> std::io::Result<Vec<String>> {
    let text = crate::record::read_text(path)?;
    let line = |l: &str| crate::normalize::pychar::rstrip(l).to_string();
    Ok(text.lines().map(line).collect())
}

/// What a reference file does to the records' references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replaces them (the first `--ref`).
    Replace,
    /// Adds to them (each further `--ref`).
    Add,
}

/// How the references met their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// Line k, record k.
    Position,
    /// sclite `trn`: every line ends with `(ID)`.
    Trn,
    /// Kaldi `text`: every line starts with a record's id.
    Kaldi,
    /// sclite `trn` for records that have no ids: line k's text, record k.
    TrnInOrder,
    /// M2: sentence k, record k; the sentence's source is the record's 1-best.
    M2,
}

impl Pairing {
    pub fn describe(self) -> &'static str {
        match self {
            Pairing::Position => "one per line, paired by position",
            Pairing::Trn => "sclite trn, paired by the utterance id at each line's end",
            Pairing::Kaldi => "Kaldi text, paired by the utterance id at each line's start",
            Pairing::TrnInOrder => {
                "sclite trn, paired by position (the records have no ids), its ids set aside"
            }
            Pairing::M2 => {
                "M2, sentence k for record k: its annotators' corrections the references, the \
                 sentence the source (a record without a prediction is one)"
            }
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub pairing: Pairing,
    /// Records whose own reference (`output`) was replaced with another text.
    pub replaced: usize,
    /// The inputs read as Kaldi `text`: each line's first word taken as its utterance id.
    pub kaldi_inputs: Vec<String>,
    /// Paired by position although every reference line opens with a word that looks like
    /// an utterance id (Kaldi `text` against records without ids): those words are scored.
    pub ids_scored: bool,
}

/// Gives every record of every input its reference from `lines`: by id when the file is
/// `trn`, or Kaldi `text` whose first words are the records' ids (hypotheses in Kaldi `text`
/// first get their first words as ids: [`ids_from_first_words`]); else by position. A record
/// without a reference, or a reference without a record, is an error (scoring anyway would
/// leave utterances out, or by position score every record after a gap against another's).
pub fn apply(
    inputs: &mut [Input],
    lines: &[String],
    name: &str,
    mode: Mode,
) -> Result<Applied, String> {
    let filled = lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty());
    if crate::record::m2::is_m2(filled) {
        return by_m2_sentence(inputs, lines, name, mode);
    }
    let ids = utterance_ids(lines);
    let kaldi_inputs = ids_from_first_words(inputs, &ids);
    let (pairing, by_id) = match by_id(inputs, lines) {
        // Records without ids meet a trn by position, unless its utterance ids are their
        // positions (`(0)`, `(1)`, ...: a record's id is its position), sorted or not.
        Some((Pairing::Trn, refs))
            if inputs.iter().all(numbered_only) && !every_id_in(inputs, &refs) =>
        {
            let texts: Vec<String> = (lines.iter())
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    trn::split_line(l)
                        .map_or(l.trim(), |(text, _)| text)
                        .to_string()
                })
                .collect();
            let applied = by_position(inputs, &texts, name, mode)?;
            return Ok(Applied {
                pairing: Pairing::TrnInOrder,
                ..applied
            });
        }
        Some((pairing, refs)) => (pairing, refs),
        None => {
            return Ok(Applied {
                ids_scored: !ids.is_empty(),
                ..by_position(inputs, lines, name, mode)?
            });
        }
    };
    let mut replaced = 0;
    for input in inputs.iter_mut() {
        check_coverage(input, &by_id, name, pairing)?;
        for entry in &mut input.entries {
            let Ok(record) = &mut entry.record else {
                continue;
            };
            let reference = id_text(&record.id).and_then(|id| by_id.get(&id));
            let reference = reference.expect("coverage checked");
            replaced += usize::from(give(record, std::slice::from_ref(reference), mode));
        }
    }
    Ok(Applied {
        pairing,
        replaced,
        kaldi_inputs,
        ids_scored: false,
    })
}

fn by_position(
    inputs: &mut [Input],
    refs: &[String],
    name: &str,
    mode: Mode,
) -> Result<Applied, String> {
    if let Some(input) = inputs.iter().find(|i| i.entries.len() != refs.len()) {
        return Err(format!(
            "{} has {} records and --ref {name} {} lines: they are paired by position",
            input.path,
            input.entries.len(),
            refs.len()
        ));
    }
    let mut replaced = 0;
    for input in inputs.iter_mut() {
        for (entry, reference) in input.entries.iter_mut().zip(refs) {
            if let Ok(record) = &mut entry.record {
                replaced += usize::from(give(record, std::slice::from_ref(reference), mode));
            }
        }
    }
    Ok(Applied {
        pairing: Pairing::Position,
        replaced,
        kaldi_inputs: Vec::new(),
        ids_scored: false,
    })
}

/// References from an M2 file (the GEC corpora's gold standard), sentence k for record k: the
/// sentence with each annotator's edits is a reference, and its source the source that GLEU
/// and the edits are counted from. A record without a prediction (a system's output as plain
/// lines) is that sentence's correction: its text becomes the prediction, the source its 1-best.
fn by_m2_sentence(
    inputs: &mut [Input],
    lines: &[String],
    name: &str,
    mode: Mode,
) -> Result<Applied, String> {
    let mut sentences = Vec::new();
    for entry in crate::record::parse(lines.join("\n").as_bytes()) {
        match entry.record {
            Ok(r) => {
                let references: Vec<String> =
                    r.references().iter().map(|t| t.to_string()).collect();
                sentences.push((r.hypotheses[0].clone(), references));
            }
            Err(e) => return Err(format!("--ref {name} line {}: {e}", entry.line)),
        }
    }
    let mut replaced = 0;
    for input in inputs.iter_mut() {
        if input.entries.len() != sentences.len() {
            return Err(format!(
                "{} has {} records and --ref {name} {} sentences: they are paired by position",
                input.path,
                input.entries.len(),
                sentences.len()
            ));
        }
        check_m2_sources(input, &sentences, name)?;
        refuse_m2_system(input, name)?;
        for (entry, (source, references)) in input.entries.iter_mut().zip(&sentences) {
            let Ok(record) = &mut entry.record else {
                continue;
            };
            if record.prediction.is_none() {
                record.prediction = record.hypotheses.first().cloned();
                record.hypotheses = vec![source.clone()];
            }
            // M2 is GEC's format: a record that names no task is GEC's.
            record.task.get_or_insert_with(|| "gec".to_string());
            replaced += usize::from(give(record, references, mode));
        }
    }
    Ok(Applied {
        pairing: Pairing::M2,
        replaced,
        kaldi_inputs: Vec::new(),
        ids_scored: false,
    })
}

/// The utterance ids of a reference file: a `trn` file's, or the first words of Kaldi `text`
/// when every non-blank line's is numbered and no two are alike; else none.
fn utterance_ids(lines: &[String]) -> HashSet<&str> {
    let filled = || lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty());
    if trn::is_trn(filled()) {
        return filled()
            .filter_map(trn::split_line)
            .map(|(_, id)| id)
            .collect();
    }
    let mut ids = HashSet::new();
    let all = filled().all(|l| {
        let first = l.split_whitespace().next().unwrap_or_default();
        numbered_word(first) && ids.insert(first)
    });
    if all {
        ids
    } else {
        HashSet::new()
    }
}

/// Kaldi `text` as hypotheses (`ID words`: neko reads it as plain text, the id a first word):
/// in an input whose records gave no ids, when every record's one hypothesis (and prediction)
/// opens with a numbered word, no two alike, that is an utterance id of the reference file,
/// those words become the records' ids instead of words to score. The reference file's ids
/// are the evidence: a transcript's first words are not all of them. The inputs so read.
fn ids_from_first_words(inputs: &mut [Input], ids: &HashSet<&str>) -> Vec<String> {
    let mut read = Vec::new();
    for input in inputs.iter_mut().filter(|i| numbered_only(i)) {
        let mut seen = HashSet::new();
        let records = || (input.entries.iter()).filter_map(|e| e.record.as_ref().ok());
        let all = records().all(|r| leading_id(r, ids).is_some_and(|id| seen.insert(id)));
        if !all || seen.is_empty() {
            continue;
        }
        for record in (input.entries.iter_mut()).filter_map(|e| e.record.as_mut().ok()) {
            let id = leading_id(record, ids).expect("checked").to_string();
            record.hypotheses[0] = after_word(&record.hypotheses[0], &id);
            record.prediction = (record.prediction.as_deref()).map(|p| after_word(p, &id));
            record.id = Value::String(id);
        }
        read.push(input.path.clone());
    }
    read
}

/// The utterance id a Kaldi `text` line opens with, when `record` is one: one hypothesis whose
/// first word (the prediction's too, when it has one) is numbered and one of `ids`.
fn leading_id<'a>(record: &'a crate::record::Record, ids: &HashSet<&str>) -> Option<&'a str> {
    let [best] = record.hypotheses.as_slice() else {
        return None;
    };
    let id = best.split_whitespace().next()?;
    let first = |p: &str| p.split_whitespace().next() == Some(id);
    let agrees = record.prediction.as_deref().is_none_or(first);
    (numbered_word(id) && ids.contains(id) && agrees).then_some(id)
}

/// `text` without its first word, `word`.
fn after_word(text: &str, word: &str) -> String {
    text.trim_start()[word.len()..].trim_start().to_string()
}

/// Whether a word could be an utterance id: it has a digit (ids are numbered).
fn numbered_word(word: &str) -> bool {
    word.bytes().any(|b| b.is_ascii_digit())
}

/// The references by id, when the lines are `trn`, or Kaldi `text` whose first words (no two
/// alike) hold every record's given id. Records numbered by position alone have no id to
/// pair: a file of digit strings (`0 1 2`, `1 5 7`) must not pair its first digits with them.
fn by_id(inputs: &[Input], lines: &[String]) -> Option<(Pairing, HashMap<String, String>)> {
    let filled = || lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty());
    if trn::is_trn(filled()) {
        let split = filled().filter_map(trn::split_line);
        return Some((
            Pairing::Trn,
            split.map(|(t, id)| (id.into(), t.into())).collect(),
        ));
    }
    let mut refs = HashMap::new();
    for line in filled() {
        let (id, text) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        refs.insert(id.to_string(), text.trim().to_string())
            .is_none()
            .then_some(())?;
    }
    let ids: Vec<Option<String>> = (inputs.iter())
        .flat_map(|i| &i.entries)
        .filter_map(|e| e.record.as_ref().ok().map(|r| (e.index, r)))
        .map(|(index, r)| (!numbered(r, index)).then(|| id_text(&r.id)).flatten())
        .collect();
    // Records that all carry ids of their own, half of them REF's first words: pairing is by
    // id, and a record whose id REF lacks is an error (a typo in one id paired the whole file
    // by position, each record scored against another's reference).
    let given: Vec<&String> = ids.iter().flatten().collect();
    let found = given
        .iter()
        .filter(|id| refs.contains_key(id.as_str()))
        .count();
    let by_id = !ids.is_empty() && given.len() == ids.len() && 2 * found >= given.len();
    by_id.then_some((Pairing::Kaldi, refs))
}

/// A system's corrections as M2 (what `errant_compare -hyp` reads) are no predictions: each
/// record's edits would be replaced by the gold ones and its source scored as the output.
/// Records with corrections of their own and no prediction, a 1-best that differs from every
/// correction, are refused when most are such.
fn refuse_m2_system(input: &Input, name: &str) -> Result<(), String> {
    let readable: Vec<_> = (input.entries.iter())
        .filter_map(|e| e.record.as_ref().ok())
        .collect();
    let corrected = (readable.iter())
        .filter(|r| r.prediction.is_none())
        .filter(|r| (r.references().iter()).any(|c| Some(*c) != r.best()))
        .count();
    if corrected == 0 || 2 * corrected <= readable.len() {
        return Ok(());
    }
    Err(format!(
        "{}: {corrected} of {} records have corrections of their own and no prediction (an M2 file of a system's edits?): --ref {name} would replace them with the gold ones and score the source as the output; give the system's corrected sentences one per line (or records with `prediction`), or score the file without --ref",
        input.path,
        readable.len()
    ))
}

/// Records with predictions keep their own 1-best as the source; it must be their M2 sentence
/// (spaces aside: M2 is tokenised), or position pairing met another corpus or order. Most
/// differing is an error; some, a warning naming the first.
fn check_m2_sources(
    input: &Input,
    sentences: &[(String, Vec<String>)],
    name: &str,
) -> Result<(), String> {
    let squeezed = |t: &str| t.split_whitespace().collect::<String>();
    let spaced = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    let with_prediction = || {
        (input.entries.iter().zip(sentences)).filter_map(|(e, (source, _))| {
            let r = e.record.as_ref().ok()?;
            let best = r.hypotheses.first()?;
            r.prediction.is_some().then_some((e.line, best, source))
        })
    };
    let differing: Vec<usize> = with_prediction()
        .filter(|(_, best, source)| squeezed(best) != squeezed(source))
        .map(|(line, _, _)| line)
        .collect();
    // The same sentence tokenised otherwise (`school.` for `school .`): GLEU and the edits
    // would count every such spacing as an edit the prediction made or missed.
    let respaced: Vec<usize> = with_prediction()
        .filter(|(_, best, source)| {
            squeezed(best) == squeezed(source) && spaced(best) != spaced(source)
        })
        .map(|(line, _, _)| line)
        .collect();
    if let Some(first) = respaced.first() {
        crate::say!(
            "neko: warning: {} of {} records of {} have a 1-best that is their sentence of --ref {name} tokenised otherwise (the first at line {first}): GLEU and the edits count each such spacing as an edit, so their GEC scores mean little; give predictions and 1-bests tokenised as the M2 is (its `S` lines as the input)",
            respaced.len(),
            input.entries.len(),
            input.path
        );
    }
    let Some(first) = differing.first() else {
        return Ok(());
    };
    let said = format!(
        "{} of {} records of {} have a 1-best that is not their sentence of --ref {name} (the first at line {first})",
        differing.len(),
        input.entries.len(),
        input.path
    );
    if 2 * differing.len() > input.entries.len() {
        return Err(format!(
            "{said}: records pair with M2 sentences by position, and these are another corpus or order"
        ));
    }
    crate::say!("neko: warning: {said}; their own 1-best is their source");
    Ok(())
}

/// Whether every readable record's id (its position, where it gave none) is a key of `refs`.
fn every_id_in(inputs: &[Input], refs: &HashMap<String, String>) -> bool {
    let mut records =
        (inputs.iter().flat_map(|i| &i.entries)).filter_map(|e| e.record.as_ref().ok());
    records.all(|r| id_text(&r.id).is_some_and(|id| refs.contains_key(&id)))
}

/// Whether no readable record of `input` gave an id (each is numbered by its position).
fn numbered_only(input: &Input) -> bool {
    (input.entries.iter()).all(|e| e.record.as_ref().ok().is_none_or(|r| numbered(r, e.index)))
}

/// Every readable record of `input` has a reference, and every reference a record (one that
/// could not be read counts when it gave its id).
fn check_coverage(
    input: &Input,
    refs: &HashMap<String, String>,
    name: &str,
    pairing: Pairing,
) -> Result<(), String> {
    let mut seen = HashSet::new();
    for entry in &input.entries {
        let id = match &entry.record {
            // A position is an id only where a trn names it (`(0)`, `(1)`, ...).
            Ok(record) if numbered(record, entry.index) => {
                (id_text(&record.id)).filter(|id| pairing == Pairing::Trn && refs.contains_key(id))
            }
            Ok(record) => id_text(&record.id),
            Err(error) => error.id.as_deref().and_then(id_text),
        };
        match id {
            Some(id) if refs.contains_key(&id) => {
                seen.insert(id);
            }
            _ if entry.record.is_err() => {}
            Some(id) => {
                return Err(format!(
                    "{} line {}: id \"{id}\" has no reference in --ref {name} ({})",
                    input.path,
                    entry.line,
                    pairing.describe()
                ))
            }
            None => {
                return Err(format!(
                    "{} line {}: the record has no `id` to pair with --ref {name} ({}): give \
                     the records ids, or the references one per line in the records' order",
                    input.path,
                    entry.line,
                    pairing.describe()
                ))
            }
        }
    }
    let mut missing: Vec<&String> = refs.keys().filter(|id| !seen.contains(*id)).collect();
    missing.sort();
    match missing.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "--ref {name} has {} reference(s) that no record of {} has (the first by id: \
             \"{first}\"): every utterance must be scored, or the rates leave some out",
            missing.len(),
            input.path
        )),
    }
}

/// Gives `record` its references (replacing its own, or after those it has); whether it had
/// other references of its own that they replaced.
fn give(record: &mut crate::record::Record, references: &[String], mode: Mode) -> bool {
    let (first, rest) = references.split_first().expect("a reference");
    match (mode, record.reference.is_some()) {
        (Mode::Add, true) => {
            record.other_references.extend_from_slice(references);
            false
        }
        _ => {
            let own = record.references();
            let differs = !own.is_empty() && !own.iter().eq(references);
            record.reference = Some(first.clone());
            record.other_references = rest.to_vec();
            differs
        }
    }
}

/// Whether a record's id is only its position (what a record without an `id` gets).
fn numbered(record: &crate::record::Record, index: usize) -> bool {
    record.id == index
}

/// An id as the reference file writes it: a string as is, a number in decimal.
fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
