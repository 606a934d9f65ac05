//! Greedy decoding with a KV cache, over batches of prompts of different lengths.
//!
//! A batch is left-padded to its longest prompt; the decoder's mask hides the padding and its
//! per-row positions make each row see exactly what it would see alone, so a batch yields the
//! same tokens as one-at-a-time decoding. A prompt prefix shared by every row (the task's
//! instruction) can be computed once and reused ([`PrefixCache`]): rows are then laid out as
//! `[prefix | padding | row tokens]`. Finished rows are dropped from the cache once a quarter
//! of the batch is done (decoders that cannot drop rows keep feeding them, output ignored).

use std::time::Instant;

use candle_core::{Result, Tensor, D};

use crate::model::{Decoder, Logits, PrefixCache};

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

/// Picks a row's next token: `(request index, tokens so far, logits) -> token`, or `None` to
/// end the row there (a constraint that allows no token: the row ends as at a stop string).
pub type Chooser<'a> = dyn Fn(usize, &[u32], &[f32]) -> Option<u32> + 'a;

/// Settings shared by a batch.
pub struct Settings<'a> {
    /// Tokens that end a row.
    pub eos: &'a [u32],
    /// The expert forced into every token's top-k, if any.
    pub forced_expert: Option<usize>,
    /// Tells whether a row's tokens so far have reached a stop string.
    pub stopped: &'a dyn Fn(&[u32]) -> bool,
    /// Picks a row's next token instead of the argmax (constrained decoding): called with the
    /// request's index, its tokens so far and its logits over the vocabulary.
    pub choose: Option<&'a Chooser<'a>>,
}

/// Token and time counts of decoding, summed over batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct DecodeStats {
    /// Batches decoded.
    pub batches: usize,
    /// Prompt tokens run through the model (row suffixes when a prefix is reused; padding not
    /// counted).
    pub prefill_tokens: usize,
    /// Padding slots run through the model with the prompts.
    pub pad_tokens: usize,
    /// Shared prefixes computed, and their tokens (each computed once, with batch 1).
    pub prefixes: usize,
    pub prefix_tokens: usize,
    /// Prompt tokens that came from a reused prefix instead of being computed again.
    pub reused_tokens: usize,
    /// Tokens generated (one per live row per step, EOS included).
    pub decode_tokens: usize,
    /// Seconds spent in prompt forward passes (prefixes included) and in decode steps.
    pub prefill_s: f64,
    pub decode_s: f64,
    /// Answers scored by the guard's margin check (each with its baseline), the positions run
    /// for them (the prompt's rest once, both answers with right padding), and the seconds.
    pub scored: usize,
    pub score_tokens: usize,
    pub score_s: f64,
}

/// Decodes a batch greedily. Prompts must be non-empty.
pub fn greedy_batch(
    decoder: &mut dyn Decoder,
    requests: &[Request],
    settings: &Settings,
) -> Result<Vec<Generated>> {
    greedy_batch_with(
        decoder,
        None,
        requests,
        settings,
        &mut DecodeStats::default(),
    )
}

