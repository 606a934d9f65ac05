//! `neko eval --against BASE`: another system's output, record by record. The paired
//! bootstrap then compares each file with BASE (sacrebleu's `--paired-bs` between systems)
//! instead of with its own 1-best; both must hold the same records, in the same order, with
//! the same references, or the comparison would pair utterances that are not the same.

use std::collections::HashMap;

use super::{bootstrap::PairedBs, Input, RecordScore};

/// The base system's scored records, by their position in its file.
pub(super) struct Base<'a> {
    pub path: &'a str,
    by_index: HashMap<usize, &'a RecordScore>,
}

impl<'a> Base<'a> {
    pub fn new(path: &'a str, scores: &'a [RecordScore]) -> Self {
        Base {
            path,
            by_index: scores.iter().map(|s| (s.index, s)).collect(),
        }
    }

    /// The base's record at a position, when it was scored.
    pub fn record(&self, index: usize) -> Option<&'a RecordScore> {
        self.by_index.get(&index).copied()
    }
}

/// The paired bootstrap's settings, the approximate randomization's when asked for, and what
/// they compare with (`None`: the 1-best).
pub(super) struct Bootstrap<'a> {
    pub bs: PairedBs,
    pub ar: Option<super::randomization::PairedAr>,
    pub base: Option<&'a Base<'a>>,
}

/// Checks that `input` and `base` hold the same records: as many, with the same ids and, where
/// both were read, the same references and no two tasks. The error names the first record
/// that differs.
pub fn check_pairs(base: &Input, input: &Input) -> Result<(), String> {
    if base.entries.len() != input.entries.len() {
        return Err(format!(
            "{} has {} records and --against {} {}: the systems are compared record by record",
            input.path,
            input.entries.len(),
            base.path,
            base.entries.len()
        ));
    }
    // A line too broken to give its id stands for whichever record is at its place (it is
    // not scored, and said so); so does a record whose id is its position (a plain-text line,
    // a record without `id`): the two files are paired by position, which the count checks.
    let id_known = |x: &crate::record::Entry| match &x.record {
        Ok(r) => r.id_given,
        Err(e) => e.id.is_some(),
    };
    for (b, e) in base.entries.iter().zip(&input.entries) {
        let differs = match (&b.record, &e.record) {
            _ if id_known(b) && id_known(e) && b.id() != e.id() => {
                Some(format!("id {} in --against, {} here", b.id(), e.id()))
            }
            (Ok(br), Ok(er)) if br.references().is_empty() != er.references().is_empty() => {
                let (none, some) = match br.references().is_empty() {
                    true => ("in --against", "here"),
                    false => ("here", "in --against"),
                };
                Some(format!(
                    "no reference (`output`) {none}, one {some}: give both files theirs with --ref"
                ))
            }
            (Ok(br), Ok(er)) if br.references() != er.references() => {
                Some("other references (`output`) than in --against".to_string())
            }
            (Ok(br), Ok(er)) if task_of(br).zip(task_of(er)).is_some_and(|(b, e)| b != e) => {
                Some("another task than in --against".to_string())
            }
            _ => None,
        };
        if let Some(why) = differs {
            return Err(format!(
                "{} line {}: {why} (line {} of {}): the systems must score the same records \
                 against the same references",
                input.path, e.line, b.line, base.path
            ));
        }
    }
    Ok(())
}

fn task_of(record: &crate::record::Record) -> Option<crate::task::Task> {
    record.task.as_deref()?.parse().ok()
}

/// Gives the records of `base` and `input` that name no task the task of the record they pair
/// with (run after [`check_pairs`]), either way: a file without tasks (plain 1-best lines)
/// is scored as the system it is compared with, not as ASR, the default, which would
/// normalise MT text as speech and drop BLEU, and report a change between identical texts.
pub fn share_tasks(base: &mut Input, input: &mut Input) {
    for (b, e) in base.entries.iter_mut().zip(&mut input.entries) {
        if let (Ok(br), Ok(er)) = (&mut b.record, &mut e.record) {
            match (&br.task, &er.task) {
                (None, Some(_)) => br.task.clone_from(&er.task),
                (Some(_), None) => er.task.clone_from(&br.task),
                _ => {}
            }
        }
    }
}
