//! `neko train`: task-oriented expert training from a TOML config, resumable (see
//! [`crate::train`] and docs/training.md).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context};
use clap::Args;

use super::{EXIT_ERROR, EXIT_OK};
use crate::train::{TrainConfig, Trainer};

/// Flags of `neko train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The training configuration (TOML: model, out, [train], [[data]], [[valid]]).
    #[arg(long, env = "NEKO_TRAIN_CONFIG", required_unless_present = "resume")]
    pub config: Option<PathBuf>,

    /// Continue the run saved in this directory (its config, data order and optimizer state).
    /// (Not `NEKO_RESUME`, which is `neko correct`'s switch.) Not with `--config`; from the
    /// environment, either is a default that the other on the command line overrides.
    #[arg(long, env = "NEKO_TRAIN_RESUME")]
    pub resume: Option<PathBuf>,

    /// The run directory (overrides the config's `out`).
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Stop (with a checkpoint) once this many steps are done, before the schedule's end; a
    /// later `--resume` continues the same schedule.
    #[arg(long)]
    pub stop_at_step: Option<usize>,

    /// Stop (with a checkpoint) after this many minutes of training.
    #[arg(long, value_parser = positive_minutes)]
    pub max_minutes: Option<f64>,

    /// Start over in a run directory that already holds a checkpoint.
    #[arg(long)]
    pub force: bool,

    /// Write the config's training examples as rendered token ids (JSONL: task, expert, ids,
    /// answer_start) to this file and stop, for training on another engine
    /// (`scripts/train_torch.py` on a GPU). Nothing is trained.
    #[arg(long)]
    pub export_examples: Option<PathBuf>,
}

/// `--resume DIR` or `--config FILE`, which exclude each other; a value from the environment
/// (`NEKO_TRAIN_RESUME`, `NEKO_TRAIN_CONFIG`) is a default that the other flag given on the
/// command line overrides (clap's own conflict check counts the environment as given).
fn start(args: &TrainArgs) -> anyhow::Result<(Option<&PathBuf>, Option<&PathBuf>)> {
    let from_env = |var: &str, value: &PathBuf| std::env::var_os(var).is_some_and(|v| *value == v);
    let (resume, config) = match (&args.resume, &args.config) {
        (Some(dir), Some(config)) => match (
            from_env("NEKO_TRAIN_RESUME", dir),
            from_env("NEKO_TRAIN_CONFIG", config),
        ) {
            (true, false) => (None, Some(config)),
            (false, true) => (Some(dir), None),
            _ => bail!("give --config or --resume, not both"),
        },
        (resume, config) => (resume.as_ref(), config.as_ref()),
    };
    if resume.is_some() && (args.out.is_some() || args.force || args.export_examples.is_some()) {
        bail!("--resume goes on in the run's own folder: --out, --force and --export-examples go with --config");
    }
    Ok((resume, config))
}

/// Runs `neko train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<u8> {
    // Before the data and model load (tens of seconds): a Ctrl-C then stops before the first
    // step, a fresh run touching nothing, a resumed one keeping its checkpoint.
    let interrupted = super::interrupt_flag("finishing the step and saving a checkpoint");
    let trainer = match start(args)? {
        (Some(dir), _) => {
            let t = Trainer::resume(dir)?;
            say_data_report(&t);
            t
        }
        (None, Some(path)) => {
            let mut config = TrainConfig::read(path)?;
            if let Some(out) = &args.out {
                config.out = out.clone();
            }
            // Exporting reads the data only: the run directory is not touched.
            let exporting = args.export_examples.is_some();
            if config.out.as_os_str().is_empty() && !exporting {
                bail!(
                    "{}: no `out` (the run folder); add one or give --out",
                    path.display()
                );
            }
            if let Some(path) = &args.export_examples {
                super::check_output_path("--export-examples", path, &[])?;
                let same = |p: &std::path::Path| match (p.canonicalize(), path.canonicalize()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                };
                if let Some(d) = config
                    .data
                    .iter()
                    .chain(&config.valid)
                    .find(|d| same(&d.path))
                {
                    bail!(
                        "--export-examples {}: is the data file {}; write to another file",
                        path.display(),
                        d.path.display()
                    );
                }
            }
            if config.out.join("state.json").exists() && !args.force && !exporting {
                bail!(
                    "{} already holds a run: continue it with --resume {0}, or start over with --force",
                    config.out.display()
                );
            }
            let t = Trainer::new(config)?;
            say_data_report(&t);
            if let Some(path) = &args.export_examples {
                return export_examples(&t, path, &interrupted);
            }
            // Stopped while the model and data loaded: the run folder (a finished run, when
            // --force was typed for --resume) is left as it was, not cleared for step 0.
            if interrupted.load(Ordering::SeqCst) {
                crate::say!(
                    "neko: interrupted before the first step: {} left as it was",
                    t.config.out.display()
                );
                return Ok(EXIT_ERROR);
            }
            std::fs::create_dir_all(&t.config.out).with_context(|| {
                format!(
                    "out = {}: cannot make the run folder",
                    t.config.out.display()
                )
            })?;
            t.clear_checkpoint()?;
            std::fs::write(
                t.config.out.join("config.toml"),
                toml::to_string_pretty(&t.config)?,
            )?;
            let _ = std::fs::remove_file(t.log_path());
            t
        }
        (None, None) => bail!("give --config or --resume"),
    };
    train(args, trainer, &interrupted)
}

