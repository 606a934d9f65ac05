//! The fast batch path: a shared prompt prefix computed once and reused, token-budget
//! batching, and dropping finished rows give exactly the tokens of one-at-a-time decoding
//! without any of them (tiny f32 fixtures).

use neko::correct::{Constrain, CorrectOptions, Corrector};
use neko::generate::{greedy_batch, greedy_batch_with, DecodeStats, Request, Settings};
use neko::record::Record;
use neko::Task;
use serde_json::Value;

use crate::util::{fixture, load_model as load, variant_records};

fn reference_ids(name: &str) -> Vec<Vec<u32>> {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();
    r["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn never_stop(_: &[u32]) -> bool {
    false
}

/// Prompts sharing a 24-token prefix, with tails of different lengths and answer bounds of
/// different lengths (so rows finish at different steps and are dropped from the batch).
fn prefix_prompts(name: &str) -> (Vec<u32>, Vec<Request>) {
    let ids = reference_ids(name);
    let prefix: Vec<u32> = ids[0][..24].to_vec();
    let tails = [
        &ids[1][..],
        &ids[2][..7],
        &ids[0][30..],
        &ids[2][..1],
        &ids[1][3..9],
    ];
    let requests = tails
        .iter()
        .zip([20, 5, 12, 17, 1])
        .map(|(t, n)| Request {
            prompt: [&prefix[..], t].concat(),
            max_new_tokens: n,
        })
        .collect();
    (prefix, requests)
}

fn prefix_reuse_equals_one_at_a_time(name: &str, forced: Option<usize>) {
    let mut model = load(name);
    let (prefix, requests) = prefix_prompts(name);
    let settings = Settings {
        eos: &[],
        forced_expert: forced,
        stopped: &never_stop,
        choose: None,
    };
    let alone: Vec<Vec<u32>> = requests
        .iter()
        .map(|r| {
            greedy_batch(model.decoder.as_mut(), std::slice::from_ref(r), &settings).unwrap()[0]
                .tokens
                .clone()
        })
        .collect();
    let cache = model
        .decoder
        .prefill_prefix(&prefix, forced)
        .unwrap()
        .expect("the transformer reuses prefixes");
    let suffixes: Vec<Request> = requests
        .iter()
        .map(|r| Request {
            prompt: r.prompt[prefix.len()..].to_vec(),
            max_new_tokens: r.max_new_tokens,
        })
        .collect();
    let mut stats = DecodeStats::default();
    let got = greedy_batch_with(
        model.decoder.as_mut(),
        Some(&cache),
        &suffixes,
        &settings,
        &mut stats,
    )
    .unwrap();
    for (i, (g, want)) in got.iter().zip(&alone).enumerate() {
        assert_eq!(
            &g.tokens, want,
            "{name} row {i}: prefix + batch differs from alone"
        );
    }
    assert_eq!(stats.reused_tokens, 24 * requests.len());
    // A truncated prefix cache is the cache of the shorter prefix.
    let mut short = cache.clone();
    short.truncate(10).unwrap();
    let suffixes: Vec<Request> = requests
        .iter()
        .map(|r| Request {
            prompt: r.prompt[10..].to_vec(),
            max_new_tokens: r.max_new_tokens,
        })
        .collect();
    let got = greedy_batch_with(
        model.decoder.as_mut(),
        Some(&short),
        &suffixes,
        &settings,
        &mut DecodeStats::default(),
    )
    .unwrap();
    for (i, (g, want)) in got.iter().zip(&alone).enumerate() {
        assert_eq!(&g.tokens, want, "{name} row {i}: truncated prefix differs");
    }
}

#[test]
fn mixtral_prefix_reuse_equals_one_at_a_time() {
    prefix_reuse_equals_one_at_a_time("tiny-mixtral", None);
}

#[test]
fn mixtral_prefix_reuse_with_forced_expert_equals_one_at_a_time() {
    prefix_reuse_equals_one_at_a_time("tiny-mixtral", Some(1));
}

#[test]
fn llama_prefix_reuse_equals_one_at_a_time() {
    prefix_reuse_equals_one_at_a_time("tiny-llama", None);
}

fn corrections(name: &str, options: CorrectOptions, windows: usize) -> (Vec<String>, DecodeStats) {
    let records = variant_records();
    let model = name.split(' ').next().unwrap();
    let mut corrector = Corrector::new(load(model), None, options);
    let refs: Vec<&Record> = records.iter().collect();
    let mut texts = Vec::new();
    for chunk in refs.chunks(refs.len().div_ceil(windows)) {
        for c in corrector.correct_task(Task::Asr, chunk) {
            let c = c.unwrap();
            texts.push(format!("{:?} {} {}", c.finish, c.new_tokens, c.text));
        }
    }
    (texts, corrector.stats)
}

/// The whole correction path: prefix reuse and token-budget batching against one record at a
/// time with full prompts; the prefix is computed once per task, across calls. Both decodings:
/// free (MT, OCR, GEC, and ASR with `--constrain none`) and the ASR default, constrained.
fn corrector_fast_path_equals_slow_path(name: &str) {
    for constrain in [Constrain::None, Constrain::Asr] {
        fast_path_equals_slow_path(name, constrain);
    }
}

fn fast_path_equals_slow_path(name: &str, constrain: Constrain) {
    let name = &format!("{name} ({})", constrain.name());
    let slow = CorrectOptions {
        batch_size: 1,
        max_batch_tokens: usize::MAX,
        prefix_reuse: false,
        max_new_tokens: Some(12),
        constrain,
        ..CorrectOptions::default()
    };
    let fast = CorrectOptions {
        batch_size: 16,
        max_batch_tokens: 400,
        prefix_reuse: true,
        max_new_tokens: Some(12),
        constrain,
        ..CorrectOptions::default()
    };
    let (want, slow_stats) = corrections(name, slow, 1);
    // All records in one call: 4 rows of about 180 KV positions, 2 per batch.
    let (got, stats) = corrections(name, fast.clone(), 1);
    assert_eq!(got, want, "{name}: fast path differs");
    assert_eq!(slow_stats.prefixes, 0);
    assert_eq!(stats.prefixes, 1);
    assert!(stats.prefix_tokens >= 8 && stats.reused_tokens > stats.prefix_tokens);
    assert_eq!(
        stats.prefill_tokens + stats.reused_tokens,
        slow_stats.prefill_tokens,
        "{name}: every prompt token is computed or reused"
    );
    assert_eq!(stats.batches, 2, "{name}: the token budget: {stats:?}");
    // One record per call: the first call's prefix is its whole prompt but the last token;
    // later calls cut it to what they share, and it is still computed once.
    let (got, stats) = corrections(name, fast, 4);
    assert_eq!(got, want, "{name}: fast path, one record per call, differs");
    assert_eq!(
        stats.prefixes, 1,
        "{name}: the prefix is computed once per task"
    );
}

#[test]
fn mixtral_corrector_fast_path_equals_slow_path() {
    corrector_fast_path_equals_slow_path("tiny-mixtral");
}

#[test]
fn llama_corrector_fast_path_equals_slow_path() {
    corrector_fast_path_equals_slow_path("tiny-llama");
}

/// Many rows make prefill run in column chunks (`generate::prefill`: 512 tokens per pass, at
/// least 16 columns): 40 rows of 20-80 tokens take several chunks, a row alone one pass; the
/// tokens are the same.
#[test]
fn chunked_prefill_of_a_wide_batch_equals_one_at_a_time() {
    for name in ["tiny-mixtral", "tiny-llama"] {
        let mut model = load(name);
        let ids = reference_ids(name);
        let requests: Vec<Request> = (0..40)
            .map(|k| {
                let tail = &ids[(k + 1) % ids.len()];
                let prompt = [
                    &ids[k % ids.len()][..],
                    &tail[..(k % 10 + 1).min(tail.len())],
                ]
                .concat();
                Request {
                    prompt,
                    max_new_tokens: 3 + k % 5,
                }
            })
            .collect();
        assert!(requests.iter().any(|r| r.prompt.len() > 16 * 2));
        let settings = Settings {
            eos: &[],
            forced_expert: None,
            stopped: &never_stop,
            choose: None,
        };
        let together = greedy_batch(model.decoder.as_mut(), &requests, &settings).unwrap();
        for (i, r) in requests.iter().enumerate() {
            let alone =
                greedy_batch(model.decoder.as_mut(), std::slice::from_ref(r), &settings).unwrap();
            assert_eq!(together[i].tokens, alone[0].tokens, "{name} row {i}");
        }
    }
}

/// Prefill runs the position-wise layers on a batch's real tokens only (padding skipped,
/// `transformer::Packing`): after a shared prefix, 40 rows of 1-60 tokens in 16-column chunks,
/// so short rows are nothing but padding for several chunks and start mid-chunk in another;
/// each row's tokens are those of its whole prompt decoded alone.
#[test]
fn prefill_skipping_padding_equals_one_at_a_time() {
    for (name, forced) in [("tiny-mixtral", Some(2)), ("tiny-llama", None)] {
        let mut model = load(name);
        let ids = reference_ids(name);
        let prefix: Vec<u32> = ids[0][..20].to_vec();
        let requests: Vec<Request> = (0..40)
            .map(|k| {
                let source = [&ids[k % ids.len()][..], &ids[(k + 1) % ids.len()][..]].concat();
                let take = (1 + (k * 7) % 60).min(source.len());
                Request {
                    prompt: source[source.len() - take..].to_vec(),
                    max_new_tokens: 2 + k % 4,
                }
            })
            .collect();
        let lengths: Vec<usize> = requests.iter().map(|r| r.prompt.len()).collect();
        assert!(lengths.contains(&1) && lengths.iter().any(|&n| n > 16 * 3));
        let settings = Settings {
            eos: &[],
            forced_expert: forced,
            stopped: &never_stop,
            choose: None,
        };
        let cache = model
            .decoder
            .prefill_prefix(&prefix, forced)
            .unwrap()
            .expect("the transformer reuses prefixes");
        let mut stats = DecodeStats::default();
        let together = greedy_batch_with(
            model.decoder.as_mut(),
            Some(&cache),
            &requests,
            &settings,
            &mut stats,
        )
        .unwrap();
        assert!(stats.pad_tokens > 40 * 30, "{name}: {stats:?}");
        for (i, r) in requests.iter().enumerate() {
            let whole = Request {
                prompt: [&prefix[..], &r.prompt[..]].concat(),
                max_new_tokens: r.max_new_tokens,
            };
            let alone = greedy_batch(model.decoder.as_mut(), &[whole], &settings).unwrap();
            assert_eq!(together[i].tokens, alone[0].tokens, "{name} row {i}");
        }
    }
}
