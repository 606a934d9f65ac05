//! Output records: one JSON line per input record, in input order, scoreable by `neko eval`.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::correct::Correction;
use crate::record::{Entry, Record, RecordError};
use crate::shard::Shard;

/// Where and why a record failed: enough to find it in the input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordFailure {
    pub file: String,
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// One output line. Field order is the order users read: id, task, prediction, best, output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputRecord {
    pub id: Value,
    pub task: Option<String>,
    /// The corrected text; the 1-best when the record failed and has one.
    pub prediction: Option<String>,
    /// The 1-best the correction started from.
    pub best: Option<String>,
    /// The reference (a list of them in a multi-reference set), passed through so the file can
    /// be scored directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The record's `source` (a sub-corpus or recogniser), passed through so that `neko eval
    /// --group-by source` can group the output as it groups the input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The segment's `start` and `end` in its audio, as the record gave them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<Value>,
    /// A NeMo manifest record's `audio_filepath`, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_filepath: Option<Value>,
    /// `fallback:<reason>` when the over-correction guard replaced the answer by the 1-best.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    /// How much likelier (log-probability, nats) the model finds its answer than what it
    /// changed (ASR: the answer with its word edits undone; else the 1-best), where the
    /// guard's margin check scored it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// How much likelier (nats) the corrector's base model, reading each text alone, finds the
    /// answer than its margin baseline, where the guard's base-model check scored it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_lm: Option<f64>,
    /// The answer as the model wrote it, where `--style follow` changed it: what the margin
    /// scored, and what `neko guard` checks again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<String>,
    /// What had to be cut to fit the model's context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Present only when the record could not be corrected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordFailure>,
}

/// The record's `output` as it was given: its reference, or its list of references.
fn references_value(record: &Record) -> Option<Value> {
    match record.references().as_slice() {
        [] => None,
        [one] => Some(Value::from(*one)),
        several => Some(Value::from(several.to_vec())),
    }
}

/// A margin as output lines carry it: to 1/1000 of a nat, as much as its float sums mean.
pub fn margin_digits(m: f64) -> f64 {
    (m * 1000.0).round() / 1000.0
}

impl OutputRecord {
    /// A corrected record.
    pub fn corrected(record: &Record, task: &str, c: Correction) -> Self {
        // An error an earlier step reported beside hypotheses is not lost with the correction.
        let earlier = record.error.as_ref().map(|e| {
            let said = match (e.as_str(), e["message"].as_str()) {
                (Some(s), _) | (None, Some(s)) => s.to_string(),
                (None, None) => e.to_string(),
            };
            format!("an earlier step reported: {said}")
        });
        let warning = match (c.warning, earlier) {
            (Some(w), Some(e)) => Some(format!("{w}; {e}")),
            (w, e) => w.or(e),
        };
        OutputRecord {
            prediction: Some(c.text),
            guard: c.guard.map(crate::guard::Reason::label),
            margin: c.margin,
            base_lm: c.base_lm,
            written: c.written,
            warning,
            ..Self::passed_through(record, Some(task.to_string()))
        }
    }

    /// A record that failed after it was read: it keeps its 1-best as the prediction.
    pub fn failed(record: &Record, task: Option<&str>, failure: RecordFailure) -> Self {
        let task = task.map(str::to_string).or_else(|| record.task.clone());
        OutputRecord {
            prediction: record.best().map(str::to_string),
            error: Some(failure),
            ..Self::passed_through(record, task)
        }
    }

    /// What every line of a readable record carries from it (its id, 1-best, reference, source
    /// and timing), with nothing of the correction yet: one place for fields passed through.
    fn passed_through(record: &Record, task: Option<String>) -> Self {
        OutputRecord {
            id: record.id.clone(),
            task,
            prediction: None,
            best: record.best().map(str::to_string),
            output: references_value(record),
            source: record.source.clone(),
            start: record.start.clone(),
            end: record.end.clone(),
            audio_filepath: record.audio_filepath.clone(),
            guard: None,
            margin: None,
            base_lm: None,
            written: None,
            warning: None,
            error: None,
        }
    }

