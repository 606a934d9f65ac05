//! Text normalisers for scoring, as named, versioned, composable stages.
//!
//! A normaliser is a pipeline of stages written `stage+stage+...`, each optionally pinned to a
//! version (`h2t@1`). Every stage is a pure function of its input, so a pipeline's name and
//! versions say exactly what was done to the text; the name goes into every score signature.
//! A stage's version changes whenever its output changes for some input.
//!
//! | stage | what it does |
//! |---|---|
//! | `none` | nothing |
//! | `lower` | Unicode lower-case (Python `str.lower`) |
//! | `punct` | delete apostrophes, turn other punctuation (P*) into spaces |
//! | `space` | squeeze whitespace to single spaces, trim |
//! | `basic` | `lower+punct+space` |
//! | `h2t` | lower-case, then delete `[^\w\s]` and digits (Hypo2Trans' WER scripts) |
//! | `whisper-en` | OpenAI Whisper's `EnglishTextNormalizer` |
//! | `whisper-basic` | OpenAI Whisper's `BasicTextNormalizer` |

pub mod basic;
pub mod pychar;
pub mod whisper;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Task;

/// Errors in a normaliser specification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// A stage name that does not exist.
    #[error("unknown normaliser stage `{0}` (known: {known})", known = Stage::names())]
    UnknownStage(String),
    /// A version this build does not implement.
    #[error("normaliser stage `{stage}` has no version {version} (this build has @{current})")]
    UnknownVersion {
        /// The stage asked for.
        stage: String,
        /// The version asked for.
        version: String,
        /// The version this build implements.
        current: u32,
    },
    /// An empty specification or an empty `+` segment.
    #[error("empty normaliser specification")]
    Empty,
}

/// One normalisation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Leaves text unchanged.
    None,
    /// Unicode lower-casing.
    Lower,
    /// Punctuation removal (apostrophes deleted, other punctuation to spaces).
    Punct,
    /// Whitespace squeezing.
    Space,
    /// `lower`, `punct`, `space`.
    Basic,
    /// Hypo2Trans: lower-case, delete `[^\w\s]` and digits.
    H2t,
    /// Whisper's English text normaliser.
    WhisperEn,
    /// Whisper's basic (language-independent) normaliser.
    WhisperBasic,
}

impl Stage {
    /// Every stage, in the order listed in help texts.
    pub const ALL: [Stage; 8] = [
        Stage::None,
        Stage::Basic,
        Stage::H2t,
        Stage::WhisperEn,
        Stage::WhisperBasic,
        Stage::Lower,
        Stage::Punct,
        Stage::Space,
    ];

    /// The stage's name in specifications.
    pub fn name(self) -> &'static str {
        match self {
            Stage::None => "none",
            Stage::Lower => "lower",
            Stage::Punct => "punct",
            Stage::Space => "space",
            Stage::Basic => "basic",
            Stage::H2t => "h2t",
            Stage::WhisperEn => "whisper-en",
            Stage::WhisperBasic => "whisper-basic",
        }
    }

    /// The version of the stage's behaviour in this build.
    pub fn version(self) -> u32 {
        1
    }

    fn names() -> String {
        Stage::ALL.map(Stage::name).join(", ")
    }

    /// Applies the stage.
    pub fn apply(self, s: &str) -> String {
        match self {
            Stage::None => s.to_string(),
            Stage::Lower => basic::lower(s),
            Stage::Punct => basic::strip_punctuation(s),
            Stage::Space => basic::squeeze_whitespace(s),
            Stage::Basic => basic::squeeze_whitespace(&basic::strip_punctuation(&basic::lower(s))),
            Stage::H2t => basic::h2t_strip(&basic::lower(s)),
            Stage::WhisperEn => whisper::english(s),
            Stage::WhisperBasic => whisper::basic(s),
        }
    }
}

impl FromStr for Stage {
    type Err = NormalizeError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (name, version) = match spec.trim().split_once('@') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (spec.trim(), None),
        };
        if name.is_empty() {
            return Err(NormalizeError::Empty);
        }
        let stage = Stage::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| NormalizeError::UnknownStage(name.to_string()))?;
        if let Some(v) = version {
            if v.parse::<u32>().ok() != Some(stage.version()) {
                return Err(NormalizeError::UnknownVersion {
                    stage: stage.name().to_string(),
                    version: v.to_string(),
                    current: stage.version(),
                });
            }
        }
        Ok(stage)
    }
}

/// A normalisation pipeline. Displays (and serialises) as its canonical specification, every
/// stage with its version: `whisper-en@1`, `lower@1+space@1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Normalizer {
    stages: Vec<Stage>,
}

impl Normalizer {
    /// A pipeline of the given stages.
    pub fn new(stages: Vec<Stage>) -> Self {
        Normalizer { stages }
    }

    /// The normaliser used for a task when none is asked for: Whisper's English normaliser for
    /// speech (what the Open ASR Leaderboard scores with), raw text for translation (sacrebleu
    /// tokenises itself), OCR (CER on raw text) and GEC (case and punctuation are the task).
    pub fn default_for(task: Task) -> Self {
        match task {
            Task::Asr => Normalizer::new(vec![Stage::WhisperEn]),
            Task::St | Task::Mt | Task::Ocr | Task::Gec => Normalizer::new(vec![Stage::None]),
        }
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Normalises a text.
    pub fn apply(&self, s: &str) -> String {
        match self.stages.as_slice() {
            [] | [Stage::None] => s.to_string(),
            [only] => only.apply(s),
            stages => stages.iter().fold(s.to_string(), |acc, st| st.apply(&acc)),
        }
    }
}

impl fmt::Display for Normalizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .stages
            .iter()
            .map(|s| format!("{}@{}", s.name(), s.version()))
            .collect();
        f.write_str(&parts.join("+"))
    }
}

impl FromStr for Normalizer {
    type Err = NormalizeError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let stages = spec
            .split('+')
            .map(str::parse)
            .collect::<Result<Vec<Stage>, _>>()?;
        Ok(Normalizer::new(stages))
    }
}

impl TryFrom<String> for Normalizer {
    type Error = NormalizeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Normalizer> for String {
    fn from(n: Normalizer) -> String {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_with_versions() {
        let n: Normalizer = "whisper-en+H2T@1".parse().unwrap();
        assert_eq!(n.to_string(), "whisper-en@1+h2t@1");
        assert_eq!(n.to_string().parse::<Normalizer>().unwrap(), n);
        assert!(matches!(
            "h2t@2".parse::<Normalizer>(),
            Err(NormalizeError::UnknownVersion { .. })
        ));
        assert!(matches!(
            "nope".parse::<Normalizer>(),
            Err(NormalizeError::UnknownStage(_))
        ));
        assert!(matches!(
            "basic+".parse::<Normalizer>(),
            Err(NormalizeError::Empty)
        ));
    }

    #[test]
    fn stages_compose_in_order() {
        let n: Normalizer = "lower+punct+space".parse().unwrap();
        assert_eq!(n.apply(" It's  A-OK! "), "its a ok");
        assert_eq!(
            n.apply(" It's  A-OK! "),
            Stage::Basic.apply(" It's  A-OK! ")
        );
    }
}
