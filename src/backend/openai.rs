//! A client for the OpenAI-compatible completions API (`POST {endpoint}/completions`), as vLLM,
//! TGI, llama.cpp's server, llama-cpp-python and mistral.rs serve it.
//!
//! neko renders the prompt (the same text, or the same token ids, the in-process model
//! decodes) and asks for greedy decoding explicitly: temperature 0 (no top-p: greedy needs none), no penalties
//! (llama.cpp's servers default to a repeat penalty of 1.1), the answer bound as `max_tokens`
//! and the stop strings. Requests go out from a pool of `concurrency` threads with blocking
//! HTTP (ureq): every request is independent and the server does the batching, so threads
//! are all the concurrency needed, without an async runtime. A request that fails with 429,
//! a 5xx status, a timeout or a dropped connection is retried with exponential backoff
//! (honouring `Retry-After`); one that still fails, or fails with another status, becomes the
//! record's error.
//!
//! A server that is gone is not a record's fault: when requests keep failing after their
//! retries (connection refused, timeouts, 5xx), or the server says the endpoint or model does
//! not exist or the key is refused (404, 401, 403), the run stops ([`Backend::failure`]) and
//! the records not answered get no line, so `--resume` sends them again. Otherwise a dead
//! server would turn the rest of a long run into 1-best error lines that a resume keeps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Backend, Generation, Prompt};
use crate::correct::STOPPED;
use crate::generate::Finish;
use crate::Task;

/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Requests in a row that fail after all their retries before the server counts as gone (at
/// least this many, and at least `concurrency`: a window's requests fail together).
const GONE_AFTER: usize = 8;

/// The limit on opening a connection: a wrong endpoint should fail in seconds, not after a
/// generation's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The limit on one models listing (at connect, and to ask whether a failing server is still
/// there): a trivial request, but a busy server may be slow to answer it.
const LISTING_TIMEOUT: Duration = Duration::from_secs(60);

/// How the prompt is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PromptAs {
    /// The rendered text; the server tokenizes it, parsing special tokens such as
    /// `<|im_start|>` (every engine accepts text).
    #[default]
    Text,
    /// The token ids neko's tokenizer gives (vLLM and llama.cpp's server accept them; TGI and
    /// llama-cpp-python do not): the server sees exactly what the in-process model does.
    Ids,
}

/// Connection and request settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The API's base URL, up to and including `/v1` (`http://127.0.0.1:8000/v1`).
    pub endpoint: String,
    /// The `model` field of requests; `None` takes the first model the server lists.
    pub model: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Limit on one attempt (connect, send, wait, read).
    pub timeout: Duration,
    /// Attempts after the first, for 429, 5xx, timeouts and connection errors.
    pub retries: u32,
    /// Wait before the first retry; it doubles with each further one (at most 30 s).
    pub backoff: Duration,
    pub prompt_as: PromptAs,
    /// Strings that end an answer (sent as `stop`).
    pub stop: Vec<String>,
    /// Sent as `Authorization: Bearer KEY` (vLLM's `--api-key`).
    pub api_key: Option<String>,
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt (after the server's `Retry-After`, when it sent one).
    Transient(String, Option<Duration>),
    /// Another attempt would fail the same way.
    Permanent(String),
    /// Every request would fail: the endpoint or model does not exist, or the key is refused.
    Fatal(String),
}

/// How a request ended after its retries.
enum Gave {
    /// The retries are spent (the server may be gone).
    Up(String),
    /// A Ctrl-C came while retrying: no more requests; the record waits for `--resume`.
    Stopped,
    /// This request cannot succeed.
    Permanent(String),
    /// No request can.
    Fatal(String),
}

impl Gave {
    fn message(self) -> String {
        match self {
            Gave::Up(m) | Gave::Permanent(m) | Gave::Fatal(m) => m,
            Gave::Stopped => STOPPED.to_string(),
        }
    }
}

