//! neko: post-recognition error correction with a task-routed Mixture-of-Experts decoder.
//!
//! A recogniser (ASR, OCR, MT) hands over its N-best hypotheses; neko builds a task prompt
//! ([`prompt`]), runs a Mixtral-style decoder whose experts can be selected per task
//! ([`model`]), decodes greedily ([`generate`]) and writes corrected records ([`record`] in,
//! [`output`] out). [`eval`] scores the result. It follows NeKo (arXiv 2411.05945).

/// `crate::say!` that cannot panic: a diagnostic for a stderr nobody reads any more
/// (`neko ... 2>&1 | head` after head ended) is dropped, and the run goes on to its exit code
/// (`crate::say!` would panic there, exit 101, mid-run).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod backend;
pub mod cli;
pub mod constrain;
pub mod convert;
pub mod correct;
pub mod eval;
pub mod generate;
pub mod guard;
pub mod metrics;
pub mod model;
pub mod normalize;
pub mod output;
pub mod prompt;
pub mod record;
pub mod shard;
pub mod style;
pub mod task;
pub mod train;
pub mod upcycle;

pub use task::Task;
