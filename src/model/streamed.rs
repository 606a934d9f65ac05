//! Safetensors weights read tensor by tensor with positioned reads instead of through a
//! memory map.
//!
//! candle's memory-mapped loader copies every tensor out of the map, and the map's file pages
//! stay resident until loading ends, so peak memory is the weights twice over (1,051 MiB for
//! SmolLM2's 513 MiB of f32). Reading each tensor into its own buffer keeps the peak at the
//! weights plus the largest tensor. Files are checked (`check::weights_open`) before this runs.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Error, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

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
}

impl ReadSafetensors {
    /// Reads the headers of `paths` (the shards of one checkpoint).
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
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
                    (Some(a), Some(b)) => {
                        (a.as_u64().ok_or_else(bad)?, b.as_u64().ok_or_else(bad)?)
                    }
                    _ => return Err(bad()),
                };
                // Two shards holding one tensor: which is meant is not ours to guess.
                if entries.contains_key(&name) {
                    return Err(Error::Msg(format!("{name}: in more than one weight file")));
                }
                entries.insert(
                    name,
                    Entry {
                        file: i,
                        dtype,
                        shape,
                        start: base + a,
                        len: b.saturating_sub(a) as usize,
                    },
                );
            }
            files.push(file);
        }
        Ok(Self { files, entries })
    }

    fn load(&self, name: &str, dev: &Device) -> Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| {
            Error::CannotFindTensor {
                path: name.to_string(),
            }
            .bt()
        })?;
        // An 8-byte aligned buffer, so the bytes can be read in place as any element type.
        let mut buf = vec![0u64; e.len.div_ceil(8)];
        let bytes: &mut [u8] = bytemuck_bytes(&mut buf, e.len);
        self.files[e.file]
            .read_exact_at(bytes, e.start)
            .map_err(Error::wrap)?;
        Tensor::from_raw_buffer(bytes, e.dtype, &e.shape, dev)
    }
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
