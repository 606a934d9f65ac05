//! `neko bench`: how fast a model loads, reads a prompt (prefill) and writes (decode) on this
//! machine; one JSON record on stdout, like mistral.rs's `bench`.
//!
//! With `--data FILE` it runs the real correction path (prompts, prefix reuse, token-budget
//! batching, greedy decoding, answer extraction) over the file's first `--limit` records and
//! reports records/s; without, a synthetic prompt of `--prompt-tokens` tokens.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use candle_core::{Tensor, D};
use clap::Args;
use serde::Serialize;

use super::correct::DecodeArgs;
use super::{ModelArgs, EXIT_OK};
use crate::correct::Corrector;
use crate::model::Logits;
use crate::record::{self, Record};
use crate::Task;

/// Flags of `neko bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Prompt tokens per row (prefill). Not with --data.
    #[arg(long, default_value_t = 128, conflicts_with = "data", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub prompt_tokens: usize,

    /// Tokens generated per row, greedily and with the KV cache (decode). Not with --data
    /// (there, --max-new-tokens).
    #[arg(long, default_value_t = 64, conflicts_with = "data")]
    pub new_tokens: usize,

    /// Rows decoded together. Not with --data (there, --batch-size and --max-batch-tokens).
    #[arg(long, default_value_t = 1, conflicts_with = "data", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch: usize,

    /// Timed repetitions; the best is reported. Not with --data (timed once).
    #[arg(long, default_value_t = 3, conflicts_with = "data", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub runs: usize,

    /// Correct the records of FILE (any input format of `neko correct`) instead of timing a
    /// synthetic prompt; the decoding flags of `neko correct` apply. Without it, of those
    /// flags only --routing does (greedy decoding of --new-tokens, no prompt, no guard).
    #[arg(long)]
    pub data: Option<PathBuf>,

    /// With --data: only the first N readable records.
    #[arg(long, requires = "data", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub limit: Option<usize>,

    /// With --data: the task of records without a `task` field. Without: the task whose
    /// expert `--routing task` forces.
    #[arg(long, default_value = "asr")]
    pub task: Task,

    /// With --data: write each record's `id` and `prediction` (JSONL) to FILE, whole once the
    /// run is done.
    #[arg(long, requires = "data")]
    pub predictions: Option<PathBuf>,

    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// What `neko bench --data` reports.
#[derive(Debug, Serialize)]
pub struct DataBenchRecord {
    pub model: String,
    /// The model's content (weights, adapter, tokenizer) and every decoding setting, as
    /// `neko correct` signs its output: routing, guard, answer bound, style, prompt.
    pub signature: String,
    pub format: String,
    pub dtype: String,
    pub quant: Option<String>,
    /// Where the model ran (`cpu`, `cuda:0`, `metal:0`); `cpu`, `cores` and `threads` describe
    /// the host whatever it is.
    pub device: String,
    pub cpu: Option<String>,
    pub cores: usize,
    /// The CPU's SIMD extensions that decide which kernels run ([`cpu_features`]).
    pub cpu_features: Vec<&'static str>,
    /// Environment variables that make candle choose other kernels ([`kernel_env`]).
    pub kernel_env: Vec<&'static str>,
    /// CPU threads the run used (rayon's pool).
    pub threads: usize,
    pub neko: &'static str,
    pub load_s: f64,
    pub data: String,
    /// Records corrected or failed (`failed` of them), the time of both in the totals.
    pub records: usize,
    pub failed: usize,
    /// Records left out: unreadable, or of an unknown task.
    pub skipped: usize,
    pub batch_size: usize,
    pub max_batch_tokens: usize,
    pub prefix_reuse: bool,
    /// Which records decoded only their hypotheses' words (`--constrain`: `asr` by default).
    pub constrain: String,
    /// Wall time of the correction (prompts, decoding, answers), model load excluded.
    pub seconds: f64,
    pub records_s: f64,
    /// Prompt tokens computed (shared prefixes once, then row suffixes) per prefill second.
    pub prefill_tok_s: f64,
    /// Prompt tokens per record on average (shared prefix included).
    pub prompt_tokens_per_record: f64,
    /// Generated tokens per decode second.
    pub decode_tok_s: f64,
    pub stats: crate::generate::DecodeStats,
    /// KV cache of the largest batch the token budget allows, MiB.
    pub kv_cache_budget_mib: f64,
    pub peak_rss_mib: Option<f64>,
}