/// Decodes a batch greedily after a shared `prefix` (already computed; each request's
/// `prompt` is then the row's tokens after it, non-empty). Rows that finish are dropped from
/// the batch when the decoder supports it, so a long tail does not keep the whole batch busy.
pub fn greedy_batch_with(
    decoder: &mut dyn Decoder,
    prefix: Option<&PrefixCache>,
    requests: &[Request],
    settings: &Settings,
    stats: &mut DecodeStats,
) -> Result<Vec<Generated>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let longest = requests.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let max_new = requests.iter().map(|r| r.max_new_tokens).max().unwrap_or(0);
    let mut pads: Vec<usize> = requests.iter().map(|r| longest - r.prompt.len()).collect();
    let pad_id = settings.eos.first().copied().unwrap_or(0);
    let mut flat = Vec::with_capacity(requests.len() * longest);
    for (r, &p) in requests.iter().zip(&pads) {
        flat.extend(std::iter::repeat_n(pad_id, p));
        flat.extend_from_slice(&r.prompt);
    }
    let device = decoder.device().clone();
    let b = requests.len();
    match prefix {
        Some(p) => {
            decoder.reset_with_prefix(p, b, p.len() + longest + max_new)?;
            stats.reused_tokens += b * p.len();
        }
        None => decoder.reset(longest + max_new),
    }
    let input = Tensor::from_vec(flat, (b, longest), &device)?;
    stats.batches += 1;
    stats.prefill_tokens += requests.iter().map(|r| r.prompt.len()).sum::<usize>();
    stats.pad_tokens += pads.iter().sum::<usize>();

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
    // `live[k]` is the request in row k of the decoder's cache.
    let mut live: Vec<usize> = (0..b).collect();
    let t = Instant::now();
    let mut logits = prefill(decoder, &input, &pads, settings.forced_expert)?;
    let mut next = pick(&logits, &live, &out, settings)?;
    stats.prefill_s += t.elapsed().as_secs_f64();
    let t = Instant::now();
    loop {
        for (k, &tok) in next.iter().enumerate() {
            let i = live[k];
            if !done[i] {
                stats.decode_tokens += 1;
                done[i] = advance(&mut out[i], tok, requests[i].max_new_tokens, settings);
            }
        }
        let still: Vec<usize> = (0..live.len()).filter(|&k| !done[live[k]]).collect();
        if still.is_empty() {
            break;
        }
        // Dropping rows copies the cache once; worth it when a quarter of the rows are done.
        if still.len() * 4 <= live.len() * 3 && decoder.retain_rows(&still)? {
            live = still.iter().map(|&k| live[k]).collect();
            pads = still.iter().map(|&k| pads[k]).collect();
            next = still.iter().map(|&k| next[k]).collect();
        }
        // A row that ended this step still needs an input until it is dropped.
        let step: Vec<u32> = next.iter().map(|t| t.unwrap_or(pad_id)).collect();
        let step = Tensor::from_vec(step, (live.len(), 1), &device)?;
        logits = decoder.forward(&step, &pads, settings.forced_expert, Logits::Last)?;
        next = pick(&logits, &live, &out, settings)?;
    }
    stats.decode_s += t.elapsed().as_secs_f64();
    Ok(out)
}

/// Tokens per prefill forward pass (rows × columns). A batch's prompts run through the model
/// in column chunks of about this many tokens, each after the K/V of the ones before: the
/// activations of a chunk stay small enough for the CPU caches, so a large batch (which makes
/// decoding cheaper per token) does not make prefill slower per token. Exact: a chunk sees the
/// cache as the whole prompt would.
/// Measured on 200 chime4 records, batches of 32 rows, SmolLM2 f32, one core: prefill 227 → 285
/// tokens/s with chunks of 512 tokens (16 columns); 1024 and 2048 were in between.
const PREFILL_CHUNK_TOKENS: usize = 512;

/// Runs the padded prompts `input` `(b, len)` in column chunks; the last position's logits.
fn prefill(
    decoder: &mut dyn Decoder,
    input: &Tensor,
    pads: &[usize],
    forced: Option<usize>,
) -> Result<Tensor> {
    let (b, len) = input.dims2()?;
    let step = std::env::var("NEKO_PREFILL_CHUNK")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(PREFILL_CHUNK_TOKENS);
    let chunk = (step / b.max(1)).max(16);
    let mut start = 0;
    loop {
        let n = chunk.min(len - start);
        let part = input.narrow(1, start, n)?;
        // Only the last chunk needs logits: the LM head of every row is as much work as a
        // dozen prompt tokens.
        let last = start + n >= len;
        let wanted = if last { Logits::Last } else { Logits::Hidden };
        let out = decoder.forward(&part, pads, forced, wanted)?;
        start += n;
        if last {
            return Ok(out);
        }
    }
}

/// Each live row's next token: the argmax, or what `settings.choose` picks (`None`: the row
/// ends).
fn pick(
    logits: &Tensor,
    live: &[usize],
    out: &[Generated],
    settings: &Settings,
) -> Result<Vec<Option<u32>>> {
    let Some(choose) = settings.choose else {
        let best: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        return Ok(best.into_iter().map(Some).collect());
    };
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    Ok(live
        .iter()
        .zip(&rows)
        .map(|(&i, row)| choose(i, &out[i].tokens, row))
        .collect())
}

/// The index of the largest logit (the first of equals, as `Tensor::argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Adds one token to a row (`None`: the chooser ended it); returns whether the row is now
/// finished.
fn advance(row: &mut Generated, tok: Option<u32>, max_new: usize, settings: &Settings) -> bool {
    let Some(tok) = tok else {
        row.finish = Finish::Stop;
        return true;
    };
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
