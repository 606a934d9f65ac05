//! `neko correct`: N-best records in, corrected records out (JSONL, input order).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use super::{ModelArgs, EXIT_OK};
use crate::correct::{CorrectOptions, Corrector};
use crate::model::RoutingMode;
use crate::output::{OutputRecord, RecordFailure};
use crate::prompt::Template;
use crate::record::{self, Entry, Record};
use crate::Task;

/// Flags of `neko correct`.
#[derive(Debug, Args)]
pub struct CorrectArgs {
    /// Input files: JSONL, HyPoradise JSON arrays, or plain text (one 1-best per line); `-` is
    /// standard input.
    #[arg(default_value = "-")]
    pub inputs: Vec<PathBuf>,

    /// Task of records without a `task` field: asr, st, mt, ocr or gec. A record's own `task`
    /// field takes precedence.
    #[arg(long, env = "NEKO_TASK")]
    pub task: Option<Task>,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub decode: DecodeArgs,

    /// Write to FILE (atomically: a temporary file renamed when the run ends) instead of stdout.
    #[arg(short, long, env = "NEKO_OUTPUT")]
    pub output: Option<PathBuf>,
}

/// Decoding flags.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Expert routing: `learned` lets the gate route every token (the paper's inference; works
    /// for every checkpoint); `task` forces the task's expert (from config.json's
    /// `task_experts`) into each token's top-k.
    #[arg(long, value_enum, default_value_t = RoutingMode::Learned, env = "NEKO_ROUTING")]
    pub routing: RoutingMode,

    /// Most tokens per answer (default: twice the longest hypothesis's tokens plus 16).
    #[arg(long, env = "NEKO_MAX_NEW_TOKENS")]
    pub max_new_tokens: Option<usize>,

    /// Records decoded together in one batch.
    #[arg(long, default_value_t = 8, env = "NEKO_BATCH_SIZE")]
    pub batch_size: usize,

    /// A prompt template file replacing the built-in one of every task (see configs/prompts).
    #[arg(long, env = "NEKO_PROMPT")]
    pub prompt: Option<PathBuf>,

    /// A string that ends the answer; repeat for several (default: a newline).
    #[arg(long = "stop", env = "NEKO_STOP")]
    pub stop: Vec<String>,
}

impl DecodeArgs {
    fn options(&self) -> CorrectOptions {
        let mut o = CorrectOptions {
            routing: self.routing,
            max_new_tokens: self.max_new_tokens,
            batch_size: self.batch_size.max(1),
            ..CorrectOptions::default()
        };
        if !self.stop.is_empty() {
            o.stop = self.stop.iter().map(|s| unescape(s)).collect();
        }
        o
    }
}

/// `\n` and `\t` typed on a command line mean the characters.
fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

/// An input record with where it came from.
struct Item {
    file: String,
    entry: Entry,
}

/// Runs `neko correct`.
pub fn run(args: &CorrectArgs) -> anyhow::Result<u8> {
    let items = read_inputs(&args.inputs)?;
    if args.task.is_none() && !items.iter().any(|it| has_task(&it.entry)) {
        bail!(
            "no task given: pass --task (asr, st, mt, ocr or gec) or give records a `task` field"
        );
    }
    let prompt = match &args.decode.prompt {
        Some(p) => Some(
            Template::from_file(p)
                .with_context(|| format!("{}: cannot read the prompt", p.display()))?,
        ),
        None => None,
    };
    let model = args.model.load()?;
    let mut corrector = Corrector::new(model, prompt, args.decode.options());
    for task in used_tasks(&items, args.task) {
        corrector.check_routing(task).map_err(anyhow::Error::msg)?;
    }
    let mut sink = Sink::open(args.output.as_deref())?;
    let started = Instant::now();
    let progress = super::progress_bar(items.len() as u64, "correcting");
    let window = corrector.options.batch_size * 4;
    let mut failed = 0usize;
    for chunk in items.chunks(window.max(1)) {
        for out in correct_window(&mut corrector, chunk, args.task) {
            failed += usize::from(out.error.is_some());
            sink.write(&out)?;
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    sink.finish()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "neko: {} records ({} failed) in {secs:.1}s, {:.2} records/s",
        items.len(),
        failed,
        items.len() as f64 / secs.max(1e-9)
    );
    Ok(EXIT_OK)
}

fn read_inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    for path in paths {
        let file = record::input_name(path);
        let entries = record::read_path(path).with_context(|| format!("{file}: cannot read"))?;
        items.extend(entries.into_iter().map(|entry| Item {
            file: file.clone(),
            entry,
        }));
    }
    Ok(items)
}

