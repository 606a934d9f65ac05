//! The tasks neko corrects, and their names on the command line and in records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A post-recognition correction task. Each task has its own prompt and, in a task-routed
/// model, its own expert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Speech recognition N-best (Whisper, Canary, ...).
    Asr,
    /// Speech translation.
    St,
    /// Machine translation.
    Mt,
    /// Optical character recognition.
    Ocr,
    /// Grammatical / textual error correction (the paper's TEC, also its name here).
    #[serde(alias = "tec")]
    Gec,
}

impl Task {
    /// Every task, in the order used for tables and defaults.
    pub const ALL: [Task; 5] = [Task::Asr, Task::St, Task::Mt, Task::Ocr, Task::Gec];

    /// The lower-case name used in flags, records, configs and prompt file names.
    pub fn name(self) -> &'static str {
        match self {
            Task::Asr => "asr",
            Task::St => "st",
            Task::Mt => "mt",
            Task::Ocr => "ocr",
            Task::Gec => "gec",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a task name that neko does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task `{0}` (expected one of: asr, st, mt, ocr, gec)")]
pub struct UnknownTask(pub String);

impl FromStr for Task {
    type Err = UnknownTask;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // "tec" is the paper's name for grammar correction; accept it as an alias.
        match s.trim().to_ascii_lowercase().as_str() {
            "asr" => Ok(Task::Asr),
            "st" => Ok(Task::St),
            "mt" => Ok(Task::Mt),
            "ocr" => Ok(Task::Ocr),
            "gec" | "tec" => Ok(Task::Gec),
            _ => Err(UnknownTask(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_alias() {
        for t in Task::ALL {
            assert_eq!(t.name().parse::<Task>().unwrap(), t);
        }
        assert_eq!("TEC".parse::<Task>().unwrap(), Task::Gec);
        assert!("speech".parse::<Task>().is_err());
    }
}
