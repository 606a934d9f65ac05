//! Command-line interface: the flags of each subcommand and one `run` function per subcommand.
//!
//! Exit codes: 0 success; 1 a regression or threshold check failed (`neko eval --baseline`);
//! 2 an error (bad flags, unreadable input or model, `--strict` failures).

pub mod bench;
pub mod convert;
pub mod correct;
pub mod eval;
pub mod guard;
pub mod info;
mod input;
pub mod merge;
pub mod train;
pub mod upcycle;

use std::io::Write;
use std::process::ExitCode;

use candle_core::DType;
use clap::{Args, Parser, Subcommand};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failed regression or threshold check.
pub const EXIT_REGRESSION: u8 = 1;
/// Exit code for an error.
pub const EXIT_ERROR: u8 = 2;

/// neko: N-best post-recognition error correction (ASR, ST/MT, OCR, GEC) with a task-routed
/// Mixture-of-Experts decoder.
#[derive(Debug, Parser)]
#[command(name = "neko", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// CPU threads for tensor math (default: 1 on machines with 2 cores or fewer, where more
    /// threads contend; otherwise the number of cores). RAYON_NUM_THREADS also works.
    #[arg(long, global = true, env = "NEKO_THREADS", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub threads: Option<usize>,
}

/// Flags that choose and place a model.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A model folder (config.json, tokenizer.json, safetensors), a .gguf file, or a hub id in
    /// the local cache. Default: neko-smol, the shipped corrector, as `scripts/setup.sh`
    /// builds it in $NEKO_CACHE/neko-smol (~/.cache/neko/neko-smol).
    #[arg(long, env = "NEKO_MODEL")]
    pub model: Option<String>,

    /// Where to run: cpu, cuda, cuda:N or metal (the latter two need the cargo features).
    #[arg(long, default_value = "cpu", env = "NEKO_DEVICE")]
    pub device: String,

    /// Weights' dtype: auto (f32 on CPU, bf16 on GPUs), f32, bf16 or f16.
    #[arg(long, default_value = "auto", env = "NEKO_DTYPE")]
    pub dtype: String,

    /// Quantise the projection weights at load: q8_0, q4_0, q4_1, q5_0, q5_1, q4k, q5k, q6k
    /// (k-quants fall back to q8_0 where a width is not a multiple of 256). GGUF weights of
    /// another type are requantised: with `--quant q8_0` a q4_1, q5_0 or q5_1 GGUF decodes a
    /// few records at a time about 4x faster on CPU (candle's kernels for those types are
    /// scalar), batches of 16 records a thread or more slower (as stored, their products go
    /// through gemm).
    #[arg(long, env = "NEKO_QUANT", value_parser = crate::model::parse_quant)]
    pub quant: Option<candle_core::quantized::GgmlDType>,

    /// Do not wrap prompts in the model's chat template (instruct models declare one).
    #[arg(long, env = "NEKO_NO_CHAT_TEMPLATE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub no_chat_template: bool,

    /// Trained tensors (`neko train`'s adapter.safetensors) replacing the model's own.
    #[arg(long, env = "NEKO_ADAPTER")]
    pub adapter: Option<std::path::PathBuf>,
}

/// The model a `--model` flag names, or the default neko-smol folder when it is set up.
pub fn resolve_model(model: Option<&str>) -> anyhow::Result<String> {
    // An empty NEKO_MODEL is unset, as an empty NEKO_CACHE is.
    if let Some(m) = model.filter(|m| !m.is_empty()) {
        return Ok(m.to_string());
    }
    let dir = crate::model::files::default_model_dir();
    if dir.join("config.json").is_file() {
        return Ok(dir.display().to_string());
    }
    anyhow::bail!(
        "no --model given and the default model neko-smol is not set up in {}: run \
         scripts/setup.sh (fetches the SmolLM2 base and adds the shipped experts), or pass \
         --model",
        dir.display()
    )
}