fn has_task(entry: &Entry) -> bool {
    entry.record.as_ref().is_ok_and(|r| r.task.is_some())
}

fn used_tasks(items: &[Item], default: Option<Task>) -> Vec<Task> {
    let mut tasks: Vec<Task> = items
        .iter()
        .filter_map(|it| it.entry.record.as_ref().ok())
        .filter_map(|r| resolve_task(r, default).ok())
        .collect();
    tasks.sort();
    tasks.dedup();
    tasks
}

/// The record's own task, else the command line's.
fn resolve_task(record: &Record, default: Option<Task>) -> Result<Task, String> {
    match (&record.task, default) {
        (Some(t), _) => t.parse::<Task>().map_err(|e| e.to_string()),
        (None, Some(t)) => Ok(t),
        (None, None) => {
            Err("no task: the record has no `task` field and --task was not given".into())
        }
    }
}

/// Corrects one window of records and returns their output lines in input order.
fn correct_window(
    corrector: &mut Corrector,
    chunk: &[Item],
    default: Option<Task>,
) -> Vec<OutputRecord> {
    let mut outputs: Vec<Option<OutputRecord>> = vec![None; chunk.len()];
    let mut by_task: std::collections::BTreeMap<Task, Vec<usize>> = Default::default();
    for (i, item) in chunk.iter().enumerate() {
        let failure = |field: Option<&str>, message: String| RecordFailure {
            file: item.file.clone(),
            line: item.entry.line,
            field: field.map(str::to_string),
            message,
        };
        match &item.entry.record {
            Err(e) => outputs[i] = Some(OutputRecord::unreadable(&item.entry, &item.file, e)),
            Ok(r) => match resolve_task(r, default) {
                Ok(t) => by_task.entry(t).or_default().push(i),
                Err(m) => {
                    outputs[i] = Some(OutputRecord::failed(r, None, failure(Some("task"), m)))
                }
            },
        }
    }
    for (task, idx) in by_task {
        let records: Vec<&Record> = idx
            .iter()
            .map(|&i| chunk[i].entry.record.as_ref().expect("readable"))
            .collect();
        let results = corrector.correct_task(task, &records);
        for ((&i, r), result) in idx.iter().zip(&records).zip(results) {
            outputs[i] = Some(match result {
                Ok(c) => OutputRecord::corrected(r, task.name(), c.text),
                Err(m) => OutputRecord::failed(
                    r,
                    Some(task.name()),
                    RecordFailure {
                        file: chunk[i].file.clone(),
                        line: chunk[i].entry.line,
                        field: None,
                        message: m,
                    },
                ),
            });
        }
    }
    outputs
        .into_iter()
        .map(|o| o.expect("every record has an output"))
        .collect()
}

/// Where output lines go: stdout, or a temporary file renamed into place at the end so a
/// reader never sees a half-written file.
struct Sink {
    out: Box<dyn Write>,
    rename: Option<(PathBuf, PathBuf)>,
}

impl Sink {
    fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            None => Ok(Sink {
                out: Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                rename: None,
            }),
            Some(p) => {
                let tmp = temp_path(p);
                let f = std::fs::File::create(&tmp)
                    .with_context(|| format!("{}: cannot create", tmp.display()))?;
                Ok(Sink {
                    out: Box::new(std::io::BufWriter::new(f)),
                    rename: Some((tmp, p.to_path_buf())),
                })
            }
        }
    }

    fn write(&mut self, rec: &OutputRecord) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, rec)?;
        self.out.write_all(b"\n")?;
        // Flush per window so pipelines see results as they come.
        self.out.flush()?;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        drop(self.out);
        if let Some((tmp, dest)) = self.rename.take() {
            std::fs::rename(&tmp, &dest)
                .with_context(|| format!("{}: cannot rename into place", dest.display()))?;
        }
        Ok(())
    }
}

fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    dest.with_file_name(format!(".{name}.neko-tmp-{}", std::process::id()))
}
