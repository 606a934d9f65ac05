//! neko: post-recognition error correction with a task-routed Mixture-of-Experts decoder.
//!
//! A recogniser (ASR, OCR, MT) hands over its N-best hypotheses; neko builds a task prompt
//! ([`prompt`]), runs a Mixtral-style decoder whose experts can be selected per task
//! ([`model`]), decodes greedily ([`generate`]) and writes corrected records ([`record`] in,
//! [`output`] out). [`eval`] scores the result. It follows NeKo (arXiv 2411.05945).

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