    /// A record that could not be read at all.
    pub fn unreadable(entry: &Entry, file: &str, err: &RecordError) -> Self {
        OutputRecord {
            id: entry.id(),
            task: err.task.clone(),
            // Its 1-best as the prediction where it is known, as for a record that fails later.
            prediction: err.best.clone(),
            best: err.best.clone(),
            output: None,
            source: None,
            start: None,
            end: None,
            audio_filepath: err.audio_filepath.as_deref().cloned(),
            guard: None,
            margin: None,
            base_lm: None,
            written: None,
            warning: None,
            error: Some(RecordFailure {
                file: file.to_string(),
                line: entry.line,
                field: err.field.clone(),
                message: err.message.clone(),
            }),
        }
    }
}

/// Where output lines go: stdout, or `FILE.partial` renamed to `FILE` when the run completes,
/// so a reader never takes a half-written file for a finished one and an interrupted run can
/// be resumed from what it wrote.
pub struct OutputSink {
    out: Box<dyn Write>,
    paths: Option<(PathBuf, PathBuf)>,
    /// The partial file itself, to force its lines to disk before it is renamed into place.
    file: Option<File>,
    /// How the lines were made: `FILE.partial.sig` while the run writes, `FILE.sig` after.
    signature: Option<String>,
    /// Ids already written by an earlier run, with how many times (ids may repeat).
    /// Per id, the position and 1-best of each line the earlier run wrote, in order (`None`:
    /// an error line).
    done: HashMap<String, VecDeque<(usize, Option<String>)>>,
    /// Ids whose earlier line has another 1-best than the input record claiming it.
    mismatched: Vec<String>,
    /// The position of the last line claimed, and the first id claimed out of input order.
    claimed: Option<usize>,
    disordered: Option<String>,
    /// Whether a record not written by the earlier run has been seen.
    gap: bool,
    resumed: usize,
    /// Whether the partial file is a copy of a finished FILE made by this resume.
    copied: bool,
}

impl OutputSink {
    /// Lines to standard output.
    pub fn stdout() -> Self {
        OutputSink {
            out: Box::new(BufWriter::new(std::io::stdout().lock())),
            paths: None,
            file: None,
            signature: None,
            done: HashMap::new(),
            mismatched: Vec::new(),
            claimed: None,
            disordered: None,
            gap: false,
            resumed: 0,
            copied: false,
        }
    }

    /// A fresh run writing `dest` (through `dest.partial`), with the signature of how its
    /// lines are made, if they have one.
    pub fn create(dest: &Path, signature: Option<&str>) -> anyhow::Result<Self> {
        let partial = partial_path(dest);
        let f = open_locked(&partial)?;
        f.set_len(0)
            .with_context(|| format!("{}: cannot truncate", partial.display()))?;
        if signature.is_none() {
            // An earlier run's signature would vouch for these lines.
            for stale in [signature_path(&partial), signature_path(dest)] {
                let _ = std::fs::remove_file(stale);
            }
        }
        Self::file(f, partial, dest, signature)
    }

    /// Continues the run that was writing `dest`: keeps the complete lines of `dest.partial`
    /// (or of `dest`, when the earlier run finished) and remembers their ids. Refused when
    /// that run had another signature, or its lines are not of this run's shape: `shard` is
    /// this run's (the whole input's record count and fingerprint) when it writes a shard.
    pub fn resume(
        dest: &Path,
        signature: &str,
        shard: Option<(Shard, usize, &str)>,
    ) -> anyhow::Result<Self> {
        let partial = partial_path(dest);
        let from_partial = partial.exists();
        // The lock first: a run still writing the file is refused as such, whatever it ran.
        let f = open_locked(&partial)?;
        let resumed = Self::resume_into(f, &partial, dest, from_partial, signature, shard);
        if resumed.is_err() && !from_partial {
            // Leave no partial file behind for a run that never started: a later --resume
            // would take it for this run's and ask for its missing signature.
            let _ = std::fs::remove_file(signature_path(&partial));
            let _ = std::fs::remove_file(&partial);
        }
        resumed
    }