/// What `neko bench` reports.
#[derive(Debug, Serialize)]
pub struct BenchRecord {
    pub model: String,
    /// `--adapter`'s file, whose tensors replaced the model's.
    pub adapter: Option<String>,
    pub format: String,
    pub dtype: String,
    pub quant: Option<String>,
    /// Where the model ran (`cpu`, `cuda:0`, `metal:0`); `cpu`, `cores` and `cpu_features`
    /// describe the host whatever it is, so that numbers from two machines can be told apart.
    pub device: String,
    pub cpu: Option<String>,
    pub cores: usize,
    /// The CPU's SIMD extensions that decide which kernels run ([`cpu_features`]).
    pub cpu_features: Vec<&'static str>,
    /// Environment variables that make candle choose other kernels ([`kernel_env`]).
    pub kernel_env: Vec<&'static str>,
    /// CPU threads the run used (rayon's pool).
    pub threads: usize,
    pub neko: &'static str,
    pub load_s: f64,
    /// `learned`, or `task:EXPERT` (`--routing task`: the expert forced into every top-k).
    pub routing: String,
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
    if args.data.is_some() {
        return run_data(args);
    }
    super::correct::warn_unused(
        &args.decode.flags_set_but_routing(),
        "without --data (a synthetic prompt, greedy decoding of --new-tokens, no guard)",
    );
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
    let context = model.config.max_position_embeddings;
    if n + m > context {
        anyhow::bail!(
            "--prompt-tokens {n} + --new-tokens {m} is more than the model's {context} positions (max_position_embeddings)"
        );
    }
    // `--routing task` times the forced-expert path, with --task's expert.
    let forced = crate::correct::forced_expert(&model.config, args.decode.routing, args.task)
        .map_err(anyhow::Error::msg)?;
    let pads = vec![0usize; b];
    let device = model.decoder.device().clone();
    let input = Tensor::new(prompt.as_slice(), &device)?
        .unsqueeze(0)?
        .repeat((b, 1))?;
    let (mut best_prefill, mut best_decode) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..args.runs.max(1) {
        model.decoder.reset(n + m);
        let t = Instant::now();
        let mut logits = model.decoder.forward(&input, &pads, forced, Logits::Last)?;
        logits.to_vec2::<f32>()?;
        best_prefill = best_prefill.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..m {
            let next = logits.argmax(D::Minus1)?.unsqueeze(1)?;
            logits = model.decoder.forward(&next, &pads, forced, Logits::Last)?;
        }
        logits.to_vec2::<f32>()?;
        best_decode = best_decode.min(t.elapsed().as_secs_f64());
    }
    let record = BenchRecord {
        model: args.model.spec()?,
        adapter: args.model.adapter.as_ref().map(|a| a.display().to_string()),
        format: format!("{:?}", model.files.format).to_lowercase(),
        dtype: format!("{:?}", model.dtype).to_lowercase(),
        quant: args.model.quant.map(|q| format!("{q:?}").to_lowercase()),
        device: device_name(&device),
        cpu: cpu_model(),
        cores: cores(),
        cpu_features: cpu_features(),
        kernel_env: kernel_env(),
        threads: rayon::current_num_threads(),
        neko: env!("CARGO_PKG_VERSION"),
        load_s,
        routing: forced.map_or("learned".to_string(), |e| format!("task:{e}")),
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
    super::emit(&(serde_json::to_string(&record)? + "\n"))?;
    Ok(EXIT_OK)
}

/// `neko bench --data`: the correction path over real records.
fn run_data(args: &BenchArgs) -> anyhow::Result<u8> {
    let path = args.data.as_ref().expect("--data");
    let bytes = record::read_input(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    // Records that cannot be corrected (unreadable, an unknown task) are left out and counted,
    // as `neko correct` would give them error lines without decoding.
    let mut skipped = Vec::new();
    let mut records: Vec<(Record, Task)> = Vec::new();
    for e in record::parse(&bytes) {
        if records.len() >= args.limit.unwrap_or(usize::MAX) {
            break;
        }
        let line = e.line;
        let read = e.record.map_err(|err| err.to_string()).and_then(|r| {
            let task = (r.task.as_deref()).map_or(Ok(args.task), str::parse::<Task>);
            task.map(|t| (r, t))
                .map_err(|err| format!("field task: {err}"))
        });
        match read {
            Ok(record) => records.push(record),
            Err(why) => skipped.push(format!("{}:{line}: {why}", path.display())),
        }
    }
    if let Some(first) = skipped.first() {
        crate::say!(
            "neko: bench: left out {} record(s) that cannot be corrected; the first: {first}",
            skipped.len()
        );
    }
    // A row of zero records/s would read as a measurement.
    if records.is_empty() {
        anyhow::bail!(
            "--data {}: no record to correct, so nothing to time",
            path.display()
        );
    }
    // The prompt read and the predictions file made before the model loads and the timed run:
    // a typo in either is said at once, naming the file, not after the run.
    let prompt = super::read_prompt(args.decode.prompt.as_deref())?;
    if let Some(p) = &args.predictions {
        // Written whole after the run: a failed run leaves an earlier file as it was.
        super::check_output_path("--predictions", p, &[path])?;
    }
    let mut groups: std::collections::BTreeMap<Task, Vec<usize>> = Default::default();
    for (i, (_, task)) in records.iter().enumerate() {
        groups.entry(*task).or_default().push(i);
    }
    let tasks: Vec<Task> = groups.keys().copied().collect();
    // `--routing task` checked for every task before the weights load, as `neko correct`
    // refuses before decoding: a refusal after hours of timing would throw them away. (Learned
    // routing serves every task: nothing to read for it.)
    if args.decode.routing == crate::model::RoutingMode::Task {
        let files = crate::model::files::ModelFiles::resolve(&args.model.spec()?)?;
        let side = crate::model::PromptSide::read(files, false)?;
        for &task in &tasks {
            crate::correct::forced_expert(&side.config, args.decode.routing, task)
                .map_err(anyhow::Error::msg)?;
        }
    }
    let start = Instant::now();
    let model = args.model.load()?;
    let load_s = start.elapsed().as_secs_f64();
    let cfg = model.config.clone();
    let (format, dtype, device) = (
        format!("{:?}", model.files.format).to_lowercase(),
        model.dtype,
        device_name(model.decoder.device()),
    );
    let options = args.decode.options();
    let mut corrector = Corrector::new(model, prompt, options.clone());
    let signature = corrector.signature(&tasks);
    let mut predictions: Vec<Result<String, String>> = vec![Ok(String::new()); records.len()];
    let window = crate::backend::local::window(&options);
    // Drawn on a terminal only, a few times a second at most: it does not move the timings.
    let progress = super::progress_bar(Some(records.len() as u64), "bench");
    let started = Instant::now();
    for (task, idx) in &groups {
        for chunk in idx.chunks(window) {
            let rs: Vec<&Record> = chunk.iter().map(|&i| &records[i].0).collect();
            for (&i, out) in chunk.iter().zip(corrector.correct_task(*task, &rs)) {
                predictions[i] = out.map(|c| c.text);
            }
            progress.inc(chunk.len() as u64);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    if let Some(out) = &args.predictions {
        let mut text = String::new();
        for ((r, _), pred) in records.iter().zip(&predictions) {
            let line = match pred {
                Ok(p) => serde_json::json!({"id": r.id, "prediction": p}),
                Err(e) => serde_json::json!({"id": r.id, "prediction": null, "error": e}),
            };
            text += &format!("{line}\n");
        }
        super::write_whole(out, text.as_bytes())
            .with_context(|| format!("--predictions {}: cannot write it", out.display()))?;
    }
    let st = corrector.stats;
    let computed = st.prefix_tokens + st.prefill_tokens;
    let kv_per_token =
        2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * dtype.size_in_bytes();
    let n = records.len();
    let failed = predictions.iter().filter(|p| p.is_err()).count();
    if let Some(Err(e)) = predictions.iter().find(|p| p.is_err()) {
        crate::say!("neko: bench: {failed} of {n} record(s) failed (their time is in the totals); the first: {e}");
    }
    let record = DataBenchRecord {
        model: args.model.spec()?,
        signature,
        format,
        dtype: format!("{dtype:?}").to_lowercase(),
        quant: args.model.quant.map(|q| format!("{q:?}").to_lowercase()),
        device,
        cpu: cpu_model(),
        cores: cores(),
        cpu_features: cpu_features(),
        kernel_env: kernel_env(),
        threads: rayon::current_num_threads(),
        neko: env!("CARGO_PKG_VERSION"),
        load_s,
        data: path.display().to_string(),
        records: n,
        failed,
        skipped: skipped.len(),
        batch_size: options.batch_size,
        max_batch_tokens: options.max_batch_tokens,
        prefix_reuse: options.prefix_reuse,
        constrain: options.constrain.name().to_string(),
        seconds,
        records_s: n as f64 / seconds.max(1e-9),
        prefill_tok_s: computed as f64 / st.prefill_s.max(1e-9),
        prompt_tokens_per_record: (st.prefill_tokens + st.reused_tokens) as f64 / n.max(1) as f64,
        decode_tok_s: st.decode_tokens as f64 / st.decode_s.max(1e-9),
        stats: st,
        kv_cache_budget_mib: options.max_batch_tokens as f64 * kv_per_token as f64
            / (1 << 20) as f64,
        peak_rss_mib: peak_rss_mib(),
    };
    super::emit(&(serde_json::to_string(&record)? + "\n"))?;
    Ok(EXIT_OK)
}

/// A device as `--device` names it: `cpu`, `cuda:0`, `metal:0`.
fn device_name(device: &candle_core::Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The CPU's model name from `/proc/cpuinfo` (Linux only).
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// Logical CPUs this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The SIMD extensions, of those that decide which kernels candle and gemm run, this CPU has
/// (detected at run time, as they choose). They can change answers, not only speed: candle
/// tiles a quantised q8_0 product (its activations quantised otherwise) only with AVX-512 VNNI
/// or AVX-VNNI, and q4k products with AMX too. `amx` is CPUID's AMX-TILE and AMX-INT8, as
/// candle reads them (the standard library cannot detect them yet).
fn cpu_features() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    let found = {
        use std::arch::is_x86_feature_detected as has;
        // CPUID leaf 7: EDX bit 24 is AMX-TILE, bit 25 AMX-INT8.
        let edx = core::arch::x86_64::__cpuid_count(7, 0).edx;
        [
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("f16c", has!("f16c")),
            ("avxvnni", has!("avxvnni")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vnni", has!("avx512vnni")),
            ("avx512bf16", has!("avx512bf16")),
            ("amx", edx & (3 << 24) == 3 << 24),
        ]
    };
    #[cfg(target_arch = "aarch64")]
    let found = {
        use std::arch::is_aarch64_feature_detected as has;
        [
            ("neon", has!("neon")),
            ("fp16", has!("fp16")),
            ("dotprod", has!("dotprod")),
            ("i8mm", has!("i8mm")),
            ("bf16", has!("bf16")),
        ]
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let found: [(&'static str, bool); 0] = [];
    found
        .into_iter()
        .filter(|&(_, on)| on)
        .map(|(name, _)| name)
        .collect()
}

/// The environment variables, set to 1, with which candle chooses a lower x86 kernel tier than
/// the CPU has (`MISTRALRS_FORCE_AVX2`, `MISTRALRS_FORCE_AVXVNNI`): the same CPU then runs other
/// kernels.
fn kernel_env() -> Vec<&'static str> {
    use crate::model::{kernel_env_set, CANDLE_KERNEL_ENV};
    CANDLE_KERNEL_ENV
        .into_iter()
        .filter(|v| kernel_env_set(v))
        .collect()
}

/// `VmHWM` from `/proc/self/status`, in MiB (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
