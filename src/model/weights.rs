//! Where the decoder's tensors come from: safetensors through a `VarBuilder`, or a GGUF file's
//! quantised tensors. Both are addressed by Hugging Face names, so one decoder serves both, and
//! projections come out full-precision ([`Proj::Full`], [`Proj::Transposed`]) or quantised
//! ([`Proj::Quantized`]).

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Shape, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};

use super::gguf::GgufTensors;

/// A bias-free projection `x ↦ x Wᵀ`, `W` of shape `(out, in)`.
#[derive(Debug, Clone)]
pub enum Proj {
    /// f32 / bf16 / f16 weights.
    Full(Linear),
    /// Frozen f32 / bf16 weights on the CPU, stored as `Wᵀ`, contiguous `(in, out)`.
    /// Why: gemm multiplies `x Wᵀ` with `W` row-major by first repacking all of `W`, at every
    /// call; for the few rows of a decode step (a batch's live rows, an expert's share of them)
    /// that costs more than the product. With `Wᵀ` stored it needs no repacking: a
    /// `(16, 1536) × (1536, 576)` product took 0.26 ms instead of 2.0 ms here, the same result
    /// to the bit in f32 from two rows up (`Proj::for_few_rows`).
    Transposed(Tensor),
    /// ggml-quantised weights (from GGUF, or quantised at load): candle's quantised kernels.
    Quantized(QMatMul),
}

impl Proj {
    /// This projection as decoding multiplies it fastest: frozen f32 and bf16 weights on the
    /// CPU become [`Proj::Transposed`]. Trainable weights stay as they are (the optimiser
    /// updates their storage in place, which a transposed copy would not see), and so do GPU
    /// weights (cuBLAS reads either layout), quantised ones, and f16 ones: for a single row gemm
    /// multiplies f16 `Wᵀ` on a path that rounds to f16 at every step of the sum (errors of
    /// 0.02-0.06 on 576-1,536-wide products, against 0.001-0.002 with `W` as stored).
    pub fn for_few_rows(self) -> Result<Proj> {
        match self {
            Proj::Full(l)
                if l.weight().device().is_cpu()
                    && !l.weight().track_op()
                    && l.weight().dtype() != DType::F16 =>
            {
                Ok(Proj::Transposed(l.weight().t()?.contiguous()?))
            }
            other => Ok(other),
        }
    }
}

impl Module for Proj {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            // Training through a frozen weight: skip the weight's gradient.
            Proj::Full(l)
                if xs.track_op()
                    && !l.weight().track_op()
                    && xs.device().is_cpu()
                    && xs.dtype() == DType::F32
                    && l.weight().dtype() == DType::F32 =>
            {
                xs.contiguous()?.apply_op1(FrozenMatmul(l.weight().t()?))
            }
            Proj::Full(l) => l.forward(xs),
            Proj::Transposed(wt) if xs.track_op() && xs.dtype() == DType::F32 => {
                xs.contiguous()?.apply_op1(FrozenMatmul(wt.clone()))
            }
            Proj::Transposed(wt) => times_transposed(xs, wt),
            Proj::Quantized(QMatMul::QTensor(w))
                if xs.device().is_cpu()
                    && gemm_from_rows(w.dtype(), w.shape())
                        .is_some_and(|rows| xs.elem_count() / w.shape().dims()[1] >= rows) =>
            {
                // Many rows: dequantised weights through gemm (`gemm_from_rows`).
                let wt = w.dequantize(&Device::Cpu)?.t()?;
                times_transposed(&xs.to_dtype(DType::F32)?, &wt)?.to_dtype(xs.dtype())
            }
            Proj::Quantized(q) => {
                // The quantised CPU kernel wants contiguous rows.
                let y = q.forward(&xs.contiguous()?)?;
                if y.dtype() == xs.dtype() {
                    Ok(y)
                } else {
                    y.to_dtype(xs.dtype())
                }
            }
        }
    }
}