    fn resume_into(
        mut f: File,
        partial: &Path,
        dest: &Path,
        from_partial: bool,
        signature: &str,
        shard: Option<(Shard, usize, &str)>,
    ) -> anyhow::Result<Self> {
        // The earlier run's lines: still in FILE.partial, or in FILE when it had finished.
        let earlier = if from_partial { partial } else { dest };
        check_resume(earlier, signature)?;
        let text = if from_partial {
            let mut text = Vec::new();
            f.read_to_end(&mut text).map(|_| text)
        } else {
            match std::fs::read(dest) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                read => read,
            }
        };
        let text = text.with_context(|| format!("{}: cannot read", earlier.display()))?;
        // A line cut by the interruption is dropped and redone.
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut done: HashMap<String, VecDeque<(usize, Option<String>)>> = HashMap::new();
        for (n, line) in text[..complete].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // Only the last line can be cut; one broken before it would be redone after the
            // records that follow it, out of input order.
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                anyhow::bail!(
                    "{}:{}: not a complete output line: cannot resume in input order; \
                     start over without --resume",
                    earlier.display(),
                    n + 1
                );
            };
            if let Some(why) = other_shape(&v, shard) {
                anyhow::bail!(
                    "{}:{}: {why}; cannot resume it: start over without --resume",
                    earlier.display(),
                    n + 1
                );
            }
            let best = v["best"].as_str().map(str::to_string);
            done.entry(id_key(&v["id"]))
                .or_default()
                .push_back((n, best));
        }
        let resumed = done.values().map(VecDeque::len).sum();
        // The complete lines stay as they are; the cut one goes. When the earlier run had
        // finished, its lines are copied into the partial file first.
        let kept = if from_partial {
            Ok(())
        } else {
            f.write_all(&text[..complete])
        };
        kept.and_then(|()| f.set_len(complete as u64))
            .and_then(|()| f.seek(std::io::SeekFrom::End(0)).map(|_| ()))
            .with_context(|| format!("{}: cannot rewrite", partial.display()))?;
        let mut sink = Self::file(f, partial.to_path_buf(), dest, Some(signature))?;
        sink.done = done;
        sink.resumed = resumed;
        sink.copied = !from_partial;
        Ok(sink)
    }

    /// Gives up a resume refused after it began: the partial file (and its signature) that it
    /// copied from a finished FILE goes, which leaves FILE as it was; an earlier run's partial
    /// file stays, to be resumed.
    pub fn abandon(self) {
        let OutputSink {
            out, paths, copied, ..
        } = self;
        drop(out);
        if let (true, Some((partial, _))) = (copied, paths) {
            let _ = std::fs::remove_file(signature_path(&partial));
            let _ = std::fs::remove_file(&partial);
        }
    }

    fn file(
        f: File,
        partial: PathBuf,
        dest: &Path,
        signature: Option<&str>,
    ) -> anyhow::Result<Self> {
        if let Some(sig) = signature {
            // What a later --resume checks its settings against.
            write_signature(&partial, sig, false)?;
        }
        let file = f
            .try_clone()
            .with_context(|| format!("{}: cannot open", partial.display()))?;
        Ok(OutputSink {
            out: Box::new(BufWriter::new(f)),
            paths: Some((partial, dest.to_path_buf())),
            file: Some(file),
            signature: signature.map(str::to_string),
            done: HashMap::new(),
            mismatched: Vec::new(),
            claimed: None,
            disordered: None,
            gap: false,
            resumed: 0,
            copied: false,
        })
    }

    /// Records carried over from an earlier run.
    pub fn resumed(&self) -> usize {
        self.resumed
    }

    /// Whether a record with this id was written by the earlier run (each written line
    /// accounts for one input record with that id, in order). `best` is the record's 1-best:
    /// a line of the same id with another 1-best was written from another input
    /// ([`OutputSink::mismatched`]).
    pub fn already_written(&mut self, id: &Value, best: Option<&str>) -> bool {
        let key = id_key(id);
        let Some((at, then)) = self.done.get_mut(&key).and_then(VecDeque::pop_front) else {
            self.gap = true;
            return false;
        };
        // An earlier run writes a prefix of the input in order: a written line after an
        // unwritten record, or before the line claimed last, is another order.
        let behind = self.claimed.is_some_and(|last| at < last);
        if (self.gap || behind) && self.disordered.is_none() {
            self.disordered = Some(key.clone());
        }
        self.claimed = Some(at);
        if let (Some(then), Some(now)) = (then, best) {
            if then != now {
                self.mismatched.push(key);
            }
        }
        true
    }

    /// The first id whose earlier line stands out of input order (a hand-edited file: the
    /// resumed output would keep that order).
    pub fn disordered(&self) -> Option<&str> {
        self.disordered.as_deref()
    }

    /// Ids whose earlier line was written from a record with another 1-best.
    pub fn mismatched(&self) -> &[String] {
        &self.mismatched
    }

    /// Ids of the earlier run's lines that no input record has claimed through
    /// [`OutputSink::already_written`]: lines of another input.
    pub fn unclaimed(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = (self.done.iter())
            .filter(|(_, lines)| !lines.is_empty())
            .map(|(id, _)| id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Writes one output line.
    pub fn write(&mut self, rec: &impl Serialize) -> std::io::Result<()> {
        let written = serde_json::to_writer(&mut self.out, rec)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        written.map_err(|e| self.named(e))
    }

    /// `e` with what could not be written named (a full disk's "No space left on device"
    /// alone names nothing); its kind is kept, so a closed pipe is still told apart.
    fn named(&self, e: std::io::Error) -> std::io::Error {
        let target = match &self.paths {
            Some((partial, _)) => partial.display().to_string(),
            None => "standard output".to_string(),
        };
        std::io::Error::new(e.kind(), format!("{target}: cannot write: {e}"))
    }

    /// The buffered writer under the sink, for lines that are already JSON (`neko merge`).
    pub fn writer(&mut self) -> &mut dyn Write {
        &mut *self.out
    }

    /// Pushes written lines out, so pipelines see results as they come.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush().map_err(|e| self.named(e))
    }

    /// What to tell the user when the run is interrupted, `written` records into it.
    pub fn interrupted_message(&self, written: usize) -> String {
        let earlier = match self.resumed {
            0 => String::new(),
            n => format!(" ({n} of them by the run it resumed)"),
        };
        let written = written + self.resumed;
        match &self.paths {
            Some((partial, dest)) => format!(
                "neko: interrupted: {written} records written to {}{earlier}; run the same command with --resume to continue into {}",
                partial.display(),
                dest.display()
            ),
            None => format!("neko: interrupted after {written} records (use -o FILE to make runs resumable)"),
        }
    }

    /// Completes the run: flushes and renames `FILE.partial` to `FILE`, and its signature
    /// to `FILE.sig`.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        // Renamed while still open, so the lock is held until the file is in place.
        if let Some((partial, dest)) = self.paths.take() {
            // On disk before the rename: a machine that stops soon after must not leave a
            // short FILE that reads as finished.
            if let Some(f) = &self.file {
                f.sync_all()
                    .with_context(|| format!("{}: cannot write to disk", partial.display()))?;
            }
            std::fs::rename(&partial, &dest)
                .with_context(|| format!("{}: cannot rename into place", dest.display()))?;
            if let Some(sig) = &self.signature {
                write_signature(&dest, sig, true)?;
                // Only read beside a FILE.partial, so one that cannot be removed does no harm.
                let _ = std::fs::remove_file(signature_path(&partial));
            }
            sync_folder(&dest);
        }
        Ok(())
    }
}