/// An OpenAI-compatible completions server.
pub struct OpenAi {
    agent: ureq::Agent,
    options: Options,
    /// The `model` field sent.
    model: String,
    /// Requests in a row that failed after their retries.
    failing: AtomicUsize,
    /// Why the server counts as gone, once it does.
    gone: Mutex<Option<String>>,
    /// Set by Ctrl-C: no new request goes out.
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl OpenAi {
    /// Connects: asks the server for its models (`GET {endpoint}/models`, retried like any
    /// request), so a wrong endpoint stops the run before any record is read, and takes the
    /// first listed model when none was named.
    pub fn connect(mut options: Options) -> anyhow::Result<Self> {
        options.endpoint = options.endpoint.trim_end_matches('/').to_string();
        // Without a scheme every request fails as if the server were busy, retried for
        // nothing.
        if !(options.endpoint.starts_with("http://") || options.endpoint.starts_with("https://")) {
            anyhow::bail!(
                "{}: an endpoint starts with http:// (or https://), e.g. http://localhost:8000/v1",
                options.endpoint
            );
        }
        if options.endpoint.starts_with("https://") && !cfg!(feature = "tls") {
            anyhow::bail!(
                "{}: https needs neko built with `--features tls` (this build speaks plain http)",
                options.endpoint
            );
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(options.timeout))
            .timeout_connect(Some(options.timeout.min(CONNECT_TIMEOUT)))
            .max_idle_connections(options.concurrency.max(1))
            .max_idle_connections_per_host(options.concurrency.max(1))
            .build();
        let mut client = OpenAi {
            agent: config.into(),
            model: options.model.clone().unwrap_or_default(),
            options,
            failing: AtomicUsize::new(0),
            gone: Mutex::new(None),
            stop: None,
        };
        let url = format!("{}/models", client.options.endpoint);
        let listed = (client.with_retries(|| client.listing())).map_err(Gave::message);
        let ids: Vec<String> = match &listed {
            Ok(v) => v["data"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m["id"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        match (&client.options.model, listed) {
            (None, Err(e)) => anyhow::bail!("{e}"),
            (None, Ok(_)) => {
                client.model = ids.first().cloned().ok_or_else(|| {
                    anyhow::anyhow!("{url} lists no model: name one with --served-model")
                })?;
            }
            (Some(_), Err(e)) if e.contains("HTTP 404") => {
                // A server without the listing can still serve the named model.
            }
            (Some(_), Err(e)) => anyhow::bail!("{e}"),
            (Some(m), Ok(_)) if !ids.is_empty() && !ids.contains(m) => {
                crate::say!("neko: warning: {url} lists {ids:?}, not `{m}`; sending `{m}` anyway")
            }
            (Some(_), Ok(_)) => {}
        }
        Ok(client)
    }

    /// The `model` field this client sends.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// One completion, with retries.
    fn complete(&self, prompt: &Prompt) -> Result<Generation, String> {
        if prompt.max_new_tokens == 0 {
            // Servers read 0 as "no limit"; in process it is an empty answer.
            return Ok(Generation {
                text: String::new(),
                finish: Finish::Length,
                tokens: 0,
            });
        }
        if self.gone().is_some() || self.interrupted() {
            return Err(STOPPED.to_string());
        }
        let g = self.request(prompt, &self.options.stop)?;
        // In process, stop strings count only once the answer has some text (a leading
        // newline does not end it); a server stops at once. Ask again without stop strings
        // and let the answer be cut where the in-process decoder would have stopped.
        if g.finish == Finish::Stop && g.text.trim().is_empty() && !self.options.stop.is_empty() {
            if self.interrupted() {
                return Err(STOPPED.to_string());
            }
            let mut g = self.request(prompt, &[])?;
            let text = g.text.trim_start();
            if self
                .options
                .stop
                .iter()
                .any(|s| !s.is_empty() && text.contains(s.as_str()))
            {
                g.finish = Finish::Stop;
            }
            return Ok(g);
        }
        Ok(g)
    }

    /// The request body: the prompt and explicit greedy settings.
    fn body(&self, prompt: &Prompt, stop: &[String]) -> Value {
        let p = match self.options.prompt_as {
            PromptAs::Text => json!(prompt.text),
            PromptAs::Ids => json!(prompt.ids),
        };
        json!({
            "model": self.model,
            "prompt": p,
            "max_tokens": prompt.max_new_tokens,
            "temperature": 0.0,
            "n": 1,
            "stream": false,
            "stop": stop,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            // Engine-specific names of the same "no penalty" (llama.cpp, vLLM/TGI).
            "repeat_penalty": 1.0,
            "repetition_penalty": 1.0,
            // vLLM: keep special tokens in the text, as in process, so the guard sees a
            // leaking prompt.
            "skip_special_tokens": false,
        })
    }

    fn request(&self, prompt: &Prompt, stop: &[String]) -> Result<Generation, String> {
        let url = format!("{}/completions", self.options.endpoint);
        let body = self.body(prompt, stop).to_string();
        let v = match self.with_retries(|| self.call(&url, Some(&body), None)) {
            Ok(v) => {
                self.failing.store(0, Ordering::SeqCst);
                v
            }
            Err(Gave::Fatal(m)) => return Err(self.give_up(m)),
            Err(Gave::Up(m)) => {
                let failing = self.failing.fetch_add(1, Ordering::SeqCst) + 1;
                if failing >= GONE_AFTER.max(self.options.concurrency) {
                    let m = format!("{failing} requests in a row failed; the last: {m}");
                    return Err(self.give_up(m));
                }
                return Err(m);
            }
            Err(Gave::Permanent(m)) => return Err(m),
            Err(Gave::Stopped) => return Err(STOPPED.to_string()),
        };
        let parsed = parse_completion(&v).map_err(|m| format!("{url}: {m}"));
        // Another API answering at this path fails every record alike: the run stops, and
        // `--resume` sends them to the right endpoint, rather than each getting an error line.
        match parsed {
            Err(m) if v.get("choices").is_none() && v.get("content").is_some() => {
                Err(self.give_up(m))
            }
            parsed => parsed,
        }
    }

    /// One `GET {endpoint}/models`.
    fn listing(&self) -> Result<Value, Failure> {
        let url = format!("{}/models", self.options.endpoint);
        let limit = self.options.timeout.min(LISTING_TIMEOUT);
        self.call(&url, None, Some(limit))
    }

    /// After a window whose last requests failed for good: a server that no longer answers
    /// its models listing either is gone, and those records get no line.
    fn still_there(&self) {
        let failing = self.failing.load(Ordering::SeqCst);
        if failing == 0 || self.gone().is_some() {
            return;
        }
        // Only a listing that cannot be had (refused, timed out, 5xx) says so: a server
        // without the route (404) may still be serving.
        if let Err(Failure::Transient(m, _)) = self.listing() {
            self.give_up(format!(
                "{failing} request(s) failed and the server no longer answers: {m}"
            ));
        }
    }

    /// Marks the server gone for `why`; the record gets no line ([`STOPPED`]).
    fn give_up(&self, why: String) -> String {
        let mut gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
        gone.get_or_insert(why);
        STOPPED.to_string()
    }

    /// Sleeps `time`, or less when a Ctrl-C comes (it is looked at every 100 ms), so that a
    /// run waiting to retry stops at once.
    fn wait(&self, time: Duration) {
        let until = std::time::Instant::now() + time;
        while !self.interrupted() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    /// Whether a Ctrl-C (or SIGTERM) came: no new request goes out, retries included.
    fn interrupted(&self) -> bool {
        (self.stop.as_ref()).is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Why the server counts as gone, if it does.
    fn gone(&self) -> Option<String> {
        self.gone.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
    fn with_retries(&self, attempt: impl Fn() -> Result<Value, Failure>) -> Result<Value, Gave> {
        let mut delay = self.options.backoff;
        let mut tries = 0;
        loop {
            // A Ctrl-C during the wait before a retry: that retry does not go out.
            if tries > 0 && self.interrupted() {
                return Err(Gave::Stopped);
            }
            tries += 1;
            match attempt() {
                Ok(v) => return Ok(v),
                Err(Failure::Permanent(m)) => return Err(Gave::Permanent(m)),
                Err(Failure::Fatal(m)) => return Err(Gave::Fatal(m)),
                Err(Failure::Transient(m, after)) => {
                    if self.interrupted() {
                        return Err(Gave::Stopped);
                    }
                    if tries > self.options.retries || self.gone().is_some() {
                        return Err(Gave::Up(format!("{m} (gave up after {tries} attempts)")));
                    }
                    // A server's Retry-After, but never less than the backoff (`0` spent every
                    // attempt within milliseconds).
                    let backoff = jitter(delay);
                    self.wait(after.map_or(backoff, |a| a.max(backoff)).min(MAX_DELAY));
                    delay = (delay * 2).min(MAX_DELAY);
                }
            }
        }
    }

    /// One HTTP exchange: a POST of `body`, or a GET without one; `limit` replaces the
    /// agent's timeout.
    fn call(
        &self,
        url: &str,
        body: Option<&str>,
        limit: Option<Duration>,
    ) -> Result<Value, Failure> {
        let auth = self.options.api_key.as_ref().map(|k| format!("Bearer {k}"));
        let sent = match body {
            Some(b) => {
                let mut req = self
                    .agent
                    .post(url)
                    .config()
                    .timeout_global(Some(limit.unwrap_or(self.options.timeout)))
                    .build()
                    .header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.send(b)
            }
            None => {
                let mut req = (self.agent.get(url).config())
                    .timeout_global(Some(limit.unwrap_or(self.options.timeout)))
                    .build();
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
        };
        let mut response = sent.map_err(|e| Failure::Transient(format!("{url}: {e}"), None))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read as bytes: an answer that is not UTF-8 is the server's answer (decoded lossily, as
        // in process), not a broken connection to retry and count toward "server gone".
        let bytes = response
            .body_mut()
            .read_to_vec()
            .map_err(|e| Failure::Transient(format!("{url}: reading the answer: {e}"), None))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if status == 200 {
            return serde_json::from_str(&text).map_err(|e| {
                Failure::Permanent(format!("{url}: not JSON ({e}): {}", clip(&text)))
            });
        }
        let message = format!("{url}: HTTP {status}: {}", error_message(&text));
        if status == 408 || status == 429 || status >= 500 {
            Err(Failure::Transient(message, retry_after))
        } else if matches!(status, 401 | 403 | 404) {
            Err(Failure::Fatal(message))
        } else {
            Err(Failure::Permanent(message))
        }
    }
}

impl Backend for OpenAi {
    fn generate(&mut self, _task: Task, prompts: &[Prompt]) -> Vec<Result<Generation, String>> {
        let next = AtomicUsize::new(0);
        let mut results: Vec<Option<Result<Generation, String>>> = vec![None; prompts.len()];
        let workers = self.options.concurrency.clamp(1, prompts.len().max(1));
        let this = &*self;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(p) = prompts.get(i) else { break };
                            done.push((i, this.complete(p)));
                        }
                        done
                    })
                })
                .collect();
            for h in handles {
                for (i, r) in h.join().expect("a request thread panicked") {
                    results[i] = Some(r);
                }
            }
        });
        self.still_there();
        let gone = self.gone().is_some();
        results
            .into_iter()
            .map(|r| match r.expect("every prompt was sent") {
                // Failed while the server was going: sent again by a resumed run.
                Err(_) if gone => Err(STOPPED.to_string()),
                r => r,
            })
            .collect()
    }

    fn stop_when(&mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.stop = Some(flag);
    }

    fn signature(&self) -> String {
        let how = match self.options.prompt_as {
            PromptAs::Text => "text",
            PromptAs::Ids => "ids",
        };
        format!("backend:openai:{}|prompt_as:{how}", self.model)
    }

    fn failure(&self) -> Option<String> {
        self.gone()
    }

    fn window(&self) -> usize {
        // Windows run one after another, so the server drains at each window's end while its
        // last requests finish; eight rounds of `concurrency` keep that tail short.
        (self.options.concurrency * 8).max(64)
    }
}

/// The generation in a completions response.
fn parse_completion(v: &Value) -> Result<Generation, String> {
    let choice = v["choices"].get(0).ok_or_else(|| {
        // llama.cpp's server answers its own /completion format at /completions too.
        let hint = match v.get("content").is_some() {
            true => " (llama.cpp's own format: give the endpoint with its /v1)",
            false => "",
        };
        format!("no `choices` in the answer{hint}: {}", clip(&v.to_string()))
    })?;
    let text = choice["text"].as_str().ok_or_else(|| {
        format!(
            "no `choices[0].text` in the answer: {}",
            clip(&v.to_string())
        )
    })?;
    // Only a stop (or the end token) is a finished answer; `length`, an `abort` or anything
    // else a server says is cut off, which the guard sends back.
    let finish = match choice["finish_reason"].as_str() {
        Some("stop" | "eos" | "eos_token" | "stop_sequence") => Finish::Stop,
        _ => Finish::Length,
    };
    let tokens = v["usage"]["completion_tokens"].as_u64().unwrap_or(0) as usize;
    Ok(Generation {
        text: text.to_string(),
        finish,
        tokens,
    })
}

/// The message in an error body: OpenAI's and vLLM's `{"error": {"message"}}`, TGI's
/// `{"error": "..."}`, FastAPI's `{"detail": ...}`, or the text itself.
fn error_message(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return clip(body);
    };
    let m = match (&v["error"], &v["detail"]) {
        (Value::Object(e), _) => e.get("message").cloned().unwrap_or(v["error"].clone()),
        (Value::String(_), _) => v["error"].clone(),
        (_, d) if !d.is_null() => d.clone(),
        _ => v.clone(),
    };
    clip(m.as_str().map_or(&m.to_string(), |s| s))
}

