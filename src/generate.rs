//! Greedy decoding with a KV cache, over batches of prompts of different lengths.
//!
//! A batch is left-padded to its longest prompt; the decoder's mask hides the padding and its
//! per-row positions make each row see exactly what it would see alone, so a batch yields the
//! same tokens as one-at-a-time decoding. Finished rows keep being fed (their output is
//! ignored) so the others are not disturbed.

use candle_core::{Result, Tensor, D};

use crate::model::{Decoder, Logits};

/// Why a row stopped generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// The model produced an end-of-sequence token.
    Eos,
    /// The text reached a stop string.
    Stop,
    /// The token limit was reached.
    Length,
}

/// One row's generated tokens (without the EOS token) and why it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    pub finish: Finish,
}

/// One prompt to continue.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub max_new_tokens: usize,
}

/// Settings shared by a batch.
pub struct Settings<'a> {
    /// Tokens that end a row.
    pub eos: &'a [u32],
    /// The expert forced into every token's top-k, if any.
    pub forced_expert: Option<usize>,
    /// Tells whether a row's tokens so far have reached a stop string.
    pub stopped: &'a dyn Fn(&[u32]) -> bool,
}

/// Decodes a batch greedily. Prompts must be non-empty.
pub fn greedy_batch(
    decoder: &mut dyn Decoder,
    requests: &[Request],
    settings: &Settings,
) -> Result<Vec<Generated>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let longest = requests.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let max_new = requests.iter().map(|r| r.max_new_tokens).max().unwrap_or(0);
    let pads: Vec<usize> = requests.iter().map(|r| longest - r.prompt.len()).collect();
    let pad_id = settings.eos.first().copied().unwrap_or(0);
    let mut flat = Vec::with_capacity(requests.len() * longest);
    for (r, &p) in requests.iter().zip(&pads) {
        flat.extend(std::iter::repeat_n(pad_id, p));
        flat.extend_from_slice(&r.prompt);
    }
    let device = decoder.device().clone();
    decoder.reset(longest + max_new);
    let input = Tensor::from_vec(flat, (requests.len(), longest), &device)?;

    let mut out: Vec<Generated> = requests
        .iter()
        .map(|r| Generated {
            tokens: Vec::new(),
            finish: if r.max_new_tokens == 0 {
                Finish::Length
            } else {
                Finish::Eos
            },
        })
        .collect();
    let mut done: Vec<bool> = requests.iter().map(|r| r.max_new_tokens == 0).collect();
    let mut logits = decoder.forward(&input, &pads, settings.forced_expert, Logits::Last)?;
    while !done.iter().all(|&d| d) {
        let next: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        for (i, &tok) in next.iter().enumerate() {
            if !done[i] {
                done[i] = advance(&mut out[i], tok, requests[i].max_new_tokens, settings);
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
        let step = Tensor::from_vec(next, (requests.len(), 1), &device)?;
        logits = decoder.forward(&step, &pads, settings.forced_expert, Logits::Last)?;
    }
    Ok(out)
}

/// Adds one token to a row; returns whether the row is now finished.
fn advance(row: &mut Generated, tok: u32, max_new: usize, settings: &Settings) -> bool {
    if settings.eos.contains(&tok) {
        row.finish = Finish::Eos;
        return true;
    }
    row.tokens.push(tok);
    if (settings.stopped)(&row.tokens) {
        row.finish = Finish::Stop;
        true
    } else if row.tokens.len() >= max_new {
        row.finish = Finish::Length;
        true
    } else {
        false
    }
}
