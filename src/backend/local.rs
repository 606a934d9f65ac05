//! The in-process backend: a [`Corrector`]'s own candle model, decoding greedily in
//! token-budget batches sorted by prompt length, with each task's shared prompt prefix
//! computed once and its KV cache reused ([`crate::model::PrefixCache`]).

use super::{Backend, Generation, Prompt};
use crate::correct::{CorrectOptions, Corrector};
use crate::model::Model;
use crate::Task;

/// A corrector's own model, borrowed for one call.
pub struct InProcess<'c> {
    pub corrector: &'c mut Corrector,
    /// The expert forced into every token's top-k (`--routing task`), if any.
    pub forced: Option<usize>,
}

impl Backend for InProcess<'_> {
    fn generate(&mut self, task: Task, prompts: &[Prompt]) -> Vec<Result<Generation, String>> {
        self.corrector.generate_local(task, self.forced, prompts)
    }

    fn signature(&self) -> String {
        signature(&self.corrector.model)
    }

    fn window(&self) -> usize {
        window(&self.corrector.options)
    }
}

/// The signature part of in-process runs: the weights' dtype, their quantisation when
/// `--quant` gave one (it changes answers), what quantised products on x86 depend on, and the
/// end tokens only generation_config.json names (they end answers; the model's fingerprint
/// does not cover that file).
pub fn signature(model: &Model) -> String {
    let mut signature = format!("dtype:{}", format!("{:?}", model.dtype).to_lowercase());
    if let Some(q) = model.quant {
        signature += &format!("|quant:{}", format!("{q:?}").to_lowercase());
    }
    // On x86 a quantised product of many rows goes through gemm from a row count that grows
    // with the threads (`weights::gemm_from_rows`), and candle's kernels by the CPU's tier:
    // either can change answers (measured: 1 of 30 dev records with a Q4_1 GGUF, 1 thread
    // against 2).
    #[cfg(target_arch = "x86_64")]
    if model.quantised {
        let threads = rayon::current_num_threads();
        signature += &format!(
            "|threads:{threads}|kernels:{}",
            crate::model::x86_kernel_tier()
        );
    }
    if !model.generation_ends.is_empty() {
        // As a set: their order in the file changes nothing.
        let mut ends = model.generation_ends.clone();
        ends.sort_unstable();
        let ids: Vec<String> = ends.iter().map(u32::to_string).collect();
        signature += &format!("|ends:{}", ids.join(","));
    }
    signature
}

/// Records handed over at once: enough to fill several batches sorted by length.
pub fn window(options: &CorrectOptions) -> usize {
    options.batch_size.saturating_mul(8).max(1)
}
