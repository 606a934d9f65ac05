//! Output records: one JSON line per input record, in input order, scoreable by `neko eval`.

use serde::Serialize;
use serde_json::Value;

use crate::record::{Entry, Record, RecordError};

/// Where and why a record failed: enough to find it in the input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordFailure {
    pub file: String,
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// One output line. Field order is the order users read: id, task, prediction, best, output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputRecord {
    pub id: Value,
    pub task: Option<String>,
    /// The corrected text; the 1-best when the record failed and has one.
    pub prediction: Option<String>,
    /// The 1-best the correction started from.
    pub best: Option<String>,
    /// The reference, passed through so the file can be scored directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Present only when the record could not be corrected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordFailure>,
}

impl OutputRecord {
    /// A corrected record.
    pub fn corrected(record: &Record, task: &str, prediction: String) -> Self {
        OutputRecord {
            id: record.id.clone(),
            task: Some(task.to_string()),
            prediction: Some(prediction),
            best: record.best().map(str::to_string),
            output: record.reference.clone(),
            error: None,
        }
    }

    /// A record that failed after it was read: it keeps its 1-best as the prediction.
    pub fn failed(record: &Record, task: Option<&str>, failure: RecordFailure) -> Self {
        OutputRecord {
            id: record.id.clone(),
            task: task.map(str::to_string).or_else(|| record.task.clone()),
            prediction: record.best().map(str::to_string),
            best: record.best().map(str::to_string),
            output: record.reference.clone(),
            error: Some(failure),
        }
    }

    /// A record that could not be read at all.
    pub fn unreadable(entry: &Entry, file: &str, err: &RecordError) -> Self {
        OutputRecord {
            id: entry.id(),
            task: None,
            prediction: None,
            best: None,
            output: None,
            error: Some(RecordFailure {
                file: file.to_string(),
                line: entry.line,
                field: err.field.clone(),
                message: err.message.clone(),
            }),
        }
    }
}
