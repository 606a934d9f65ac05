//! The records of `neko correct`'s inputs: read whole before the model loads, or read as they
//! arrive, beside the decoding, and handed over in windows.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::record::{self, Entry};

/// An input record with where it came from.
pub struct Item {
    pub file: String,
    pub entry: Entry,
    /// Its 0-based position in the whole input (all files, in order).
    pub position: usize,
}

/// How long a window waits for more records once its first has arrived: in a pipeline whose
/// recogniser is slower than the corrector, what has come in the meantime is decoded rather
/// than waiting for a full window; a file fills a window at once, so its windows stay full.
const WINDOW_WAIT: Duration = Duration::from_secs(1);

/// Refuses `-` twice, and says when one file is given twice.
fn check_paths(paths: &[PathBuf]) -> anyhow::Result<()> {
    if paths.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        bail!("- given twice: standard input can be read once");
    }
    let same = |a: &PathBuf, b: &PathBuf| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    for (k, path) in paths.iter().enumerate() {
        if paths[..k].iter().any(|p| same(p, path)) {
            crate::say!(
                "neko: {} is given twice: its records are corrected twice, under the same ids",
                record::input_name(path)
            );
        }
    }
    // `neko correct --task asr` with no file waits for the keyboard: a user who meant to give
    // one should not take it for a hang.
    let stdin = paths.iter().any(|p| p.as_os_str() == "-");
    if stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        crate::say!("neko: reading records from the terminal (one JSON object or 1-best per line; Ctrl-D ends the input)");
    }
    Ok(())
}

/// Nothing in, nothing out, and no error: but an upstream step that wrote nothing should not
/// pass unseen.
fn say_if_empty(file: &str, records: usize) {
    if records == 0 {
        crate::say!("neko: {file}: no records (the input is empty or blank)");
    }
}

/// The records of every input file, in order, and the input's fingerprint (for shard lines).
pub fn read_whole(
    paths: &[PathBuf],
    max_record_bytes: usize,
) -> anyhow::Result<(Vec<Item>, String)> {
    check_paths(paths)?;
    let mut items = Vec::new();
    let mut fingerprint = crate::shard::InputFingerprint::default();
    for path in paths {
        let file = record::input_name(path);
        let bytes = record::read_input(path).with_context(|| format!("{file}: cannot read"))?;
        fingerprint.add(&bytes);
        let entries = record::parse_with_limit(&bytes, max_record_bytes);
        say_if_empty(&file, entries.len());
        let start = items.len();
        items.extend(entries.into_iter().enumerate().map(|(k, entry)| Item {
            file: file.clone(),
            entry,
            position: start + k,
        }));
    }
    Ok((items, fingerprint.finish()))
}

/// Checks the inputs of [`stream`] before a model loads for them, so that what whole reading
/// refuses at once is refused at once here too: a missing file, a folder, a compressed file
/// (by its first bytes, for a regular file: a pipe's may not have come yet). Each input is
/// opened for reading only when its turn comes: a named pipe counts its readers, a producer
/// may write its pipes one after another, and the open-file limit holds whatever their number.
pub fn check_streamable(paths: &[PathBuf]) -> anyhow::Result<()> {
    check_paths(paths)?;
    for path in paths.iter().filter(|p| p.as_os_str() != "-") {
        let name = record::input_name(path);
        let cannot = || format!("{name}: cannot read");
        let kind = std::fs::metadata(path).with_context(cannot)?;
        if kind.is_dir() {
            bail!("{name}: cannot read: it is a folder");
        }
        if kind.is_file() {
            let mut head = Vec::with_capacity(8);
            let file = File::open(path).with_context(cannot)?;
            file.take(8).read_to_end(&mut head).with_context(cannot)?;
            record::stream::refuse_compressed(&head).with_context(cannot)?;
        }
    }
    Ok(())
}

/// The records of every input, in order, read by a thread of their own as they arrive
/// ([`record::stream`]) and handed over in windows of up to `size` records.
pub fn stream(
    paths: &[PathBuf],
    max_record_bytes: usize,
    size: usize,
    interrupted: Arc<AtomicBool>,
) -> Windows {
    let size = size.max(1);
    // Bounded, so that a fast input waits for the decoder instead of filling memory (and
    // allocated up front: a window of any size is a large one).
    let (send, receive) = std::sync::mpsc::sync_channel(size.saturating_mul(2).min(1 << 14));
    let paths = paths.to_vec();
    let reader = std::thread::spawn(move || read_all(&paths, max_record_bytes, send));
    Windows {
        receive,
        reader: Some(reader),
        size,
        interrupted,
        failed: None,
        ended: false,
    }
}

/// The reading thread: every input's records, then the end (the channel closed); an input
/// that cannot be read is sent as an error, and nothing after it.
fn read_all(paths: &[PathBuf], max: usize, send: SyncSender<anyhow::Result<Item>>) {
    let mut position = 0;
    for path in paths {
        let file = record::input_name(path);
        let mut records = 0;
        let emit = |entry| {
            let item = Item {
                file: file.clone(),
                entry,
                position,
            };
            position += 1;
            records += 1;
            send.send(Ok(item)).is_ok()
        };
        let read = match path.as_os_str() == "-" {
            true => record::stream::read_entries(std::io::stdin().lock(), max, emit),
            false => File::open(path)
                .and_then(|f| record::stream::read_entries(BufReader::new(f), max, emit)),
        };
        if let Err(e) = read {
            let _ = send.send(Err(
                anyhow::Error::new(e).context(format!("{file}: cannot read"))
            ));
            return;
        }
        say_if_empty(&file, records);
    }
}

/// Windows of records as the reading thread sends them: a window is handed over when it is
/// full, when the input has ended, or [`WINDOW_WAIT`] after its first record arrived. After a
/// read error, the records before it come first, then the error.
pub struct Windows {
    receive: Receiver<anyhow::Result<Item>>,
    /// The reading thread, joined at the end: its panic must not pass for the input's end.
    reader: Option<JoinHandle<()>>,
    size: usize,
    /// Ctrl-C: a window waiting for input is handed over as it is.
    interrupted: Arc<AtomicBool>,
    failed: Option<anyhow::Error>,
    ended: bool,
}

impl Windows {
    /// Why the reading thread ended, when it ended by a panic.
    fn reader_failure(&mut self) -> Option<anyhow::Error> {
        let panic = self.reader.take()?.join().err()?;
        let why = (panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Some(anyhow::anyhow!(
            "reading the input stopped (a bug in neko, please report it): {why}"
        ))
    }
}

impl Iterator for Windows {
    type Item = anyhow::Result<Vec<Item>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        let mut window = Vec::new();
        let mut deadline: Option<Instant> = None;
        while !self.ended && window.len() < self.size {
            if self.interrupted.load(Ordering::SeqCst) {
                return Some(Ok(window));
            }
            // Checked now and then, so that Ctrl-C is seen while the input is silent.
            let wait = deadline.map_or(Duration::from_millis(200), |d| {
                d.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(200))
            });
            match self.receive.recv_timeout(wait) {
                Ok(Ok(item)) => {
                    deadline.get_or_insert_with(|| Instant::now() + WINDOW_WAIT);
                    window.push(item);
                }
                Ok(Err(e)) => {
                    self.ended = true;
                    self.failed = Some(e);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.ended = true;
                    self.failed = self.reader_failure();
                }
                Err(RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                }
            }
        }
        match (window.is_empty(), self.failed.take()) {
            (true, Some(e)) => Some(Err(e)),
            (true, None) => None,
            (false, failed) => {
                self.failed = failed;
                Some(Ok(window))
            }
        }
    }
}
