//! The guard's scores of an answer, computed with the corrector's model: its margin (the
//! answer's log-probability over its baseline's, after the task's prompt) and the base model's
//! opinion (the same two texts alone, the experts left out).

use candle_core::{DType, Tensor, D};

use super::{without_backtrace, Correction, Corrector};
use crate::guard;
use crate::model::{Decoder, Logits, PrefixCache};
use crate::record::Record;
use crate::Task;

impl Corrector {
    /// The guard's margin check ([`guard::check_margin`]) of an answer the other checks kept
    /// and that differs from its baseline ([`guard::margin_baseline`]), then, for an answer it
    /// keeps, the base model's ([`guard::check_base_lm`]). Only in-process: a served model
    /// cannot score text here (its corrector's guard has neither, see
    /// [`Corrector::with_backend`]).
    pub(super) fn check_margin(
        &mut self,
        task: Task,
        forced: Option<usize>,
        record: &Record,
        prompt: &[u32],
        c: &mut Correction,
    ) {
        let best = record.best().unwrap_or_default();
        if c.guard.is_some() || self.options.guard.margin(task).is_none() {
            return;
        }
        let written = c.written.clone().unwrap_or_else(|| c.text.clone());
        let Some(scored) = self.margin(task, forced, prompt, best, &written) else {
            return;
        };
        let margin = c.score_or_warn(scored, "margin");
        c.margin = margin.is_finite().then_some(margin);
        if let Some(reason) = guard::check_margin(margin, task, &self.options.guard) {
            return c.fall_back(reason, best);
        }
        if !self.options.guard.asks_base_lm(task) {
            return;
        }
        let baseline = guard::margin_baseline(task, &written, best);
        let diff = c.score_or_warn(self.base_lm_diff(&written, &baseline), "base model");
        c.base_lm = diff.is_finite().then_some(diff);
        if let Some(reason) = guard::check_base_lm(diff, task, &self.options.guard) {
            c.fall_back(reason, best);
        }
    }