/// At most 300 characters of a server's text, on one line.
fn clip(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &one_line[..at]),
        None => one_line,
    }
}

/// `d` stretched by up to a quarter, so requests that failed together do not all come back
/// at the same moment.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d.mul_f64(1.0 + f64::from(nanos % 1000) / 4000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_of_each_engine() {
        assert_eq!(
            error_message(r#"{"error": {"message": "too long", "type": "BadRequest"}}"#),
            "too long"
        );
        assert_eq!(
            error_message(r#"{"error": "Input validation error", "error_type": "validation"}"#),
            "Input validation error"
        );
        assert!(
            error_message(r#"{"detail": [{"msg": "field required"}]}"#).contains("field required")
        );
        assert_eq!(error_message("Bad Gateway\n"), "Bad Gateway");
    }

    #[test]
    fn completions_parse_and_map_finish_reasons() {
        let v = json!({"choices": [{"text": " fixed", "finish_reason": "length"}], "usage": {"completion_tokens": 7}});
        assert_eq!(
            parse_completion(&v).unwrap(),
            Generation {
                text: " fixed".into(),
                finish: Finish::Length,
                tokens: 7
            }
        );
        let v = json!({"choices": [{"text": "a", "finish_reason": "stop"}]});
        assert_eq!(parse_completion(&v).unwrap().finish, Finish::Stop);
        // TGI's end token is a stop; vLLM's `abort`, or no reason, is an answer cut off.
        for (reason, finish) in [
            (json!("eos_token"), Finish::Stop),
            (json!("abort"), Finish::Length),
            (Value::Null, Finish::Length),
        ] {
            let v = json!({"choices": [{"text": "a", "finish_reason": reason}]});
            assert_eq!(parse_completion(&v).unwrap().finish, finish, "{reason}");
        }
        assert!(parse_completion(&json!({"object": "error"})).is_err());
    }
}
