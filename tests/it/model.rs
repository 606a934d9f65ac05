//! The decoder against Hugging Face transformers on tiny random checkpoints
//! (`tests/fixtures/tiny-{mixtral,llama}`, made by `scripts/make_tiny_models.py`).

use candle_core::{DType, Device, Tensor};
use neko::generate::{greedy_batch, Finish, Request, Settings};
use neko::model::{Logits, Model};
use serde_json::Value;

use crate::util::fixture;

fn load(name: &str) -> Model {
    Model::load(fixture(name).to_str().unwrap(), &Device::Cpu, DType::F32).unwrap()
}

fn reference(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Largest absolute difference between our all-position logits and the reference's.
fn max_logit_diff(model: &mut Model, input: &[u32], want: &Value) -> f32 {
    model.decoder.reset(input.len());
    let t = Tensor::new(input, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let got = model.decoder.forward(&t, &[0], None, Logits::All).unwrap();
    let got: Vec<Vec<f32>> = got.squeeze(0).unwrap().to_vec2().unwrap();
    let positions = want["positions"].as_array().unwrap();
    let values = want["values"].as_array().unwrap();
    let mut worst = 0f32;
    for (p, row) in positions.iter().zip(values) {
        let p = p.as_u64().unwrap() as usize;
        for (g, w) in got[p].iter().zip(row.as_array().unwrap()) {
            worst = worst.max((g - w.as_f64().unwrap() as f32).abs());
        }
    }
    worst
}

fn logits_match(name: &str) {
    let mut model = load(name);
    let r = reference(name);
    for want in r["logits"].as_array().unwrap() {
        let prompt = want["prompt"].as_u64().unwrap() as usize;
        let input = ids(&r["input_ids"][prompt]);
        let diff = max_logit_diff(&mut model, &input, want);
        assert!(diff < 1e-4, "{name} prompt {prompt}: max logit diff {diff}");
    }
}

#[test]
fn mixtral_logits_match_transformers() {
    logits_match("tiny-mixtral");
}

#[test]
fn llama_logits_match_transformers() {
    logits_match("tiny-llama");
}

fn never_stop(_: &[u32]) -> bool {
    false
}

/// Greedy continuations, EOS ignored as the reference loop does.
fn greedy(model: &mut Model, prompts: &[Vec<u32>], n: usize) -> Vec<Vec<u32>> {
    let requests: Vec<Request> = prompts
        .iter()
        .map(|p| Request {
            prompt: p.clone(),
            max_new_tokens: n,
        })
        .collect();
    let settings = Settings {
        eos: &[],
        forced_expert: None,
        stopped: &never_stop,
        choose: None,
    };
    let out = greedy_batch(model.decoder.as_mut(), &requests, &settings).unwrap();
    assert!(out.iter().all(|g| g.finish == Finish::Length));
    out.into_iter().map(|g| g.tokens).collect()
}

/// A chooser that ends one row (`None`) stops that row with what it has; the other row of the
/// batch decodes on as if alone.
#[test]
fn a_chooser_may_end_a_row() {
    let mut model = load("tiny-llama");
    let r = reference("tiny-llama");
    let prompts: Vec<Vec<u32>> = (0..2).map(|i| ids(&r["input_ids"][i])).collect();
    let alone = greedy(&mut model, &prompts, 8);
    let requests: Vec<Request> = prompts
        .iter()
        .map(|p| Request {
            prompt: p.clone(),
            max_new_tokens: 8,
        })
        .collect();
    let choose = |i: usize, tokens: &[u32], logits: &[f32]| -> Option<u32> {
        (i != 0 || tokens.len() < 3).then(|| neko::generate::argmax(logits))
    };
    let settings = Settings {
        eos: &[],
        forced_expert: None,
        stopped: &never_stop,
        choose: Some(&choose),
    };
    let out = greedy_batch(model.decoder.as_mut(), &requests, &settings).unwrap();
    assert_eq!(out[0].finish, Finish::Stop);
    assert_eq!(out[0].tokens, alone[0][..3]);
    assert_eq!(out[1].finish, Finish::Length);
    assert_eq!(out[1].tokens, alone[1]);
}

fn greedy_matches(name: &str) {
    let mut model = load(name);
    let r = reference(name);
    for (i, g) in r["greedy"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&r["input_ids"][i]);
        let got = greedy(&mut model, &[prompt], 20);
        assert_eq!(got[0], ids(&g["new_tokens"]), "{name} prompt {i}");
    }
}

#[test]
fn mixtral_greedy_matches_transformers() {
    greedy_matches("tiny-mixtral");
}

#[test]
fn llama_greedy_matches_transformers() {
    greedy_matches("tiny-llama");
}

fn batch_equals_one_at_a_time(name: &str) {
    let mut model = load(name);
    let r = reference(name);
    let prompts: Vec<Vec<u32>> = r["input_ids"].as_array().unwrap().iter().map(ids).collect();
    // Lengths differ (66, 20, 55 tokens), so rows are left-padded in the batch.
    let batched = greedy(&mut model, &prompts, 20);
    for (i, p) in prompts.iter().enumerate() {
        let alone = greedy(&mut model, std::slice::from_ref(p), 20);
        assert_eq!(
            batched[i], alone[0],
            "{name} prompt {i}: batch differs from alone"
        );
    }
}

#[test]
fn mixtral_batch_equals_one_at_a_time() {
    batch_equals_one_at_a_time("tiny-mixtral");
}

#[test]
fn llama_batch_equals_one_at_a_time() {
    batch_equals_one_at_a_time("tiny-llama");
}

/// Expert ids per token of every MoE layer after one forward pass of `input`.
fn routing(model: &mut Model, input: &[u32], forced: Option<usize>) -> Vec<Vec<Vec<u32>>> {
    model.decoder.reset(input.len());
    let t = Tensor::new(input, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .decoder
        .forward(&t, &[0], forced, Logits::Last)
        .unwrap();
    model
        .decoder
        .last_routing()
        .iter()
        .map(|ids| ids.to_vec2::<u32>().unwrap())
        .collect()
}

#[test]
fn learned_routing_matches_transformers_gate() {
    let mut model = load("tiny-mixtral");
    let r = reference("tiny-mixtral");
    let rt = &r["router_top2"];
    let input = ids(&r["input_ids"][rt["prompt"].as_u64().unwrap() as usize]);
    let layer = rt["layer"].as_u64().unwrap() as usize;
    let got = &routing(&mut model, &input, None)[layer];
    let want: Vec<Vec<u32>> = rt["experts"].as_array().unwrap().iter().map(ids).collect();
    assert_eq!(got, &want);
}

#[test]
fn task_routing_forces_the_task_expert_into_every_top_k() {
    let mut model = load("tiny-mixtral");
    let r = reference("tiny-mixtral");
    let input = ids(&r["input_ids"][0]);
    let learned = routing(&mut model, &input, None);
    for expert in 0..4u32 {
        let forced = routing(&mut model, &input, Some(expert as usize));
        for (layer, tokens) in forced.iter().enumerate() {
            for (t, chosen) in tokens.iter().enumerate() {
                assert!(
                    chosen.contains(&expert),
                    "layer {layer} token {t}: {chosen:?} lacks {expert}"
                );
                // In the first layer (same input as learned routing) the gate still picks the
                // other slot: the best expert that is not the forced one.
                if layer == 0 {
                    let free = learned[0][t].iter().copied().find(|&e| e != expert);
                    assert_eq!(chosen.iter().copied().find(|&e| e != expert), free);
                }
            }
        }
        // Forcing matters: under learned routing some tokens do not use this expert.
        assert!(
            learned.iter().flatten().any(|c| !c.contains(&expert)),
            "expert {expert} always chosen"
        );
    }
}

#[test]
fn task_map_is_read_from_config() {
    let model = load("tiny-mixtral");
    assert_eq!(model.config.task_expert(neko::Task::Ocr), Some(2));
    assert_eq!(model.config.num_local_experts, 4);
    assert!(model.config.eos_token_ids.contains(&2));
}