    /// The base model's log-probability of `answer` minus `baseline`'s, in nats to 1/1000,
    /// each text alone between document separators ([`Corrector::document_separators`]): the
    /// model's experts are left out ([`crate::model::Decoder::set_base_only`]), and no prompt
    /// is read, so this is plain English's opinion of the words.
    pub fn base_lm_diff(&mut self, answer: &str, baseline: &str) -> Result<f64, String> {
        let (open, close) = self.document_separators()?;
        let mut rows = Vec::with_capacity(2);
        for text in [answer, baseline] {
            let enc = (self.model.tokenizer.encode(text, false))
                .map_err(|e| format!("tokenizer: {e}"))?;
            rows.push([&[open], enc.get_ids(), &[close]].concat());
        }
        let width = rows.iter().map(Vec::len).max().unwrap_or(2);
        if width > self.model.config.max_position_embeddings {
            return Err(format!("{width} tokens, more than the model's context"));
        }
        // Right-padded to one width; nothing reads the padding.
        let mut ids = Vec::with_capacity(2 * width);
        for r in &rows {
            ids.extend_from_slice(r);
            ids.extend(std::iter::repeat_n(close, width - r.len()));
        }
        let decoder = self.model.decoder.as_mut();
        decoder.set_base_only(true);
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let dev = decoder.device().clone();
            decoder.reset(width);
            let all = Tensor::from_vec(ids, (2, width), &dev)?;
            let input = all.narrow(1, 0, width - 1)?;
            let target = all.narrow(1, 1, width - 1)?.contiguous()?;
            let logits = decoder.forward(&input, &[0, 0], None, Logits::All)?;
            let lp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
            lp.gather(&target.unsqueeze(2)?, 2)?
                .squeeze(2)?
                .to_vec2::<f32>()
        };
        let lp = run();
        decoder.set_base_only(false);
        let lp = lp.map_err(|e| format!("scoring failed: {}", without_backtrace(&e)))?;
        let score =
            |b: usize| -> f64 { lp[b][..rows[b].len() - 1].iter().map(|&x| x as f64).sum() };
        Ok(crate::output::margin_digits(score(0) - score(1)))
    }

    /// The tokens a text is scored between as a document of its own: `<|endoftext|>` on both
    /// sides where the tokenizer has it (how GPT-2-style models such as SmolLM2 separate
    /// documents in pre-training), else the model's BOS and EOS.
    pub(super) fn document_separators(&self) -> Result<(u32, u32), String> {
        if let Some(t) = self.model.tokenizer.token_to_id("<|endoftext|>") {
            return Ok((t, t));
        }
        let eos = self.model.config.eos_token_ids.first().copied();
        match (self.model.config.bos_token_id, eos) {
            (Some(b), Some(e)) => Ok((b, e)),
            _ => Err("the model names no document separators (BOS and EOS)".into()),
        }
    }

    /// The margin of `written` (an answer as the model wrote it) over its
    /// [`guard::margin_baseline`], in nats to 1/1000; `None` where they are the same text.
    pub(super) fn margin(
        &mut self,
        task: Task,
        forced: Option<usize>,
        prompt: &[u32],
        best: &str,
        written: &str,
    ) -> Option<Result<f64, String>> {
        let baseline = guard::margin_baseline(task, written, best);
        if baseline == written {
            return None;
        }
        let scored = self.score_answers(task, forced, prompt, [written, &baseline]);
        // Rounded as output lines carry it, so that `neko guard` re-reading a line decides as
        // this run did.
        Some(scored.map(|[answer, baseline]| crate::output::margin_digits(answer - baseline)))
    }

    /// Whether the guard's base-model check can run: the model has a base under its experts
    /// and the check is asked for.
    pub fn has_base_lm(&self) -> bool {
        matches!(self.options.guard.base_lm, guard::BaseLm::On(_))
    }

    /// The guard's margin of an answer to `record` written elsewhere (`neko guard --score`: a
    /// served model's, another engine's), scored with this corrector's model and prompt as
    /// `neko correct` scores its own; `None` where the answer only reformats the 1-best (ASR)
    /// or equals it. The task's shared prompt prefix is cached across calls.
    pub fn margin_of(
        &mut self,
        task: Task,
        record: &Record,
        written: &str,
    ) -> Result<Option<f64>, String> {
        let forced = self.forced_expert(task)?;
        let request = self.request(task, record)?;
        let prompt = request.prompt.clone();
        self.shared_prefix(task, forced, &[(0, request)])
            .map_err(|e| format!("prompt prefix: {e}"))?;
        let best = record.best().unwrap_or_default();
        self.margin(task, forced, &prompt, best, written)
            .transpose()
    }

    /// Log-probabilities (nats) of two answers to one prompt, each as the whole answer: its
    /// tokens then the end token. Both rows run in one batch after the task's shared prefix
    /// when it is cached.
    pub(super) fn score_answers(
        &mut self,
        task: Task,
        forced: Option<usize>,
        prompt: &[u32],
        answers: [&str; 2],
    ) -> Result<[f64; 2], String> {
        let eos = *self
            .model
            .config
            .eos_token_ids
            .first()
            .ok_or("the model names no end token")?;
        let prefix = self
            .prefixes
            .get(&task)
            .filter(|p| p.len() < prompt.len() && prompt.starts_with(&p.tokens))
            .cloned();
        let start = prefix.as_ref().map_or(0, PrefixCache::len);
        let rest = &prompt[start..];
        let mut rows = Vec::with_capacity(2);
        for a in answers {
            let enc = self
                .model
                .tokenizer
                .encode(a, false)
                .map_err(|e| format!("tokenizer: {e}"))?;
            rows.push([enc.get_ids(), &[eos]].concat());
        }
        // Answers padded on the right to one width, where nothing reads the padding.
        let width = rows.iter().map(Vec::len).max().unwrap_or(1);
        let context = self.model.config.max_position_embeddings;
        if prompt.len() + width > context {
            // An answer written elsewhere (`neko guard --score`) that ran to the token limit
            // after a prompt cut to fit: the model cannot read both.
            let needed = prompt.len() + width;
            return Err(format!(
                "the prompt and the answer need {needed} positions, the model has {context}"
            ));
        }
        let mut targets = Vec::with_capacity(2 * width);
        for r in &rows {
            targets.extend_from_slice(r);
            targets.extend(std::iter::repeat_n(eos, width - r.len()));
        }
        let started = std::time::Instant::now();
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let decoder = self.model.decoder.as_mut();
            let dev = decoder.device().clone();
            let capacity = rest.len() + width;
            let reset = |decoder: &mut dyn Decoder, rows: usize| match &prefix {
                Some(p) => decoder.reset_with_prefix(p, rows, start + capacity),
                None => {
                    decoder.reset(capacity);
                    Ok(())
                }
            };
            // The prompt's rest once; its last position predicts the first answer token. Its
            // cache row is then copied for the second answer (a decoder that cannot copy rows
            // runs the prompt in two rows). Then the answers: position k predicts token k + 1;
            // logits are computed for the answer positions only.
            reset(decoder, 1)?;
            let prompt = Tensor::new(rest, &dev)?.unsqueeze(0)?;
            let mut first = decoder.forward(&prompt, &[0], forced, Logits::Last)?;
            if decoder.retain_rows(&[0, 0])? {
                first = first.repeat((2, 1))?;
            } else {
                reset(decoder, 2)?;
                let rows = prompt.repeat((2, 1))?;
                first = decoder.forward(&rows, &[0, 0], forced, Logits::Last)?;
            }
            let answers = Tensor::from_vec(targets, (2, width), &dev)?;
            let mut logits = first.unsqueeze(1)?;
            if width > 1 {
                let next = decoder.forward(&answers, &[0, 0], forced, Logits::All)?;
                logits = Tensor::cat(&[logits, next.narrow(1, 0, width - 1)?], 1)?;
            }
            let lp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
            lp.gather(&answers.unsqueeze(2)?, 2)?
                .squeeze(2)?
                .to_vec2::<f32>()
        };
        let lp = run().map_err(|e| format!("scoring failed: {}", without_backtrace(&e)))?;
        self.stats.scored += 1;
        self.stats.score_tokens += rest.len() + 2 * width;
        self.stats.score_s += started.elapsed().as_secs_f64();
        let score = |b: usize| -> f64 { lp[b][..rows[b].len()].iter().map(|&x| x as f64).sum() };
        Ok([score(0), score(1)])
    }
}