/// Opens `FILE.partial` for this run alone, without truncating it: an exclusive lock, held
/// until the run ends, keeps a second run on the same FILE from writing into it (two runs
/// would interleave and truncate each other's lines). Where the file system has no locks,
/// the run goes on with a warning.
fn open_locked(partial: &Path) -> anyhow::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(partial)
        .with_context(|| format!("{}: cannot create", partial.display()))?;
    match f.try_lock() {
        // The run that held the lock may have renamed this file into place in between: then
        // the lock is on its finished output, and the partial path is opened again.
        Ok(()) if !still_at(&f, partial) => open_locked(partial),
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => anyhow::bail!(
            "{}: another neko run is writing it; wait for that run to end, or write to another file",
            partial.display()
        ),
        Err(TryLockError::Error(e)) => {
            crate::say!(
                "neko: warning: {}: cannot lock ({e}); do not run two commands on one output file",
                partial.display()
            );
            Ok(f)
        }
    }
}

/// Forces the renames in `file`'s folder to disk, where the platform can (best effort: the
/// data are synced already, and a folder that cannot be opened loses only the rename).
fn sync_folder(file: &Path) {
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(f) = File::open(folder) {
        let _ = f.sync_all();
    }
}

/// Whether `path` still names the open file `f`.
#[cfg(unix)]
fn still_at(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn still_at(_: &File, _: &Path) -> bool {
    true
}

/// Writes `signature` as the first line of `FILE.sig` beside `dest`, so `neko eval FILE` can
/// say how the predictions were made; with `digest`, a second line holds `dest`'s sha256
/// (`file-sha256:HEX`), which ties the signature to the file: a FILE written over later (`>
/// FILE` by another run) no longer matches its stale `.sig`.
fn write_signature(dest: &Path, signature: &str, digest: bool) -> anyhow::Result<()> {
    let sig = signature_path(dest);
    let mut text = format!("{signature}\n");
    if digest {
        let hex = file_sha256(dest).with_context(|| format!("{}: cannot read", dest.display()))?;
        text += &format!("{DIGEST_PREFIX}{hex}\n");
    }
    // Whole or not at all: an empty `.sig` (a disk full at the end) read as a signature of
    // other settings.
    let mut name = sig.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    let tmp = sig.with_file_name(name);
    let mut f = File::create(&tmp).with_context(|| format!("{}: cannot write", sig.display()))?;
    (f.write_all(text.as_bytes()))
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &sig))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("{}: cannot write", sig.display()))
}