impl ModelArgs {
    /// The model to load: `--model`, else the default neko-smol when it is set up.
    pub fn spec(&self) -> anyhow::Result<String> {
        resolve_model(self.model.as_deref())
    }

    /// Loads the model named by these flags.
    pub fn load(&self) -> anyhow::Result<crate::model::Model> {
        let spec = self.spec()?;
        let device = crate::model::parse_device(&self.device)?;
        let dtype = crate::model::parse_dtype(&self.dtype, &device)?;
        let mut opts = crate::model::LoadOptions::new(&device, dtype);
        opts.quantize = self.quant;
        opts.chat_template = !self.no_chat_template;
        let model = match &self.adapter {
            Some(a) => crate::train::load_with_adapter(&spec, &opts, a)?,
            None => crate::model::Model::load_with(&spec, &opts)?,
        };
        say_chat_ignored(&model);
        Ok(model)
    }
}

/// Says that the model's declared chat template is not used, where the command builds prompts
/// and has --no-chat-template (correct, bench, guard --score).
pub fn say_chat_ignored(model: &crate::model::Model) {
    if let Some(why) = &model.chat_ignored {
        crate::say!(
            "neko: {}: {why}; prompts go unwrapped (--no-chat-template says that is meant)",
            model.files.spec
        );
    }
}

/// Says on stderr, before a model is written, how large its weights are (on disk, and in
/// memory while the written model is loaded as a check): full experts of a large model take
/// many times their source, and a user should see that before the disk fills.
pub fn announce_write(ck: &crate::convert::Checkpoint, to: &std::path::Path, dtype: DType) {
    crate::say!(
        "neko: writing {}: {} parameters, {}B as {} (on disk, and in memory while checking that it loads)",
        to.display(),
        human(ck.parameters() as u64),
        human(ck.weight_bytes(dtype)),
        dtype.as_str(),
    );
}

/// A count in thousands (K), millions (M) or billions (B), as model sizes are given.
fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// A progress bar on stderr. Without a terminal (a batch job's log, `2> log`) indicatif
/// would draw nothing for the whole run: there a plain line comes once a minute instead.
pub fn progress_bar(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    // An input read as it arrives has no length yet: records and rate only.
    let (target, template) = match (terminal, len.is_some()) {
        (true, true) => (
            indicatif::ProgressDrawTarget::stderr(),
            "{msg} {bar:30} {pos}/{len} records [{elapsed_precise}<{eta_precise}, {per_sec}]",
        ),
        (true, false) => (
            indicatif::ProgressDrawTarget::stderr(),
            "{msg} {spinner} {pos} records [{elapsed_precise}, {per_sec}]",
        ),
        (false, true) => (
            indicatif::ProgressDrawTarget::term_like_with_hz(Box::new(LogLines::new()), 1),
            "neko: {msg}: {pos}/{len} records, {elapsed_precise} so far, {eta_precise} to go ({per_sec})",
        ),
        (false, false) => (
            indicatif::ProgressDrawTarget::term_like_with_hz(Box::new(LogLines::new()), 1),
            "neko: {msg}: {pos} records, {elapsed_precise} so far ({per_sec})",
        ),
    };
    let bar = indicatif::ProgressBar::with_draw_target(len, target);
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("valid template"));
    bar.set_message(what.to_string());
    bar
}

/// Progress as log lines: what the bar would draw, a line a minute at most (the first after a
/// minute, so short runs and tests print none), nothing of the cursor moves.
#[derive(Debug)]
struct LogLines {
    last: std::sync::Mutex<std::time::Instant>,
}