/// What the data gave: examples, and what was left out and why.
fn say_data_report(trainer: &Trainer) {
    let r = &trainer.report;
    let total = trainer.config.train.steps;
    crate::say!(
        "neko: {} examples ({} without a reference (missing or empty), {} over {} tokens, {} unreadable), {} micro-batches per epoch; {} trainable tensors; step {} of {total}",
        r.examples,
        r.no_reference,
        r.too_long,
        trainer.max_len(),
        r.unreadable,
        trainer.batches_per_epoch(),
        trainer.trainable().len(),
        trainer.step
    );
    if let Some(first) = &r.first_unreadable {
        crate::say!("neko: unreadable records left out; the first: {first}");
    }
    let v = &trainer.valid_report;
    if v.no_reference + v.too_long + v.unreadable > 0 {
        crate::say!(
            "neko: validation: {} examples ({} without a reference, {} too long, {} unreadable{})",
            v.examples,
            v.no_reference,
            v.too_long,
            v.unreadable,
            (v.first_unreadable.as_ref()).map_or(String::new(), |f| format!("; the first: {f}"))
        );
    }
}

/// Trains from where `trainer` stands to the last step (or `--stop-at-step`, the time limit,
/// an interrupt), checkpointing on the way and at the end.
fn train(
    args: &TrainArgs,
    mut trainer: Trainer,
    interrupted: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<u8> {
    let total = trainer.config.train.steps;
    let stop = args.stop_at_step.unwrap_or(total).min(total);
    truncate_log(&trainer.log_path(), trainer.step)?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(trainer.log_path())
        .with_context(|| format!("cannot open {}", trainer.log_path().display()))?;
    let bar = progress(total as u64, trainer.step as u64);
    let started = std::time::Instant::now();
    let every = trainer.config.train.checkpoint_every.max(1);
    let valid_every = trainer.config.train.valid_every;
    let mut code = EXIT_OK;
    let first = trainer.step;
    if interrupted.load(Ordering::SeqCst) && trainer.step < total {
        code = EXIT_ERROR;
    }
    let mut saved = trainer.step;
    while trainer.step < stop && code == EXIT_OK {
        let s = trainer.train_step()?;
        writeln!(log, "{}", serde_json::to_string(&s)?)?;
        if !s.loss.is_finite() {
            // The weights are NaN now: nothing of this state may be saved.
            bar.finish_and_clear();
            // A resume would replay the same steps to the same NaN: only a new start helps.
            let kept = match saved {
                0 => "no checkpoint was saved".to_string(),
                n => format!(
                    "the checkpoint of step {n} is kept, but a --resume replays the same steps"
                ),
            };
            anyhow::bail!(
                "step {}: the loss is {} (training diverged); {kept}: start over with --force and a lower lr or more warmup_steps",
                s.step,
                s.loss
            );
        }
        bar.set_message(format!(
            "loss {:.4} lm {:.4} lr {:.2e} {:.0} tok/s",
            s.loss, s.lm_loss, s.lr, s.tokens_per_s
        ));
        bar.set_position(s.step as u64);
        // Without a terminal the bar draws nothing: a log (nohup, `2> log`) gets a line now
        // and then instead, about fifty over the run.
        if !std::io::stderr().is_terminal() && (s.step % (total / 50).max(1) == 0 || s.step == stop)
        {
            let per_step = started.elapsed().as_secs_f64() / (s.step - first).max(1) as f64;
            crate::say!(
                "neko: step {}/{total}: loss {:.4} lm {:.4} lr {:.2e} {:.0} tok/s, ETA {}",
                s.step,
                s.loss,
                s.lm_loss,
                s.lr,
                s.tokens_per_s,
                clock(per_step * (stop - s.step) as f64)
            );
        }
        if valid_every > 0 && s.step % valid_every == 0 {
            if let Some(v) = trainer.valid_loss()? {
                writeln!(
                    log,
                    "{}",
                    serde_json::json!({"step": s.step, "valid_loss": v})
                )?;
                // The bar prints only to a terminal; a log gets the line itself.
                let line = format!("step {}: valid loss {v:.4}", s.step);
                match std::io::stderr().is_terminal() {
                    true => bar.println(line),
                    false => crate::say!("neko: {line}"),
                }
            }
        }
        if s.step % every == 0 {
            trainer.save_checkpoint()?;
            saved = s.step;
        }
        let out_of_time = args
            .max_minutes
            .is_some_and(|m| started.elapsed().as_secs_f64() > m * 60.0);
        if interrupted.load(Ordering::SeqCst) || out_of_time {
            // Interrupted at the last step, the run is complete all the same.
            if interrupted.load(Ordering::SeqCst) && trainer.step < total {
                code = EXIT_ERROR;
            }
            break;
        }
    }
    bar.finish_and_clear();
    // Once, by the invocation that trained the last step (not again by a resume of a
    // finished run), unless the last step was one of the `valid_every` ones.
    let validated = valid_every > 0 && total.is_multiple_of(valid_every);
    if trainer.step == total && trainer.step > first && !validated {
        if let Some(v) = trainer.valid_loss()? {
            writeln!(
                log,
                "{}",
                serde_json::json!({"step": trainer.step, "valid_loss": v})
            )?;
            crate::say!("neko: valid loss {v:.4}");
        }
    }
    trainer.save_checkpoint()?;
    let dir = trainer.config.out.display();
    if trainer.step < total {
        crate::say!(
            "neko: stopped at step {} of {total}; continue with: neko train --resume {dir}",
            trainer.step
        );
    } else {
        crate::say!(
            "neko: done ({total} steps, {} tokens, {:.0} s); adapter: {dir}/adapter.safetensors (neko correct --task TASK --model {} --adapter {dir}/adapter.safetensors, or records with a `task`)",
            trainer.tokens, trainer.seconds, trainer.config.model
        );
    }
    Ok(code)
}

/// Drops log lines of steps after `step` (written after the last checkpoint of an
/// interrupted run), so a resumed log reads as one run.
fn truncate_log(path: &std::path::Path, step: usize) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step")?.as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}

fn progress(len: u64, pos: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "train {bar:30} step {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
    )
    .expect("valid template");
    bar.set_style(style);
    bar.set_position(pos);
    bar.reset_eta();
    bar
}

/// Writes the training examples as JSONL through a temporary file (atomic).
fn export_examples(
    trainer: &Trainer,
    path: &std::path::Path,
    interrupted: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<u8> {
    let mut sink = crate::output::OutputSink::create(path, None)?;
    let out = sink.writer();
    for ex in trainer.examples() {
        if interrupted.load(Ordering::SeqCst) {
            // The partial file stays beside, unfinished; nothing is renamed into place.
            crate::say!("neko: interrupted: {} not written", path.display());
            return Ok(EXIT_ERROR);
        }
        let expert = trainer.model.config.task_expert(ex.task);
        let mut line = serde_json::to_value(ex)?;
        line["expert"] = serde_json::json!(expert);
        writeln!(out, "{line}")?;
    }
    sink.finish()?;
    crate::say!(
        "neko: wrote {} examples to {}",
        trainer.examples().len(),
        path.display()
    );
    Ok(EXIT_OK)
}

/// Seconds as `H:MM:SS`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `--max-minutes`: a positive number (NaN would never stop the run).
fn positive_minutes(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if m > 0.0 && m.is_finite() => Ok(m),
        _ => Err(format!("`{s}`: expected a positive number of minutes")),
    }
}
