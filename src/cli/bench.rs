//! `neko bench`: how fast a model loads, reads a prompt (prefill) and writes (decode) on this
//! machine; one JSON record on stdout, like mistral.rs's `bench`.

use std::time::Instant;

use candle_core::{Tensor, D};
use clap::Args;
use serde::Serialize;

use super::{ModelArgs, EXIT_OK};
use crate::model::Logits;

/// Flags of `neko bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Prompt tokens per row (prefill).
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,

    /// Tokens generated per row, greedily and with the KV cache (decode).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,

    /// Rows decoded together.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,

    /// Timed repetitions; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// What `neko bench` reports.
#[derive(Debug, Serialize)]
pub struct BenchRecord {
    pub model: String,
    pub format: String,
    pub dtype: String,
    pub quant: Option<String>,
    pub threads: String,
    pub load_s: f64,
    pub batch: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// Prompt tokens per second over the whole batch.
    pub prefill_tok_s: f64,
    /// Generated tokens per second over the whole batch.
    pub decode_tok_s: f64,
    /// Peak resident memory of the process so far (Linux `VmHWM`), MiB.
    pub peak_rss_mib: Option<f64>,
}

/// Runs `neko bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<u8> {
    let start = Instant::now();
    let mut model = args.model.load()?;
    let load_s = start.elapsed().as_secs_f64();
    // A realistic prompt: English text, repeated to the length asked for.
    let text = "Below is the best-hypotheses transcribed from a speech recognition system. \
        Please try to revise it using the words which are only included into other-hypothesis. \
        the quick brown fox jumps over the lazy dog 1234 times, said the report on Tuesday. ";
    let unit = model
        .tokenizer
        .encode(text, false)
        .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?
        .get_ids()
        .to_vec();
    let prompt: Vec<u32> = unit
        .iter()
        .copied()
        .cycle()
        .take(args.prompt_tokens.max(1))
        .collect();
    let (b, n, m) = (args.batch.max(1), prompt.len(), args.new_tokens);
    let pads = vec![0usize; b];
    let device = model.decoder.device().clone();
    let input = Tensor::new(prompt.as_slice(), &device)?
        .unsqueeze(0)?
        .repeat((b, 1))?;
    let (mut best_prefill, mut best_decode) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..args.runs.max(1) {
        model.decoder.reset(n + m);
        let t = Instant::now();
        let mut logits = model.decoder.forward(&input, &pads, None, Logits::Last)?;
        logits.to_vec2::<f32>()?;
        best_prefill = best_prefill.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..m {
            let next = logits.argmax(D::Minus1)?.unsqueeze(1)?;
            logits = model.decoder.forward(&next, &pads, None, Logits::Last)?;
        }
        logits.to_vec2::<f32>()?;
        best_decode = best_decode.min(t.elapsed().as_secs_f64());
    }
    let record = BenchRecord {
        model: args.model.model.clone(),
        format: format!("{:?}", model.files.format).to_lowercase(),
        dtype: format!("{:?}", model.dtype).to_lowercase(),
        quant: args.model.quant.map(|q| format!("{q:?}").to_lowercase()),
        threads: std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        load_s,
        batch: b,
        prompt_tokens: n,
        new_tokens: m,
        prefill_tok_s: (b * n) as f64 / best_prefill,
        decode_tok_s: if m == 0 {
            0.0
        } else {
            (b * m) as f64 / best_decode
        },
        peak_rss_mib: peak_rss_mib(),
    };
    println!("{}", serde_json::to_string(&record)?);
    Ok(EXIT_OK)
}

/// `VmHWM` from `/proc/self/status`, in MiB (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