impl LogLines {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    fn new() -> Self {
        LogLines {
            last: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    fn line(&self, s: &str) -> std::io::Result<()> {
        if !s.trim().is_empty() && self.due() {
            crate::say!("{}", s.trim_end());
        }
        Ok(())
    }

    /// Whether a line is due (a minute since the last, or since the start), restarting the
    /// minute when it is.
    fn due(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.elapsed() >= Self::EVERY;
        if due {
            *last = std::time::Instant::now();
        }
        due
    }
}

impl indicatif::TermLike for LogLines {
    fn width(&self) -> u16 {
        200
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.line(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A flag set by the first Ctrl-C, so a long command can stop at its next safe point (`doing`
/// says what it does before stopping); a second Ctrl-C exits at once.
pub fn interrupt_flag(doing: &'static str) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        crate::say!("\nneko: interrupted: {doing} (Ctrl-C again to quit now)");
    });
    flag
}

/// Keeps freed tensor memory in the process rather than handing it back to the kernel at
/// every op. Why: candle allocates each op's output afresh; glibc serves blocks above its mmap
/// threshold (128 KiB at start) straight from the kernel and trims the heap's free top above
/// 128 KiB, so the next op's buffer was faulted in again page by page: 10% of a `neko correct`
/// profile. Blocks up to 4 MiB now come from the heap, which keeps up to 256 MiB free before
/// trimming: about 1.15× faster on 40 dev records, the same peak RSS (docs/speed.md, "Decode
/// without repacking"; larger thresholds were faster still but cost 100 MiB). A user's own
/// GLIBC_TUNABLES is left alone.
/// Call it first, before any thread starts.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        // SAFETY: mallopt only sets the allocator's parameters, and no other thread runs yet.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        }
    }
}

/// Sets the CPU thread count before the first tensor operation creates the thread pools.
pub fn configure_threads(threads: Option<usize>) {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() && threads.is_none() {
        return;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let n = threads.unwrap_or(if cores <= 2 { 1 } else { cores });
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Correct N-best records with a (task-routed MoE) decoder; writes JSONL to stdout.
    Correct(correct::CorrectArgs),
    /// Describe a model: architecture, experts, task map, dtype, parameter count.
    Info(info::InfoArgs),
    /// Apply the over-correction guard to predictions made elsewhere (another engine, or a
    /// `neko correct --no-guard` run), e.g. to compare thresholds without decoding again.
    Guard(guard::GuardArgs),
    /// Score files: WER, CER, BLEU, chrF, TER, GEC scores, with baselines, oracles and a signature.
    Eval(eval::EvalArgs),
    /// Write a GGUF (or Hugging Face) model as a Hugging Face folder with f32/bf16 safetensors.
    Convert(convert::ConvertArgs),
    /// Turn a dense model into a task-routed Mixture of Experts (sparse upcycling).
    Upcycle(upcycle::UpcycleArgs),
    /// Measure load time and prefill/decode speed of a model; prints JSON.
    Bench(bench::BenchArgs),
    /// Train task-routed experts (resumable; see docs/training.md).
    Train(train::TrainArgs),
    /// Put the outputs of `neko correct --shard I/N` runs back in input order.
    Merge(merge::MergeArgs),
}

/// Runs a parsed command line and maps the outcome to a documented exit code.
/// Removes every empty `NEKO_*` variable before the flags are parsed: an empty environment
/// twin is unset, as README.md says (clap would take `NEKO_ENDPOINT=` as an endpoint given,
/// or `NEKO_SHARD=` as an invalid shard). Call it first, before any thread starts.
pub fn unset_empty_twins() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(k, v)| k.to_str().is_some_and(|k| k.starts_with("NEKO_")) && v.is_empty())
        .map(|(k, _)| k)
        .collect();
    for k in empty {
        std::env::remove_var(k);
    }
}

pub fn run(cli: Cli) -> ExitCode {
    configure_threads(cli.threads);
    let result = match cli.command {
        Command::Correct(args) => correct::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Guard(args) => guard::run(&args),
        Command::Convert(args) => convert::run(&args),
        Command::Upcycle(args) => upcycle::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Merge(args) => merge::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::from(EXIT_OK),
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "neko: error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The `--prompt` template file, if one is given, read and checked (the error names it).
pub(crate) fn read_prompt(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<crate::prompt::Template>> {
    use anyhow::Context;
    path.map(|p| {
        crate::prompt::Template::from_file(p)
            .with_context(|| format!("{}: cannot read the prompt", p.display()))
    })
    .transpose()
}

/// Writes `text` to stdout; a reader that closed the pipe early (`neko info | head`) is no
/// error, as the README's exit codes say.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}

/// Whether `err` is a write to a reader that closed the pipe early (`neko ... | head`): that
/// is success, not an error.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes `bytes` to `path` whole or not at all: a hidden file beside it, synced, renamed over
/// it, so an interrupted or failed write leaves an earlier file as it was.
pub(crate) fn write_whole(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let name = path.file_name().context("no file name")?.to_string_lossy();
    let partial = path.with_file_name(format!(".{name}.partial"));
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// Refuses an output path that cannot take the file, before any work is done: a directory
/// (or a path ending in one), or one of the inputs, which the run would overwrite. `flag` names
/// the output in the message (`-o`, `--per-record`).
pub(crate) fn check_output_path(
    flag: &str,
    out: &std::path::Path,
    inputs: &[&std::path::Path],
) -> anyhow::Result<()> {
    if out == std::path::Path::new("-") {
        anyhow::bail!(
            "{flag} -: a file named - would be written; give a file name (neko correct and neko merge write to standard output without -o)"
        );
    }
    let named = out.file_name().is_some() && !out.to_string_lossy().ends_with('/');
    if !named || out.is_dir() {
        anyhow::bail!("{flag} {}: a directory; give a file name", out.display());
    }
    // Said before the model loads, not when the first line is written.
    let parent = out.parent().filter(|d| !d.as_os_str().is_empty());
    if parent.is_some_and(|d| !d.is_dir()) {
        anyhow::bail!("{flag} {}: no such folder", out.display());
    }
    // The output is written beside it and renamed over it: a link, device or pipe would be
    // replaced by a plain file (`-o /dev/null` as root, the system's /dev/null).
    let stream = match flag {
        "-o" => "; to stream the output, leave out -o and redirect stdout",
        _ => "; give a file",
    };
    if let Ok(meta) = std::fs::symlink_metadata(out) {
        let kind = meta.file_type();
        // `/dev/stdout` is a link to a pipe or terminal, not to a file to give instead.
        let to_file = std::fs::metadata(out).is_ok_and(|m| m.is_file());
        if kind.is_symlink() && !to_file {
            anyhow::bail!(
                "{flag} {}: a symbolic link to no regular file (a device or pipe), which the finished file would replace{stream}",
                out.display()
            );
        }
        if kind.is_symlink() {
            anyhow::bail!(
                "{flag} {}: a symbolic link, which the finished file would replace; give the file it points to",
                out.display()
            );
        }
        if !kind.is_file() {
            anyhow::bail!(
                "{flag} {}: not a regular file (a device or pipe), which the finished file would replace{stream}",
                out.display(),
            );
        }
    }
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize())
    {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if let Some(input) = inputs.iter().find(|i| same(i, out)) {
        anyhow::bail!(
            "{flag} {}: is the input {}; write to another file",
            out.display(),
            input.display()
        );
    }
    // The files written beside it: `FILE.partial` is truncated when the run starts.
    let partial = crate::output::partial_path(out);
    let beside = [
        crate::output::signature_path(out),
        crate::output::signature_path(&partial),
        partial,
    ];
    for side in &beside {
        if let Some(input) = inputs.iter().find(|i| same(i, side)) {
            anyhow::bail!(
                "{flag} {}: the run writes {} beside it, which is the input {}; write to another file",
                out.display(),
                side.display(),
                input.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a terminal, progress is a line a minute: none in the first minute (short runs
    /// and tests print none), then one, then none until the next minute.
    #[test]
    fn log_lines_come_once_a_minute() {
        let lines = LogLines::new();
        assert!(!lines.due());
        *lines.last.lock().unwrap() -= LogLines::EVERY;
        assert!(lines.due());
        assert!(!lines.due());
    }
}