/// `x Wᵀ` given `Wᵀ` (`(in, out)`, contiguous or a view) as `Linear` computes it: one 2-D
/// product over all leading dimensions of `xs`.
fn times_transposed(xs: &Tensor, wt: &Tensor) -> Result<Tensor> {
    let (in_dim, out_dim) = wt.dims2()?;
    let mut out = xs.dims().to_vec();
    *out.last_mut()
        .expect("a projection's input has a last dimension") = out_dim;
    xs.contiguous()?
        .reshape((xs.elem_count() / in_dim, in_dim))?
        .matmul(wt)?
        .reshape(out)
}

/// From how many rows on a product with a projection stored as `t` of `shape` (out, in) is
/// faster dequantised and multiplied by gemm than by candle's quantised CPU kernel (`None`:
/// never). Measured with SmolLM2's projections and 4,096 × 4,096 ones, one thread
/// (docs/speed.md): candle's q4_1, q5_0 and q5_1 dot products have no SIMD path on x86, and
/// from 16 rows on gemm is 1.9-9 times faster (at 8 rows 1-5 times: a wash for large weights);
/// q4_0's, and q8_0's where the width is not a multiple of 256, are SIMD but untiled, and from
/// 64 rows on gemm is 1.1-4 times faster (at multiples of 256 candle repacks q8_0, q4k and q6k
/// for tiled kernels, with AVX-512 VNNI or AVX-VNNI, that beat gemm). For fewer rows, a decode step of a few records,
/// the quantised kernel, reading a quarter of the bytes, is as fast or faster. The kernel and
/// gemm use every thread, the dequantisation one (bound by memory: split among two threads it
/// gained 1.2-1.5×), so the counts grow with the threads: at 2 a 2,048-wide Q4_1 model's decode
/// step took 66 ms through the kernel at 7 rows and 125 ms through gemm at 8 (a review's
/// measurement), level at 16, gemm 2× faster at 32. The dequantised weight lives for the call
/// only, 4 bytes a weight: above `GEMM_MAX_WEIGHTS` the kernel stays. Elsewhere than x86 (NEON
/// has kernels of its own, not measured here): never.
fn gemm_from_rows(t: GgmlDType, shape: &Shape) -> Option<usize> {
    let &[out_dim, in_dim] = shape.dims() else {
        return None;
    };
    if !cfg!(target_arch = "x86_64") || out_dim * in_dim > GEMM_MAX_WEIGHTS {
        return None;
    }
    let rows = match t {
        GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => 16,
        GgmlDType::Q4_0 => 64,
        GgmlDType::Q8_0 if !in_dim.is_multiple_of(256) => 64,
        _ => return None,
    };
    Some(rows * rayon::current_num_threads())
}

/// The environment variables with which candle 0.11 lowers its x86 kernel tier, when set to 1.
pub const CANDLE_KERNEL_ENV: [&str; 2] = ["MISTRALRS_FORCE_AVX2", "MISTRALRS_FORCE_AVXVNNI"];

/// Whether `name` is set as candle reads it: to `1`.
pub fn kernel_env_set(name: &str) -> bool {
    std::env::var(name).as_deref() == Ok("1")
}

/// The tier of candle's x86 quantised kernels this process runs, as candle 0.11 chooses it
/// (`repack_x86::level`, private there): `avx512vnni`, `avxvnni`, `avx2` or `none`, lowered by
/// `MISTRALRS_FORCE_AVX2=1` or `MISTRALRS_FORCE_AVXVNNI=1`. Tiled tiers quantise a product's
/// activations otherwise than the plain kernels, so the tier can change answers.
#[cfg(target_arch = "x86_64")]
pub fn x86_kernel_tier() -> &'static str {
    use std::arch::is_x86_feature_detected as has;
    let [avx2_only, vnni] = CANDLE_KERNEL_ENV.map(kernel_env_set);
    if !avx2_only && !vnni && has!("avx512f") && has!("avx512vnni") {
        "avx512vnni"
    } else if !avx2_only && (vnni || has!("avxvnni")) && has!("avx2") {
        "avxvnni"
    } else if has!("avx2") && has!("fma") {
        "avx2"
    } else {
        "none"
    }
}

