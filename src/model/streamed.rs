//! Safetensors weights read tensor by tensor with positioned reads instead of through a
//! memory map.
//!
//! candle's memory-mapped loader copies every tensor out of the map, and the map's file pages
//! stay resident until loading ends, so peak memory is the weights twice over (1,051 MiB for
//! SmolLM2's 513 MiB of f32). Reading each tensor into its own buffer keeps the peak at the
//! weights plus the largest tensor. Files are checked (`check::weights_open`) before this runs.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Error, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::ModelError;

/// Where one tensor's bytes are.
struct Entry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    start: u64,
    len: usize,
}

/// The tensors of one or more safetensors files, read on demand.
pub struct ReadSafetensors {
    files: Vec<File>,
    entries: HashMap<String, Entry>,
    /// The names read so far, shared with [`ReadSafetensors::usage`]'s handle.
    read: Arc<Mutex<HashSet<String>>>,
}

/// Which of a checkpoint's tensors a load has read; it outlives the backend that a
/// `VarBuilder` takes ownership of.
pub struct Usage {
    names: Vec<String>,
    read: Arc<Mutex<HashSet<String>>>,
}

impl Usage {
    /// The tensors never read, sorted.
    pub fn unread(&self) -> Vec<String> {
        let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = self
            .names
            .iter()
            .filter(|n| !read.contains(*n))
            .cloned()
            .collect();
        out.sort();
        out
    }
}

impl ReadSafetensors {
    /// Reads the headers of `paths` (the shards of one checkpoint).
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let (file, header) = read_header(path)?;
            for (name, entry) in header {
                // Two shards holding one tensor: which is meant is not ours to guess.
                if entries.contains_key(&name) {
                    return Err(Error::Msg(format!("{name}: in more than one weight file")));
                }
                entries.insert(name, Entry { file: i, ..entry });
            }
            files.push(file);
        }
        Ok(Self {
            files,
            entries,
            read: Arc::default(),
        })
    }

    /// Puts the tensors of `path` (an adapter) in place of the checkpoint's: each must exist
    /// there with the same shape. `what` names the checkpoint in messages.
    pub fn overlay(&mut self, path: &Path, what: &str) -> std::result::Result<(), ModelError> {
        let fail = |message: String| ModelError::files(path, message);
        let (file, header) = read_header(path).map_err(|e| fail(e.to_string()))?;
        let file_index = self.files.len();
        for (name, entry) in header {
            let Some(old) = self.entries.get(&name) else {
                return Err(fail(format!(
                    "tensor `{name}` is not in the model {what} (an adapter of another model?)"
                )));
            };
            if old.shape != entry.shape {
                return Err(fail(format!(
                    "tensor `{name}` has shape {:?}, the model {what} {:?} (an adapter of \
                     another upcycling?)",
                    entry.shape, old.shape
                )));
            }
            let entry = Entry {
                file: file_index,
                ..entry
            };
            self.entries.insert(name, entry);
        }
        self.files.push(file);
        Ok(())
    }

    /// A handle that tells, after loading, which tensors were never read.
    pub fn usage(&self) -> Usage {
        Usage {
            names: self.entries.keys().cloned().collect(),
            read: self.read.clone(),
        }
    }

    fn load(&self, name: &str, dev: &Device) -> Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| {
            Error::CannotFindTensor {
                path: name.to_string(),
            }
            .bt()
        })?;
        self.read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        // An 8-byte aligned buffer, so the bytes can be read in place as any element type.
        let mut buf = vec![0u64; e.len.div_ceil(8)];
        let bytes: &mut [u8] = bytemuck_bytes(&mut buf, e.len);
        self.files[e.file]
            .read_exact_at(bytes, e.start)
            .map_err(Error::wrap)?;
        Tensor::from_raw_buffer(bytes, e.dtype, &e.shape, dev)
    }
}

/// Opens one safetensors file and reads where each of its tensors is (file index 0).
fn read_header(path: &Path) -> Result<(File, Vec<(String, Entry)>)> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact_at(&mut len, 0)
        .map_err(|e| io_error(path, e))?;
    let n = u64::from_le_bytes(len) as usize;
    let mut header = vec![0u8; n];
    file.read_exact_at(&mut header, 8)
        .map_err(|e| io_error(path, e))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(Error::wrap)?;
    let base = 8 + n as u64;
    let mut out = Vec::with_capacity(header.len());
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let bad = || Error::Msg(format!("{}: bad header entry `{name}`", path.display()));
        let dtype = match info["dtype"].as_str().ok_or_else(bad)? {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "F64" => DType::F64,
            "U8" => DType::U8,
            "U32" => DType::U32,
            "I64" => DType::I64,
            other => return Err(Error::Msg(format!("{name}: unsupported dtype {other}"))),
        };
        let shape = info["shape"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize).ok_or_else(bad))
            .collect::<Result<Vec<_>>>()?;
        let offsets = info["data_offsets"].as_array().ok_or_else(bad)?;
        let (a, b) = match (offsets.first(), offsets.get(1)) {
            (Some(a), Some(b)) => (a.as_u64().ok_or_else(bad)?, b.as_u64().ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        let entry = Entry {
            file: 0,
            dtype,
            shape,
            start: base + a,
            len: b.saturating_sub(a) as usize,
        };
        out.push((name, entry));
    }
    Ok((file, out))
}

/// The first `len` bytes of a `u64` buffer.
fn bytemuck_bytes(buf: &mut [u64], len: usize) -> &mut [u8] {
    // Safety: u8 has no alignment or validity requirements, and `len <= 8 * buf.len()`.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), len) }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Msg(format!("{}: {e}", path.display()))
}

impl SimpleBackend for ReadSafetensors {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let tensor = self.load(name, dev)?.to_dtype(dtype)?;
        if tensor.shape() != &s {
            Err(Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: tensor.shape().clone(),
            }
            .bt())?
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.load(name, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}
