//! Decoder building blocks on CPU, one thread: one layer's sparse MoE block (learned and
//! task-forced routing) and its grouped-query attention (prefill of a batch, and a decode step
//! over a filled cache), with random weights at a small Mixtral shape (hidden 576 as SmolLM2,
//! 9 query / 3 KV heads, 4 experts of 1,536, top-2); and the MoE block of neko-smol's shape
//! (`moe_block_lowrank`: a shared FFN of 1,536 under 4 rank-16 low-rank experts, top-2).
//!
//! `quantised_proj`: a quantised projection of SmolLM2's gate shape (576 → 1,536) as neko
//! multiplies it (`Proj`: dequantised through gemm from `gemm_from_rows` rows on) against
//! candle's quantised kernel alone, for the row counts of a decode step and of a prefill.
//!
//!     RAYON_NUM_THREADS=1 cargo bench --bench model

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use criterion::{criterion_group, criterion_main, Criterion};
use neko::model::transformer::LayerBench;
use neko::model::weights::Proj;
use neko::model::{ModelConfig, Weights};

const CONFIG: &str = r#"{
  "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
  "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 1,
  "num_attention_heads": 9, "num_key_value_heads": 3, "num_local_experts": 4,
  "num_experts_per_tok": 2, "vocab_size": 1000, "max_position_embeddings": 2048,
  "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": false,
  "bos_token_id": 1, "eos_token_id": 2
}"#;

fn layer() -> LayerBench {
    let cfg = ModelConfig::from_json(CONFIG).expect("config");
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let experts = (0..4).flat_map(|e| {
        let p = format!("block_sparse_moe.experts.{e}");
        [
            (format!("{p}.w1.weight"), vec![i, h]),
            (format!("{p}.w3.weight"), vec![i, h]),
            (format!("{p}.w2.weight"), vec![h, i]),
        ]
    });
    layer_of(&cfg, experts.collect())
}

/// neko-smol's block: the frozen shared FFN and each expert's rank-16 factors.
fn lowrank_layer() -> LayerBench {
    let json = CONFIG.replacen(
        '{',
        r#"{"expert_lora_rank": 16, "expert_lora_alpha": 16.0,"#,
        1,
    );
    let cfg = ModelConfig::from_json(&json).expect("config");
    let (h, i, r) = (cfg.hidden_size, cfg.intermediate_size, 16);
    let mut shapes = vec![
        ("block_sparse_moe.shared.w1.weight".to_string(), vec![i, h]),
        ("block_sparse_moe.shared.w3.weight".to_string(), vec![i, h]),
        ("block_sparse_moe.shared.w2.weight".to_string(), vec![h, i]),
    ];
    for e in 0..4 {
        for (w, (out, inp)) in [("w1", (i, h)), ("w3", (i, h)), ("w2", (h, i))] {
            let p = format!("block_sparse_moe.experts.{e}.{w}");
            shapes.push((format!("{p}.lora_A.weight"), vec![r, inp]));
            shapes.push((format!("{p}.lora_B.weight"), vec![out, r]));
        }
    }
    layer_of(&cfg, shapes)
}

/// A layer of random weights: attention, norms and gate, and the feed-forward `ffn` names.
fn layer_of(cfg: &ModelConfig, ffn: Vec<(String, Vec<usize>)>) -> LayerBench {
    let dev = Device::Cpu;
    let (h, d) = (cfg.hidden_size, cfg.head_dim);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("self_attn.q_proj.weight".into(), vec![9 * d, h]),
        ("self_attn.k_proj.weight".into(), vec![3 * d, h]),
        ("self_attn.v_proj.weight".into(), vec![3 * d, h]),
        ("self_attn.o_proj.weight".into(), vec![h, 9 * d]),
        ("block_sparse_moe.gate.weight".into(), vec![4, h]),
        ("input_layernorm.weight".into(), vec![h]),
        ("post_attention_layernorm.weight".into(), vec![h]),
    ];
    shapes.extend(ffn);
    let tensors: HashMap<String, Tensor> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let t = (Tensor::randn(0f32, 1.0, shape, &dev).unwrap() * 0.05).unwrap();
            (format!("model.layers.0.{name}"), t)
        })
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
    LayerBench::new(cfg, &Weights::from(vb)).expect("layer")
}

fn input(b: usize, q: usize) -> Tensor {
    Tensor::randn(0f32, 1.0, (b, q, 576), &Device::Cpu).unwrap()
}

fn moe(c: &mut Criterion) {
    moe_group(c, "moe_block", layer());
    moe_group(c, "moe_block_lowrank", lowrank_layer());
}

fn moe_group(c: &mut Criterion, group: &str, mut layer: LayerBench) {
    let mut g = c.benchmark_group(group);
    g.sample_size(20);
    for (name, b, q) in [("prefill_1x128", 1, 128), ("decode_16x1", 16, 1)] {
        let xs = input(b, q);
        g.bench_function(format!("{name}/learned"), |bench| {
            bench.iter(|| black_box(layer.feed_forward(&xs, None).unwrap()))
        });
        g.bench_function(format!("{name}/forced"), |bench| {
            bench.iter(|| black_box(layer.feed_forward(&xs, Some(1)).unwrap()))
        });
    }
    g.finish();
}

fn attention(c: &mut Criterion) {
    let mut layer = layer();
    let mut g = c.benchmark_group("attention");
    g.sample_size(20);
    for (name, b, q, cached) in [
        ("prefill_1x128", 1, 128, 0),
        ("prefill_16x64_after_80", 16, 64, 80),
        ("decode_16x1_after_200", 16, 1, 200),
    ] {
        let xs = input(b, q);
        // Only the attention is timed: each run's cache is set up (allocated, filled with
        // `cached` positions) outside the clock.
        g.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iters {
                    layer.fill_cache(b, q, cached, xs.dtype()).unwrap();
                    let t = std::time::Instant::now();
                    black_box(layer.attention(&xs, cached).unwrap());
                    spent += t.elapsed();
                }
                spent
            })
        });
    }
    g.finish();
}

fn quantised_proj(c: &mut Criterion) {
    let mut g = c.benchmark_group("quantised_proj");
    g.sample_size(20);
    let w = Tensor::randn(0f32, 0.02, (1536, 576), &Device::Cpu).unwrap();
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
        let neko = Proj::Quantized(QMatMul::from_arc(q.clone()).unwrap());
        let kernel = QMatMul::from_arc(q).unwrap();
        for rows in [1, 16, 128] {
            let xs = Tensor::randn(0f32, 1.0, (rows, 576), &Device::Cpu).unwrap();
            g.bench_function(format!("{dtype:?}_{rows}_rows/neko"), |bench| {
                bench.iter(|| black_box(neko.forward(&xs).unwrap()))
            });
            g.bench_function(format!("{dtype:?}_{rows}_rows/kernel"), |bench| {
                bench.iter(|| black_box(kernel.forward(&xs).unwrap()))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, moe, attention, quantised_proj);
criterion_main!(benches);