/// The largest weight dequantised for a call: 64 Mi weights, 256 MiB in f32 (a Mixtral 8×7B
/// expert, 14,336 × 4,096, is 56 Mi; SmolLM2's LM head 27 Mi; a 128k-token vocabulary's head
/// at width 4,096, 512 Mi, stays with the kernel).
const GEMM_MAX_WEIGHTS: usize = 64 << 20;

/// `x Wᵀ` (the tensor held is `Wᵀ`, shape `(in, out)`, contiguous or a view) whose backward
/// returns the input's gradient only. candle's matmul backward also computes the weight's
/// gradient, whether or not the weight needs one: for a frozen weight (the base under
/// low-rank experts) that is about a third of the backward work thrown away. CPU, f32.
struct FrozenMatmul(Tensor);

impl candle_core::CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, Shape)> {
        let x = match (storage, layout.contiguous_offsets()) {
            (candle_core::CpuStorage::F32(v), Some((start, end))) => {
                Tensor::from_slice(&v[start..end], layout.shape(), &Device::Cpu)?
            }
            _ => candle_core::bail!("frozen-matmul: contiguous f32 input expected"),
        };
        let y = x.broadcast_matmul(&self.0)?;
        let shape = y.shape().clone();
        let data = y.flatten_all()?.to_vec1::<f32>()?;
        Ok((candle_core::CpuStorage::F32(data), shape))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.broadcast_matmul(&self.0.t()?)?))
    }
}

/// Token embeddings, looked up full-precision or dequantised row by row.
#[derive(Debug, Clone)]
pub enum TokenEmbedding {
    Full(Embedding),
    /// A quantised table: only the looked-up rows are dequantised, and the same table serves
    /// as the tied LM head, so a GGUF model keeps its embeddings at quantised size.
    Quantized {
        table: Arc<QTensor>,
        dtype: DType,
    },
}

impl TokenEmbedding {
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            TokenEmbedding::Full(e) => e.forward(ids),
            TokenEmbedding::Quantized { table, dtype } => table.embedding(ids)?.to_dtype(*dtype),
        }
    }

    /// The LM head that shares these weights (tied embeddings).
    pub fn tied_head(&self) -> Result<Proj> {
        Ok(match self {
            TokenEmbedding::Full(e) => Proj::Full(Linear::new(e.embeddings().clone(), None)),
            TokenEmbedding::Quantized { table, .. } => {
                Proj::Quantized(QMatMul::from_arc(table.clone())?)
            }
        })
    }
}

#[derive(Clone)]
enum Store<'a> {
    Safetensors(VarBuilder<'a>),
    Gguf {
        tensors: Arc<GgufTensors>,
        prefix: String,
        dtype: DType,
        device: Device,
    },
}

/// A view of a checkpoint's tensors under a name prefix, like `VarBuilder`, that also yields
/// quantised projections.
#[derive(Clone)]
pub struct Weights<'a> {
    store: Store<'a>,
    /// Quantise full-precision projection weights to this type at load (`--quant`).
    quantize: Option<GgmlDType>,
}

impl<'a> From<VarBuilder<'a>> for Weights<'a> {
    fn from(vb: VarBuilder<'a>) -> Self {
        Weights {
            store: Store::Safetensors(vb),
            quantize: None,
        }
    }
}

impl<'a> Weights<'a> {
    /// Safetensors weights; projections quantised to `quantize` at load when given.
    pub fn safetensors(vb: VarBuilder<'a>, quantize: Option<GgmlDType>) -> Self {
        Weights {
            store: Store::Safetensors(vb),
            quantize,
        }
    }

