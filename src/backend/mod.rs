//! Backends: where the answers are generated. neko renders every prompt, routes tasks, guards,
//! orders and scores; a [`Backend`] only continues prompts: prompt in, generated text and
//! finish reason out.
//!
//! Two implementations: [`local::InProcess`], the candle model inside this process (batched,
//! with the task prefix's KV cache reused), and [`openai::OpenAi`], an HTTP client for the
//! OpenAI-compatible completions API that vLLM, TGI, llama.cpp's server, llama-cpp-python and
//! mistral.rs serve, so a lab can run a large checkpoint on the engines it already has.

pub mod local;
pub mod openai;
pub mod render;

use crate::generate::Finish;
use crate::Task;

/// One prompt to continue, as neko rendered it.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The token ids the in-process model decodes (chat-wrapped, BOS added where the model
    /// asks for one).
    pub ids: Vec<u32>,
    /// The same prompt as text, before tokenisation: chat-wrapped, without a BOS token (a
    /// server's tokenizer adds that itself).
    pub text: String,
    /// Most answer tokens.
    pub max_new_tokens: usize,
    /// The words the answer may use (`--constrain`); only the in-process model can honour it.
    pub constraint: Option<std::sync::Arc<crate::constrain::WordConstraint>>,
}

/// What a backend generated for one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generated text, special tokens kept where the engine reports them, up to and
    /// possibly including a stop string (the corrector cuts it).
    pub text: String,
    pub finish: Finish,
    /// Tokens generated (as the engine counts them; 0 when it does not say).
    pub tokens: usize,
}

/// Continues prompts greedily.
pub trait Backend: Send {
    /// Continues each of `prompts` (all of one task) greedily; one result per prompt, in the
    /// order given. A prompt that fails (after retries, for a remote engine) gets an `Err`
    /// with a message for the record's error line; the others go on.
    fn generate(&mut self, task: Task, prompts: &[Prompt]) -> Vec<Result<Generation, String>>;

    /// What a run's signature says about where answers came from (`dtype:f32`,
    /// `backend:openai:neko|prompt_as:text`).
    fn signature(&self) -> String;

    /// How many records the caller should hand over at once to keep the backend busy.
    fn window(&self) -> usize;

    /// Why the backend stopped answering for good (a server gone), once it has: the prompts
    /// it then did not answer got [`crate::correct::STOPPED`], and the run should stop.
    fn failure(&self) -> Option<String> {
        None
    }

    /// Sends no new request once `flag` is set (Ctrl-C): the prompts not yet sent get
    /// [`crate::correct::STOPPED`], those in flight are answered. In process, the corrector
    /// itself stops between batches.
    fn stop_when(&mut self, _flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {}
}

/// Which backend `neko correct` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendKind {
    /// The candle model inside this process (`--model`'s weights).
    #[default]
    Local,
    /// An OpenAI-compatible completions server (`--endpoint`); `--model` supplies only the
    /// tokenizer and chat template.
    Openai,
}