const DIGEST_PREFIX: &str = "file-sha256:";

/// A `FILE.sig` as read: the signature line, and FILE's sha256 where the run that finished
/// FILE wrote it (a running run's `FILE.partial.sig`, and older versions' files, have none).
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureFile {
    pub signature: String,
    pub sha256: Option<String>,
}

impl SignatureFile {
    /// Whether it is the signature of `file` as it is: its digest matches, or it has none to
    /// tell (a `.partial.sig`, an older version's). A `.sig` beside a FILE written over since
    /// (`> FILE`) speaks for other lines.
    pub fn is_of(&self, file: &Path) -> bool {
        match &self.sha256 {
            Some(want) => file_sha256(file).ok().as_ref() == Some(want),
            None => true,
        }
    }
}

/// Reads the `FILE.sig` at `sig`.
pub fn read_signature(sig: &Path) -> std::io::Result<SignatureFile> {
    let text = std::fs::read_to_string(sig)?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    // An empty file signs nothing: read as none, not as a signature of other settings.
    let signature = lines
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "empty"))?
        .to_string();
    let sha256 = lines.find_map(|l| l.strip_prefix(DIGEST_PREFIX).map(str::to_string));
    Ok(SignatureFile { signature, sha256 })
}

/// The sha256 of the file at `path`, in hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    std::io::copy(&mut File::open(path)?, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A signature's `(name, value)` fields in order: a signature is `|`-separated `name:value`
/// fields after its kind (`correct`, whose value is empty).
pub fn signature_fields(signature: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in signature.trim().split('|') {
        // A `|` inside a value (`stop:["|"]`) starts no field: only `name:` does.
        let name = part
            .split_once(':')
            .map(|(k, _)| k)
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        match (name, out.last_mut()) {
            (None, Some((_, v))) => {
                v.push('|');
                v.push_str(part);
            }
            _ => {
                let (k, v) = part.split_once(':').unwrap_or((part, ""));
                out.push((k.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// The fields of two signatures that differ, `name: then → now` ([`signature_fields`]; a field
/// one side lacks is `none` there). Empty when they match.
pub fn signature_fields_changed(then: &str, now: &str) -> Vec<String> {
    let (a, b) = (signature_fields(then), signature_fields(now));
    let value = |fs: &[(String, String)], k: &str| {
        (fs.iter().find(|(n, _)| n == k)).map_or("none".to_string(), |(_, v)| v.clone())
    };
    let mut names: Vec<&str> = Vec::new();
    for (k, _) in a.iter().chain(&b) {
        if !names.contains(&k.as_str()) {
            names.push(k);
        }
    }
    (names.into_iter())
        .filter_map(|k| {
            let (x, y) = (value(&a, k), value(&b, k));
            (x != y).then(|| format!("{k}: {x} → {y}"))
        })
        .collect()
}

/// Why an earlier output line cannot be continued by this run (`shard`: this run's whole-input
/// record count and fingerprint, when it writes a shard), if it cannot: a shard's lines carry
/// their place in the whole input, and `neko merge` refuses shards of different inputs, so a
/// resume that mixed them would end in a shard that can never be merged.
fn other_shape(line: &Value, shard: Option<(Shard, usize, &str)>) -> Option<String> {
    let sharded = line.get("index").is_some();
    match shard {
        None if sharded => {
            Some("a shard's line (it has `index`), and this run writes no shard".to_string())
        }
        None => None,
        Some(_) if !sharded => {
            Some("a line without `index`, and this run writes a shard (--shard)".to_string())
        }
        Some((_, of, input)) if line["of"] != of || line["input"] != input => Some(format!(
            "written from another input (of {}, input {}; this input: of {of}, input {input})",
            line["of"],
            line["input"].as_str().unwrap_or("none")
        )),
        // Another shard's file (an off-by-one job array index) has the same input.
        Some((shard, _, _))
            if !line["index"]
                .as_u64()
                .is_some_and(|k| shard.contains(k as usize)) =>
        {
            Some(format!(
                "a line of another shard (index {}), and this run writes shard {shard}",
                line["index"]
            ))
        }
        Some(_) => None,
    }
}

/// Refuses to resume a run that was made with other settings (another model, guard or
/// prompt): its lines and the new ones would be one file under one signature. The earlier
/// run's signature is `FILE.partial.sig`, written when it started, or `FILE.sig` when it had
/// finished (`earlier` is that file). A file without either is refused too.
fn check_resume(earlier: &Path, signature: &str) -> anyhow::Result<()> {
    use std::io::ErrorKind::{InvalidData, NotFound};
    let sig = signature_path(earlier);
    let read = read_signature(&sig);
    // (A signature beside a FILE since deleted is handled below: a fresh start.)
    if earlier.exists() && read.as_ref().is_ok_and(|s| !s.is_of(earlier)) {
        anyhow::bail!(
            "{}: cannot resume: {} was written over since it was signed (a run writing to it without -o?), so nothing says how its lines were made; start over without --resume",
            sig.display(),
            earlier.display()
        );
    }
    match read.map(|s| s.signature) {
        Ok(then) if then == signature => Ok(()),
        // A signature left behind by a FILE since deleted vouches for nothing: a fresh start.
        Ok(_) if !earlier.exists() => Ok(()),
        Ok(then) => {
            let fields = signature_fields_changed(&then, signature);
            // Another neko wrote it: the same command with this one cannot continue it.
            let advice = match fields.iter().any(|f| f.starts_with("neko: ")) {
                true => "finish it with the neko that began it (--resume), or start over without --resume",
                false => "run the earlier command again with --resume, or start over without --resume",
            };
            anyhow::bail!(
                "{}: cannot resume: {} was written with other settings ({})\n  then: {}\n  now:  {signature}\n{advice}",
                sig.display(),
                earlier.display(),
                fields.join(", "),
                then.trim()
            )
        }
        Err(e) if matches!(e.kind(), NotFound | InvalidData) => match earlier.exists() {
            // Without it any JSON file would pass for this run's output.
            true => anyhow::bail!(
                "{}: cannot resume: {} is {}, so nothing says that neko wrote {0} with \
                 these settings; start over without --resume",
                earlier.display(),
                sig.display(),
                if e.kind() == NotFound {
                    "missing"
                } else {
                    "empty (its writing was cut short)"
                }
            ),
            false => Ok(()),
        },
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", sig.display())),
    }
}

/// `FILE.sig` beside `FILE`: the signature of the run that wrote it.
pub fn signature_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "out".into());
    name.push(".sig");
    dest.with_file_name(name)
}

/// `FILE.partial` beside `FILE`.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "out".into());
    name.push(".partial");
    dest.with_file_name(name)
}

fn id_key(id: &Value) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::signature_fields_changed;

    #[test]
    fn signature_fields_changed_names_each_field_once() {
        let then = r#"correct|model:fp-1|decode:greedy|stop:["|"]|neko:0.1.0"#;
        let now = r#"correct|model:fp-2|decode:greedy|stop:["\n"]|style:follow|neko:0.1.0"#;
        assert_eq!(
            signature_fields_changed(then, now),
            [
                "model: fp-1 → fp-2",
                r#"stop: ["|"] → ["\n"]"#,
                "style: none → follow"
            ]
        );
        assert!(signature_fields_changed(then, &format!("{then}\n")).is_empty());
    }
}