    /// A GGUF file's tensors (already Hugging Face named and laid out); dense tensors such as
    /// norms are dequantised to `dtype`. Projections stay as stored unless `quantize` names
    /// another type: then they are requantised (for speed: candle's CPU kernels for q4_1, q5_0
    /// and q5_1 are scalar, which calls of many rows escape through gemm (`gemm_from_rows`) but
    /// a decode step of a few records does not; its q8_0 and k-quant kernels are SIMD).
    pub fn gguf(
        tensors: GgufTensors,
        dtype: DType,
        device: &Device,
        quantize: Option<GgmlDType>,
    ) -> Self {
        Weights {
            store: Store::Gguf {
                tensors: Arc::new(tensors),
                prefix: String::new(),
                dtype,
                device: device.clone(),
            },
            quantize,
        }
    }

    /// The same weights under `prefix.name`.
    pub fn pp(&self, name: impl ToString) -> Self {
        let store = match &self.store {
            Store::Safetensors(vb) => Store::Safetensors(vb.pp(name.to_string())),
            Store::Gguf {
                tensors,
                prefix,
                dtype,
                device,
            } => Store::Gguf {
                tensors: tensors.clone(),
                prefix: join(prefix, &name.to_string()),
                dtype: *dtype,
                device: device.clone(),
            },
        };
        Weights {
            store,
            quantize: self.quantize,
        }
    }

    /// The activations' dtype.
    pub fn dtype(&self) -> DType {
        match &self.store {
            Store::Safetensors(vb) => vb.dtype(),
            Store::Gguf { dtype, .. } => *dtype,
        }
    }

    pub fn device(&self) -> &Device {
        match &self.store {
            Store::Safetensors(vb) => vb.device(),
            Store::Gguf { device, .. } => device,
        }
    }

    /// Whether tensor `name` exists under this prefix.
    pub fn contains(&self, name: &str) -> bool {
        match &self.store {
            Store::Safetensors(vb) => vb.contains_tensor(name),
            Store::Gguf {
                tensors, prefix, ..
            } => tensors.contains_key(&join(prefix, name)),
        }
    }

    fn quantized(&self, name: &str) -> Result<Option<Arc<QTensor>>> {
        match &self.store {
            Store::Gguf {
                tensors, prefix, ..
            } => {
                let full = join(prefix, name);
                match tensors.get(&full) {
                    Some(t) => Ok(Some(t.clone())),
                    None => candle_core::bail!("tensor `{full}` is missing"),
                }
            }
            Store::Safetensors(_) => Ok(None),
        }
    }

    /// A dense tensor in the activations' dtype (dequantised when stored quantised).
    pub fn tensor<S: Into<Shape>>(&self, name: &str, shape: S) -> Result<Tensor> {
        let shape = shape.into();
        match &self.store {
            Store::Safetensors(vb) => vb.get(shape, name),
            Store::Gguf { dtype, device, .. } => {
                let q = self.quantized(name)?.expect("gguf");
                if q.shape() != &shape {
                    candle_core::bail!(
                        "tensor `{name}`: shape {:?}, expected {shape:?}",
                        q.shape()
                    );
                }
                q.dequantize(device)?.to_dtype(*dtype)
            }
        }
    }

    /// A projection `weight` of shape `(out, in)` kept in full precision (router gates, LoRA
    /// factors: small, and trainable later).
    pub fn linear(&self, in_dim: usize, out_dim: usize) -> Result<Linear> {
        Ok(Linear::new(self.tensor("weight", (out_dim, in_dim))?, None))
    }

    /// A projection `weight` of shape `(out, in)`: quantised when the file stores it quantised
    /// or `--quant` asks for it, full precision otherwise, laid out for few rows at a time
    /// ([`Proj::for_few_rows`]).
    pub fn proj(&self, in_dim: usize, out_dim: usize) -> Result<Proj> {
        self.head(in_dim, out_dim)?.for_few_rows()
    }

    /// [`Weights::proj`] kept as stored, for the LM head: with its tens of thousands of output
    /// rows gemm's repacking pays for itself (a decode step of 48 rows through SmolLM2's
    /// 49,152 × 576 head: 46 ms as stored, 69 ms transposed).
    pub fn head(&self, in_dim: usize, out_dim: usize) -> Result<Proj> {
        if let Some(q) = self.quantized("weight")? {
            if q.shape().dims() != [out_dim, in_dim] {
                candle_core::bail!(
                    "tensor `weight`: shape {:?}, expected ({out_dim}, {in_dim})",
                    q.shape()
                );
            }
            return match self.quantize {
                Some(target) if target != q.dtype() => {
                    quantize_proj(self.tensor("weight", (out_dim, in_dim))?, target)
                }
                _ if is_float(q.dtype()) => Ok(Proj::Full(self.linear(in_dim, out_dim)?)),
                _ => Ok(Proj::Quantized(QMatMul::from_arc(q)?)),
            };
        }
        let w = self.tensor("weight", (out_dim, in_dim))?;
        match self.quantize {
            Some(target) => quantize_proj(w, target),
            None => Ok(Proj::Full(Linear::new(w, None))),
        }
    }

    /// The token embedding table `(vocab, hidden)`.
    pub fn embedding(&self, vocab: usize, hidden: usize) -> Result<TokenEmbedding> {
        if let Some(q) = self.quantized("weight")? {
            if !is_float(q.dtype()) && q.shape().dims() == [vocab, hidden] {
                return Ok(TokenEmbedding::Quantized {
                    table: q,
                    dtype: self.dtype(),
                });
            }
        }
        let w = self.tensor("weight", (vocab, hidden))?;
        Ok(TokenEmbedding::Full(Embedding::new(w, hidden)))
    }

    /// The quantisation asked for at load, if any.
    pub fn quantize_target(&self) -> Option<GgmlDType> {
        self.quantize
    }
}

/// Quantises a full-precision projection. Types whose blocks do not divide the input width
/// (k-quants need multiples of 256; SmolLM2's hidden size is 576) fall back to q8_0, then to
/// full precision, as llama.cpp's quantiser falls back per tensor.
pub fn quantize_proj(w: Tensor, target: GgmlDType) -> Result<Proj> {
    let in_dim = w.dim(1)?;
    for t in [target, GgmlDType::Q8_0] {
        if in_dim.is_multiple_of(t.block_size()) {
            let q = QTensor::quantize(&w.to_dtype(DType::F32)?, t)?;
            return Ok(Proj::Quantized(QMatMul::from_qtensor(q)?));
        }
    }
    Ok(Proj::Full(Linear::new(w, None)))
}

pub(crate) fn is_float(t: GgmlDType) -> bool {
    matches!(t, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Parses a `--quant` value: the ggml types candle quantises on CPU.
pub fn parse_quant(spec: &str) -> std::result::Result<GgmlDType, String> {
    Ok(match spec.to_ascii_lowercase().as_str() {
        "q8_0" => GgmlDType::Q8_0,
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "q5_0" => GgmlDType::Q5_0,
        "q5_1" => GgmlDType::Q5_1,
        "q4k" | "q4_k" => GgmlDType::Q4K,
        "q5k" | "q5_k" => GgmlDType::Q5K,
        "q6k" | "q6_k" => GgmlDType::Q6K,
        other => {
            return Err(format!(
                "unknown quantisation `{other}` (q8_0, q4_0, q4_1, q5_0, q5_1, q4k, q5k, q6k)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Quantised projections: from `gemm_from_rows` rows on (per thread), the product is the
    /// dequantised weight's through gemm (to the bit, 2-D and 3-D inputs, bf16 activations
    /// too); below it, and for types whose kernel wins, candle's kernel (which rounds the
    /// activations to 8 bits: near the same product, not equal to it).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn quantised_projection_uses_gemm_for_many_rows() {
        let dev = Device::Cpu;
        let exact =
            |w: &QTensor, x: &Tensor| x.matmul(&w.dequantize(&dev).unwrap().t().unwrap()).unwrap();
        let cases = [
            (GgmlDType::Q4_1, 128, 16),
            (GgmlDType::Q5_0, 128, 16),
            (GgmlDType::Q5_1, 128, 16),
            (GgmlDType::Q4_0, 128, 64),
            (GgmlDType::Q8_0, 128, 64),
            (GgmlDType::Q8_0, 256, usize::MAX),
            (GgmlDType::Q4K, 256, usize::MAX),
        ];
        let threads = rayon::current_num_threads();
        for (dtype, in_dim, per_thread) in cases {
            let from = per_thread.saturating_mul(threads);
            let w = Tensor::randn(0f32, 1.0, (40, in_dim), &dev).unwrap();
            let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
            let proj = Proj::Quantized(QMatMul::from_arc(q.clone()).unwrap());
            for rows in [
                1,
                8,
                16 * threads - 1,
                16 * threads,
                64 * threads - 1,
                64 * threads,
            ] {
                let x = Tensor::randn(0f32, 1.0, (rows, in_dim), &dev).unwrap();
                let (got, want) = (proj.forward(&x).unwrap(), exact(&q, &x));
                let diff = max_diff(&got, &want);
                if rows >= from {
                    assert_eq!(diff, 0.0, "{dtype:?} {rows} rows: gemm");
                    let x3 = x.reshape((2, rows / 2, in_dim));
                    if rows % 2 == 0 {
                        let got3 = proj.forward(&x3.unwrap()).unwrap();
                        assert_eq!(got3.dims(), &[2, rows / 2, 40]);
                        assert_eq!(max_diff(&got3.flatten_to(1).unwrap(), &want), 0.0);
                    }
                } else {
                    // The kernel: 8-bit activations move a sum of `in_dim` products a little.
                    let scale: f32 = want.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
                    assert!(
                        diff > 0.0 && diff < 0.05 * scale,
                        "{dtype:?} {rows} rows: {diff} of {scale}"
                    );
                }
            }
        }
        // The counts are per thread: the kernel uses every thread, the dequantisation one.
        let square = Shape::from((1024, 1024));
        for (n, q4_1, q8_0) in [(1, 16, 64), (2, 32, 128), (4, 64, 256)] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap();
            pool.install(|| {
                assert_eq!(gemm_from_rows(GgmlDType::Q4_1, &square), Some(q4_1));
                let untiled = Shape::from((1024, 576));
                assert_eq!(gemm_from_rows(GgmlDType::Q8_0, &untiled), Some(q8_0));
                assert_eq!(gemm_from_rows(GgmlDType::Q8_0, &square), None);
            });
        }
        // A weight too large to dequantise for a call stays with the kernel.
        let (wide, max) = (Shape::from((1 << 16, 1024)), Shape::from((1 << 16, 1025)));
        assert_eq!(gemm_from_rows(GgmlDType::Q4_1, &wide), Some(16 * threads));
        assert_eq!(gemm_from_rows(GgmlDType::Q4_1, &max), None);
        // bf16 activations come back bf16.
        let w = Tensor::randn(0f32, 1.0, (40, 128), &dev).unwrap();
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q4_1).unwrap());
        let proj = Proj::Quantized(QMatMul::from_arc(q.clone()).unwrap());
        let x = Tensor::randn(0f32, 1.0, (16 * threads, 128), &dev).unwrap();
        let got = proj.forward(&x.to_dtype(DType::BF16).unwrap()).unwrap();
        assert_eq!(got.dtype(), DType::BF16);
        let want = exact(
            &q,
            &x.to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap(),
        );
        let want = want
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert_eq!(max_diff(&got.to_dtype(DType::F32).unwrap(), &want), 0.0);
    }

    /// The transposed layout computes what `Linear` computes, for the row counts a decode step
    /// has (gemm's few-row paths) and a prompt block's, through 2-D and 3-D inputs.
    #[test]
    fn transposed_projection_equals_linear() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (48, 40), &dev).unwrap();
        let full = Proj::Full(Linear::new(w.clone(), None));
        let fast = full.clone().for_few_rows().unwrap();
        assert!(matches!(fast, Proj::Transposed(_)));
        for rows in [1, 3, 16, 70] {
            let x = Tensor::randn(0f32, 1.0, (rows, 40), &dev).unwrap();
            let want = full.forward(&x).unwrap();
            assert_eq!(fast.forward(&x).unwrap().dims(), &[rows, 48]);
            assert!(
                max_diff(&fast.forward(&x).unwrap(), &want) < 1e-4,
                "{rows} rows"
            );
            let x3 = x.reshape((1, rows, 40)).unwrap();
            let got = fast.forward(&x3).unwrap();
            assert_eq!(got.dims(), &[1, rows, 48]);
            assert!(max_diff(&got.squeeze(0).unwrap(), &want) < 1e-4);
        }
        // A strided input (a transposed view) is made contiguous first.
        let xt = Tensor::randn(0f32, 1.0, (40, 5), &dev)
            .unwrap()
            .t()
            .unwrap();
        let want = full.forward(&xt.contiguous().unwrap()).unwrap();
        assert!(max_diff(&fast.forward(&xt).unwrap(), &want) < 1e-4);
    }

    /// Training through a transposed frozen weight: the input's gradient is `Linear`'s.
    #[test]
    fn transposed_projection_backpropagates_to_its_input() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (6, 4), &dev).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 4), &dev).unwrap()).unwrap();
        let grad = |m: &dyn Module| {
            let y = m.forward(x.as_tensor()).unwrap();
            let grads = (y.sqr().unwrap().sum_all().unwrap()).backward().unwrap();
            grads.get(x.as_tensor()).unwrap().clone()
        };
        // candle's own matmul backward is the reference.
        let want = grad(&Linear::new(w.clone(), None));
        let full = Proj::Full(Linear::new(w, None));
        assert!(max_diff(&grad(&full), &want) < 1e-4);
        let fast = full.for_few_rows().unwrap();
        assert!(matches!(fast, Proj::Transposed(_)));
        assert!(max_diff(&grad(&fast), &want) < 1e-4);
    }

    /// f16 weights keep their layout: a single row through f16 `Wᵀ` is summed in f16 by gemm,
    /// through `W` as stored in f32 (the one-row case of every decode step's last live row).
    #[test]
    fn f16_projections_keep_their_layout_and_one_row_stays_precise() {
        let dev = Device::Cpu;
        let w = (Tensor::randn(0f32, 1.0, (576, 1536), &dev).unwrap() * 0.05).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 1536), &dev).unwrap();
        let (w16, x16) = (
            w.to_dtype(DType::F16).unwrap(),
            x.to_dtype(DType::F16).unwrap(),
        );
        let exact = x16
            .to_dtype(DType::F32)
            .unwrap()
            .matmul(&w16.to_dtype(DType::F32).unwrap().t().unwrap())
            .unwrap();
        let proj = Proj::Full(Linear::new(w16, None)).for_few_rows().unwrap();
        assert!(matches!(proj, Proj::Full(_)));
        let got = proj.forward(&x16).unwrap().to_dtype(DType::F32).unwrap();
        assert!(max_diff(&got, &exact) < 0.01, "{}", max_diff(&got, &exact));
        // bf16 is transposed: its one-row path sums as the stored layout's does.
        let bf = Proj::Full(Linear::new(w.to_dtype(DType::BF16).unwrap(), None));
        assert!(matches!(bf.for_few_rows().unwrap(), Proj::Transposed(_)));
    }

    /// A trainable weight keeps its own storage: the optimiser's updates must reach the
    /// product, which a transposed copy made at load would not see.
    #[test]
    fn trainable_projections_keep_their_layout() {
        let var =
            Var::from_tensor(&Tensor::ones((3, 2), DType::F32, &Device::Cpu).unwrap()).unwrap();
        let proj = Proj::Full(Linear::new(var.as_tensor().clone(), None))
            .for_few_rows()
            .unwrap();
        assert!(matches!(proj, Proj::Full(_)));
        var.set(&Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let x = Tensor::ones((1, 2), DType::F32, &Device::Cpu).unwrap();
        let y = proj.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![0.0; 3]]);
    }
}
