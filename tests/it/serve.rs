//! `neko correct --backend openai` (issue 7). Request shape, retries, error lines, order and
//! resume run against a small HTTP server inside the test (always); identical corrections run
//! against a real llama-cpp-python server serving SmolLM2, which `.ci/run` starts with
//! `scripts/llama_server.sh` and names in NEKO_TEST_OPENAI_ENDPOINT / NEKO_TEST_OPENAI_GGUF
//! (the tests print `SKIP:` without it).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{fixture, json_lines, neko, ok, shared_data};

/// What the fake server answers: status, JSON body, and how long to wait first.
struct Reply {
    status: u16,
    body: Value,
    delay: Duration,
}

impl Reply {
    fn ok(text: &str) -> Self {
        Reply {
            status: 200,
            body: json!({"choices": [{"text": text, "finish_reason": "stop"}],
                         "usage": {"completion_tokens": 3}}),
            delay: Duration::ZERO,
        }
    }

    fn error(status: u16, message: &str) -> Self {
        Reply {
            status,
            body: json!({"error": {"message": message}}),
            delay: Duration::ZERO,
        }
    }
}

type Handler = dyn Fn(&Value, usize) -> Reply + Send + Sync;

/// An OpenAI-compatible server on 127.0.0.1 for one test: `GET /v1/models` lists `tiny`;
/// `POST /v1/completions` is answered by the handler, given the body and how many times this
/// same prompt was sent before. Every completion body is kept.
struct FakeServer {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl FakeServer {
    fn start(handler: impl Fn(&Value, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with_models(handler, Arc::new(AtomicU16::new(200)))
    }

    /// [`FakeServer::start`] whose models listing answers with the status in `models` (200:
    /// the list; 503: a server going down; 404: a server without the route).
    fn start_with_models(
        handler: impl Fn(&Value, usize) -> Reply + Send + Sync + 'static,
        models: Arc<AtomicU16>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (handler, kept, seen) = (handler.clone(), kept.clone(), seen.clone());
                let up = models.clone();
                std::thread::spawn(move || serve(stream, &*handler, &kept, &seen, &up));
            }
        });
        FakeServer { url, bodies }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Answers the requests of one keep-alive connection until the client closes it.
fn serve(
    stream: TcpStream,
    handler: &Handler,
    kept: &Mutex<Vec<Value>>,
    seen: &Mutex<HashMap<String, usize>>,
    models: &AtomicU16,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let listing = request_line.starts_with("GET /v1/models");
        let reply = if listing && models.load(SeqCst) != 200 {
            Reply::error(models.load(SeqCst), "no listing")
        } else if listing {
            Reply {
                status: 200,
                body: json!({"object": "list", "data": [{"id": "tiny", "object": "model"}]}),
                delay: Duration::ZERO,
            }
        } else {
            let body: Value = serde_json::from_slice(&body).unwrap();
            let key = body["prompt"].to_string();
            let before = {
                let mut seen = seen.lock().unwrap();
                let n = seen.entry(key).or_default();
                *n += 1;
                *n - 1
            };
            kept.lock().unwrap().push(body.clone());
            handler(&body, before)
        };
        std::thread::sleep(reply.delay);
        let text = reply.body.to_string();
        // 429 says when to come back (at once); other failures leave it to neko's backoff.
        let retry_after = if reply.status == 429 {
            "Retry-After: 0\r\n"
        } else {
            ""
        };
        let head = format!(
            "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry_after}\r\n",
            reply.status,
            text.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

/// The 1-best in an ASR prompt (`### Best-hypothesis:\n<best>.\n`).
fn best_in(prompt: &str) -> String {
    let after = prompt.split("### Best-hypothesis:\n").nth(1).unwrap();
    after
        .lines()
        .next()
        .unwrap()
        .trim_end_matches('.')
        .to_string()
}

/// `n` ASR records as JSONL.
fn records(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"id\": \"r{i}\", \"input\": [\"the cat sat number {i}\", \"a cat sat\"]}}\n"
            )
        })
        .collect()
}

/// `neko correct --backend openai` against `url`, rendering with `model`'s tokenizer.
fn openai(url: &str, model: &Path) -> std::process::Command {
    let mut c = neko();
    c.args(["correct", "--task", "asr", "--backend", "openai"])
        .args(["--endpoint", url, "--retry-backoff", "0.01", "--model"])
        .arg(model);
    c
}

/// [`openai`] with the tiny fixture's tokenizer.
fn served(url: &str) -> std::process::Command {
    openai(url, &fixture("tiny-llama"))
}

fn write_records(dir: &Path, n: usize) -> PathBuf {
    let input = dir.join("in.jsonl");
    std::fs::write(&input, records(n)).unwrap();
    input
}

/// Guard flags that let a fake server's "cat" → "dog" through: one word in five changed is over
/// ASR's default limit (0.1), the word is one the hypotheses agree on, and the answer is none of
/// them.
const LET_DOG_THROUGH: &[&str] = &[
    "--guard-max-edit",
    "0.3",
    "--guard-agreed",
    "free",
    "--guard-nbest",
    "free",
];

/// `n` records corrected through `server` with `flags`: the output lines and stderr.
fn served_records(server: &FakeServer, n: usize, flags: &[&str]) -> (Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = write_records(dir.path(), n);
    let out = ok(served(&server.url).args(flags).arg(&input));
    (
        json_lines(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn openai_backend_sends_the_rendered_prompt_and_greedy_settings() {
    let server = FakeServer::start(|body, _| {
        let best = best_in(body["prompt"].as_str().unwrap_or(""));
        // A correction, then what a server may add before its stop string.
        Reply::ok(&format!(" {}\n", best.replace("cat", "dog")))
    });
    let (got, err) = served_records(
        &server,
        5,
        &[&["--concurrency", "2"], LET_DOG_THROUGH].concat(),
    );
    for (i, line) in got.iter().enumerate() {
        assert_eq!(line["id"], format!("r{i}"));
        assert_eq!(line["prediction"], format!("the dog sat number {i}"));
    }
    // The summary counts the answers that changed their 1-best.
    assert!(
        err.contains("5 answered (5 changed from their 1-best)"),
        "{err}"
    );
    // What in-process decoding would be given: the same prompts, as ids.
    let dir = tempfile::tempdir().unwrap();
    let input = write_records(dir.path(), 5);
    let dump = ok(neko()
        .args(["correct", "--task", "asr", "--dump-prompts", "--model"])
        .arg(fixture("tiny-llama"))
        .arg(&input));
    let dumped = json_lines(&dump.stdout);
    let tokenizer = tokenizers::Tokenizer::from_file(fixture("tiny-llama/tokenizer.json")).unwrap();
    let mut bodies = server.bodies();
    bodies.sort_by_key(|b| best_in(b["prompt"].as_str().unwrap()));
    assert_eq!(bodies.len(), 5);
    for (body, want) in bodies.iter().zip(&dumped) {
        let text = body["prompt"].as_str().unwrap();
        let ids = tokenizer.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(
            json!(ids),
            want["ids"],
            "the text encodes to the in-process ids"
        );
        assert_eq!(body["max_tokens"], want["max_new_tokens"]);
        assert_eq!(body["model"], "tiny", "the listed model by default");
        assert_eq!(body["temperature"], 0.0);
        // No top_p: greedy without it, and TGI refuses 1.0 (it wants 0 < top_p < 1).
        assert!(body.get("top_p").is_none(), "{body}");
        assert_eq!(body["repeat_penalty"], 1.0);
        assert_eq!(body["stop"], json!(["\n"]));
        assert_eq!(body["stream"], false);
    }

    // --prompt-as ids sends exactly the in-process ids.
    let ids_server = FakeServer::start(|_, _| Reply::ok("x"));
    ok(served(&ids_server.url)
        .args(["--prompt-as", "ids", "--served-model", "tiny"])
        .arg(&input));
    let mut sent: Vec<Value> = ids_server
        .bodies()
        .iter()
        .map(|b| b["prompt"].clone())
        .collect();
    let mut want: Vec<Value> = dumped.iter().map(|d| d["ids"].clone()).collect();
    sent.sort_by_key(Value::to_string);
    want.sort_by_key(Value::to_string);
    assert_eq!(sent, want);
    // By default the guard holds ASR answers to what the hypotheses agree on: both say "cat".
    let (held, err) = served_records(&server, 2, &["--guard-max-edit", "0.3"]);
    for line in &held {
        assert_eq!(line["guard"], "fallback:agreed", "{line}");
    }
    assert!(err.contains("+agreed+pick+dropped+spacing|"), "{err}");
}

/// An ASR answer must be one of its hypotheses (`--guard-nbest pick`): with a single hypothesis
/// only its formatting may change, and stderr says how to let the model correct words.
#[test]
fn a_single_hypothesis_keeps_its_words_unless_the_model_may_write() {
    let server = FakeServer::start(|body, _| {
        let best = best_in(body["prompt"].as_str().unwrap_or(""));
        Reply::ok(&format!(" {}\n", best.replace("cat", "dog")))
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"id": "one", "input": ["the cat sat number one"]}"#,
            "\n",
            r#"{"id": "two", "input": ["the cat sat number two", "the dog sat number two"]}"#,
            "\n"
        ),
    )
    .unwrap();
    let run = |flags: &[&str]| {
        let out = ok(served(&server.url)
            .args(["--guard-max-edit", "0.3", "--guard-agreed", "free"])
            .args(flags)
            .arg(&input));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (json_lines(&out.stdout), err)
    };
    let (picked, err) = run(&[]);
    assert_eq!(picked[0]["guard"], "fallback:nbest", "{}", picked[0]);
    assert_eq!(picked[0]["prediction"], "the cat sat number one");
    // The second record's answer is its second hypothesis: a pick.
    assert!(picked[1].get("guard").is_none(), "{}", picked[1]);
    assert_eq!(picked[1]["prediction"], "the dog sat number two");
    assert!(
        err.contains("1 ASR answers to a single hypothesis fell back"),
        "{err}"
    );
    assert!(err.contains("+pick+dropped+spacing|"), "{err}");
    let (free, err) = run(&["--guard-nbest", "free"]);
    assert_eq!(free[0]["prediction"], "the dog sat number one");
    assert!(!err.contains("single hypothesis"), "{err}");
}

/// Issue 7: 503 and 429 are retried with backoff; the third attempt's answer is used.
#[test]
fn retries_429_and_5xx_then_answers() {
    let server = FakeServer::start(|body, before| match before {
        0 => Reply::error(503, "loading model"),
        1 => Reply::error(429, "too many requests"),
        _ => Reply::ok(&best_in(body["prompt"].as_str().unwrap())),
    });
    let (got, err) = served_records(&server, 4, &["--concurrency", "3", "--retries", "2"]);
    assert!(
        err.contains("4 answered (0 changed from their 1-best), 0 failed"),
        "{err}"
    );
    assert_eq!(got.len(), 4);
    for (i, line) in got.iter().enumerate() {
        assert_eq!(line["prediction"], format!("the cat sat number {i}"));
        assert!(line.get("error").is_none());
    }
    assert_eq!(server.bodies().len(), 12, "three attempts per record");
}

/// Issue 7: a record whose request still fails after the retries (or fails with a status that
/// retrying cannot fix) gets an error line with its 1-best, like any other failure.
#[test]
fn a_request_that_keeps_failing_gives_an_error_line() {
    let server = FakeServer::start(|body, _| {
        let best = best_in(body["prompt"].as_str().unwrap());
        if best.ends_with("number 1") {
            Reply::error(503, "overloaded")
        } else if best.ends_with("number 2") {
            Reply::error(400, "prompt is too long for the context window")
        } else {
            Reply::ok(&best)
        }
    });
    let (got, err) = served_records(&server, 4, &["--retries", "2"]);
    assert!(
        err.contains("2 answered (0 changed from their 1-best), 2 failed"),
        "{err}"
    );
    assert!(got[0].get("error").is_none() && got[3].get("error").is_none());
    let e1 = got[1]["error"]["message"].as_str().unwrap();
    assert!(e1.contains("HTTP 503: overloaded"), "{e1}");
    assert!(e1.contains("gave up after 3 attempts"), "{e1}");
    assert_eq!(got[1]["prediction"], "the cat sat number 1");
    let e2 = got[2]["error"]["message"].as_str().unwrap();
    assert!(e2.contains("HTTP 400: prompt is too long"), "{e2}");
    assert_eq!(got[2]["error"]["line"], 3);
    assert_eq!(got[2]["prediction"], "the cat sat number 2");
    let tries = |n: usize| {
        server
            .bodies()
            .iter()
            .filter(|b| best_in(b["prompt"].as_str().unwrap()).ends_with(&format!("number {n}")))
            .count()
    };
    assert_eq!((tries(1), tries(2), tries(3)), (3, 1, 1));
}

/// A server that goes away mid-run, or an endpoint or model that does not exist, stops the run
/// (exit 2) instead of turning every later record into an error line: the records it did not
/// answer get no line, and `--resume` against a working server sends exactly those.
#[test]
fn a_server_that_is_gone_stops_the_run_and_a_resume_finishes_it() {
    let number = |body: &Value| -> usize {
        let best = best_in(body["prompt"].as_str().unwrap());
        best.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let dying = FakeServer::start(move |body, _| match number(body) {
        n if n < 5 => Reply::ok(&best_in(body["prompt"].as_str().unwrap())),
        _ => Reply::error(503, "server shutting down"),
    });
    let dir = tempfile::tempdir().unwrap();
    let input = write_records(dir.path(), 40);
    let dest = dir.path().join("out.jsonl");
    let run = |url: &str, extra: &[&str]| {
        let out = served(url)
            .args(["--concurrency", "1", "--retries", "1", "--no-guard", "-o"])
            .arg(&dest)
            .args(extra)
            .arg(&input)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&dying.url, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("the server stopped answering: 8 requests in a row failed"),
        "{err}"
    );
    assert!(err.contains("HTTP 503: server shutting down"), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let partial = std::fs::read_to_string(neko::output::partial_path(&dest)).unwrap();
    let written = json_lines(partial.as_bytes());
    assert_eq!(written.len(), 5, "{partial}");
    assert!(written.iter().all(|l| l.get("error").is_none()));
    assert_eq!(
        dying.bodies().len(),
        5 + 8 * 2,
        "no request after the server was gone"
    );

    // Resumed against the same dead server: nothing new, and the count says what the file has.
    let (code, err) = run(&dying.url, &["--resume"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("5 records written to") && err.contains("(5 of them by the run it resumed)"),
        "{err}"
    );
    let working =
        FakeServer::start(|body, _| Reply::ok(&best_in(body["prompt"].as_str().unwrap())));
    let (code, err) = run(&working.url, &["--resume"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("5 records already written, 35 to go"), "{err}");
    let got = json_lines(std::fs::read_to_string(&dest).unwrap().as_bytes());
    assert_eq!(got.len(), 40);
    for (i, line) in got.iter().enumerate() {
        assert_eq!(line["prediction"], format!("the cat sat number {i}"));
    }

    // A server that dies a few records before a window's end (fewer failures in a row than
    // the count): it no longer lists its models either, so those records get no line.
    let up = Arc::new(AtomicU16::new(200));
    let down = up.clone();
    let dying_late = FakeServer::start_with_models(
        move |body, _| match number(body) {
            n if n < 60 => Reply::ok(&best_in(body["prompt"].as_str().unwrap())),
            _ => {
                down.store(503, SeqCst);
                Reply::error(503, "server shutting down")
            }
        },
        up,
    );
    std::fs::write(&input, records(70)).unwrap();
    std::fs::remove_file(neko::output::partial_path(&dest)).ok();
    std::fs::remove_file(&dest).ok();
    let (code, err) = run(&dying_late.url, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no longer answers"), "{err}");
    let partial = std::fs::read_to_string(neko::output::partial_path(&dest)).unwrap();
    let written = json_lines(partial.as_bytes());
    assert_eq!(written.len(), 60);
    assert!(written.iter().all(|l| l.get("error").is_none()));

    // A server without the listing route (404, accepted with --served-model) is still up when
    // a window ends in a failure: that record gets its error line and the run goes on.
    let no_route = FakeServer::start_with_models(
        move |body, _| match number(body) {
            69 => Reply::error(503, "overloaded"),
            _ => Reply::ok(&best_in(body["prompt"].as_str().unwrap())),
        },
        Arc::new(AtomicU16::new(404)),
    );
    std::fs::remove_file(neko::output::partial_path(&dest)).unwrap();
    let (code, err) = run(&no_route.url, &["--served-model", "tiny"]);
    assert_eq!(code, Some(0), "{err}");
    let got = json_lines(std::fs::read_to_string(&dest).unwrap().as_bytes());
    assert_eq!(got.len(), 70);
    assert!(got[69]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("HTTP 503"));
    std::fs::remove_file(&dest).unwrap();

    // A wrong path or model: every request would fail the same way, so the first stops it.
    let missing = FakeServer::start(|_, _| Reply::error(404, "The model `x` does not exist."));
    let (code, err) = run(&missing.url, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("stopped answering") && err.contains("HTTP 404"),
        "{err}"
    );
    assert_eq!(missing.bodies().len(), 1);
}

/// `--strict` stops at the first record that cannot be corrected, with the records before it
/// written, instead of writing its error line and going on.
#[test]
fn strict_stops_at_the_first_record_that_fails() {
    let server = FakeServer::start(|body, _| {
        let best = best_in(body["prompt"].as_str().unwrap());
        match best.ends_with("number 2") {
            true => Reply::error(400, "prompt is too long"),
            false => Reply::ok(&best),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let input = write_records(dir.path(), 5);
    let out = served(&server.url)
        .arg("--strict")
        .arg(&input)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--strict: ") && err.contains(":3: ") && err.contains("HTTP 400"),
        "{err}"
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l.get("error").is_none()));
}

#[test]
fn output_is_in_input_order_and_resumes_with_the_openai_backend() {
    // Even records take longer, so answers come back out of order.
    let server = FakeServer::start(|body, _| {
        let best = best_in(body["prompt"].as_str().unwrap());
        let n: usize = best.rsplit(' ').next().unwrap().parse().unwrap();
        let mut r = Reply::ok(&best.to_uppercase());
        r.delay = Duration::from_millis(if n.is_multiple_of(2) { 30 } else { 0 });
        r
    });
    let dir = tempfile::tempdir().unwrap();
    let input = write_records(dir.path(), 40);
    let full = dir.path().join("full.jsonl");
    ok(served(&server.url)
        .args(["--concurrency", "6", "--no-guard", "-o"])
        .arg(&full)
        .arg(&input));
    let full_text = std::fs::read_to_string(&full).unwrap();
    let got = json_lines(full_text.as_bytes());
    for (i, line) in got.iter().enumerate() {
        assert_eq!(line["id"], format!("r{i}"));
        assert_eq!(line["prediction"], format!("THE CAT SAT NUMBER {i}"));
    }
    let sig = std::fs::read_to_string(neko::output::signature_path(&full)).unwrap();
    assert!(
        sig.contains("|backend:openai:tiny|prompt_as:text|"),
        "{sig}"
    );
    assert_eq!(
        crate::util::undocumented_signature_fields(&sig),
        Vec::<String>::new()
    );
    // The in-process ASR default (`--constrain asr`) cannot reach a server: it decodes freely.
    assert!(sig.contains("|decode:greedy|"), "{sig}");

    // An interrupted run left 25 lines and part of the 26th: only the other 15 are sent.
    let resumed_server = FakeServer::start(|body, _| {
        Reply::ok(&best_in(body["prompt"].as_str().unwrap()).to_uppercase())
    });
    let dest = dir.path().join("out.jsonl");
    let cut: Vec<&str> = full_text.lines().collect();
    let partial = cut[..25].join("\n") + "\n" + &cut[25][..12];
    crate::util::write_partial(&dest, &partial, &full);
    let out = ok(served(&resumed_server.url)
        .args(["--concurrency", "6", "--no-guard", "--resume", "-o"])
        .arg(&dest)
        .arg(&input));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("25 records already written, 15 to go"),
        "{err}"
    );
    assert_eq!(resumed_server.bodies().len(), 15);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), full_text);
}

/// In process, a stop string ends the answer only after some text: an answer opening with a
/// newline goes on. A server stops at once and returns nothing; neko then asks again without
/// stop strings and cuts the answer where the in-process decoder would have stopped (finish
/// `stop`, not `length`, so the guard keeps it).
#[test]
fn a_blank_answer_cut_by_a_stop_string_is_asked_again_without_it() {
    let server = FakeServer::start(|body, _| {
        if body["stop"].as_array().is_some_and(|s| !s.is_empty()) {
            return Reply::ok("");
        }
        let best = best_in(body["prompt"].as_str().unwrap());
        let mut r = Reply::ok(&format!("\n{}\nand on and on", best.replace("cat", "dog")));
        r.body["choices"][0]["finish_reason"] = json!("length");
        r
    });
    let (got, _) = served_records(&server, 3, LET_DOG_THROUGH);
    for (i, line) in got.iter().enumerate() {
        assert_eq!(
            line["prediction"],
            format!("the dog sat number {i}"),
            "{line}"
        );
        assert!(line.get("guard").is_none(), "{line}");
    }
    let stops: Vec<Value> = server.bodies().iter().map(|b| b["stop"].clone()).collect();
    assert_eq!(stops.iter().filter(|s| **s == json!(["\n"])).count(), 3);
    assert_eq!(stops.iter().filter(|s| **s == json!([])).count(), 3);
}

/// A ChatML model's end of turn is a stop for the server too, and cuts an answer that runs past
/// it (its `<|im_end|>` sent every answer back to the 1-best as a leaking marker where the
/// config's EOS is another token). An endpoint without http:// is refused at once.
#[test]
fn the_chat_end_of_turn_stops_a_served_answer() {
    let dir = tempfile::tempdir().unwrap();
    let chat = dir.path().join("chatml");
    std::fs::create_dir(&chat).unwrap();
    crate::util::copy_fixture("tiny-llama", &chat);
    let cfg = chat.join("tokenizer_config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["chat_template"] = json!("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}");
    std::fs::write(&cfg, v.to_string()).unwrap();
    let tok = chat.join("tokenizer.json");
    let mut t: Value = serde_json::from_str(&std::fs::read_to_string(&tok).unwrap()).unwrap();
    for (id, content) in [(512, "<|im_start|>"), (513, "<|im_end|>")] {
        t["added_tokens"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": id, "content": content,
            "single_word": false, "lstrip": false, "rstrip": false, "normalized": false,
            "special": true}));
    }
    std::fs::write(&tok, t.to_string()).unwrap();
    let server = FakeServer::start(|body, _| {
        let prompt = body["prompt"].as_str().unwrap();
        let best = best_in(prompt.split("<|im_start|>user\n").nth(1).unwrap());
        Reply::ok(&format!("{}<|im_end|>", best.replace("cat", "dog")))
    });
    let input = write_records(dir.path(), 2);
    let out = ok(openai(&server.url, &chat).args(LET_DOG_THROUGH).arg(&input));
    for (i, line) in json_lines(&out.stdout).iter().enumerate() {
        assert_eq!(
            line["prediction"],
            format!("the dog sat number {i}"),
            "{line}"
        );
        assert!(line.get("guard").is_none(), "{line}");
    }
    for body in server.bodies() {
        assert_eq!(body["stop"], json!(["\n", "<|im_end|>"]), "{body}");
    }
    let err = crate::util::refused(
        neko()
            .args(["correct", "--task", "asr", "--backend", "openai"])
            .args(["--endpoint", "localhost:8000/v1", "--model"])
            .arg(fixture("tiny-llama"))
            .arg(&input),
    );
    assert!(err.contains("an endpoint starts with http://"), "{err}");
}

/// `n` records corrected through `server` with `flags` into `-o DEST`, interrupted (SIGINT)
/// once the server has had `requests` requests: (the folder, the input, DEST, the run's
/// output).
#[cfg(unix)]
fn interrupted_at_request(
    server: &FakeServer,
    n: usize,
    flags: &[&str],
    requests: usize,
) -> (tempfile::TempDir, PathBuf, PathBuf, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let input = write_records(dir.path(), n);
    let dest = dir.path().join("out.jsonl");
    let mut child = served(&server.url)
        .args(flags)
        .arg("-o")
        .arg(&dest)
        .arg(&input)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::util::wait_for(&mut child, "the requests", || {
        server.bodies().len() >= requests
    });
    crate::util::send_signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    (dir, input, dest, out)
}

/// A Ctrl-C sends no new request: those in flight are answered and written, the rest wait
/// for `--resume` (the whole window, eight times --concurrency, went out first).
#[cfg(unix)]
#[test]
fn an_interrupt_sends_no_new_request() {
    let server = FakeServer::start(|body, _| {
        let mut r = Reply::ok(&best_in(body["prompt"].as_str().unwrap()));
        r.delay = Duration::from_millis(300);
        r
    });
    let (_dir, input, dest, out) = interrupted_at_request(&server, 16, &["--concurrency", "2"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--resume"), "{err}");
    // The two in flight, and perhaps two sent as the signal came: not the window's sixteen.
    let sent = server.bodies().len();
    assert!(sent <= 4, "{sent} requests sent");
    let out = ok(served(&server.url)
        .args(["--resume", "-o"])
        .arg(&dest)
        .arg(&input));
    assert!(out.status.success());
    assert_eq!(json_lines(&std::fs::read(&dest).unwrap()).len(), 16);
}

/// An endpoint given without its `/v1`, at llama.cpp's server, answers its own format
/// (`content`, no `choices`): the run stops, naming the cause, rather than writing every
/// record an error line that `--resume` would keep.
#[test]
fn another_api_at_the_endpoint_stops_the_run() {
    let server = FakeServer::start(|_, _| {
        let mut r = Reply::ok("x");
        r.body = json!({"content": "the cat sat", "stop": true});
        r
    });
    let dir = tempfile::tempdir().unwrap();
    let input = write_records(dir.path(), 3);
    let out = served(&server.url).arg(&input).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/v1"), "{err}");
    assert!(json_lines(&out.stdout)
        .iter()
        .all(|l| l.get("error").is_none()));
}

/// A Ctrl-C stops retries too, waits between them included: a record whose requests keep
/// failing is not retried after it (4 of 6 requests went out after the interrupt, and the
/// record became an error line that `--resume` kept); it waits for `--resume` with no line.
#[cfg(unix)]
#[test]
fn an_interrupt_stops_retries() {
    // Quick failures, and waits doubling from 10 ms: after the 9th attempt the wait is 2.56 s,
    // and the interrupt comes in it.
    let server = FakeServer::start(|_, _| Reply::error(500, "down"));
    let (_dir, _, dest, out) = interrupted_at_request(&server, 1, &["--retries", "50"], 9);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    // No retry after it, not even the one the wait was for.
    assert_eq!(server.bodies().len(), 9);
    let written = std::fs::read_to_string(neko::output::partial_path(&dest)).unwrap_or_default();
    assert!(!written.contains("\"error\""), "{written}");
}

/// With `--backend openai`, `--model` needs only the prompt side: a folder with config.json,
/// tokenizer.json and tokenizer_config.json renders the same prompts as the full checkpoint, and
/// `--dump-prompts` needs no server.
#[test]
fn a_model_folder_without_weights_renders_the_same_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let light = dir.path().join("prompt-side");
    std::fs::create_dir(&light).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("tiny-llama").join(f), light.join(f)).unwrap();
    }
    let input = write_records(dir.path(), 3);
    let dump = |cmd: &mut std::process::Command| ok(cmd.arg("--dump-prompts").arg(&input)).stdout;
    let full = dump(
        neko()
            .args(["correct", "--task", "asr", "--model"])
            .arg(fixture("tiny-llama")),
    );
    let nothing_listens = "http://127.0.0.1:9/v1";
    let weightless = dump(&mut openai(nothing_listens, &light));
    assert_eq!(
        String::from_utf8(weightless).unwrap(),
        String::from_utf8(full).unwrap()
    );

    let server = FakeServer::start(|body, _| Reply::ok(&best_in(body["prompt"].as_str().unwrap())));
    let out = ok(openai(&server.url, &light).arg(&input));
    assert_eq!(json_lines(&out.stdout).len(), 3);
    let no_config = dir.path().join("empty");
    std::fs::create_dir(&no_config).unwrap();
    let out = openai(&server.url, &no_config)
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.json: missing"), "{err}");
}

#[test]
fn openai_flags_are_checked_before_anything_runs() {
    let openai = |more: &'static [&'static str]| -> Vec<&'static str> {
        let mut f = vec!["--backend", "openai", "--endpoint", "http://x/v1"];
        f.extend_from_slice(more);
        f
    };
    for bad in [
        &["--timeout", "nan"][..],
        &["--timeout", "1e30"],
        &["--retry-backoff", "inf"],
    ] {
        let out = neko()
            .args(["correct", "--task", "asr", "--model"])
            .arg(fixture("tiny-llama"))
            .args(openai(bad))
            .arg(fixture("records/shapes.jsonl"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("number of seconds"));
    }
    let cases: [(&[&str], &str); 5] = [
        (&["--backend", "openai"], "needs --endpoint"),
        (
            &["--endpoint", "http://127.0.0.1:9/v1"],
            "needs --backend openai",
        ),
        (
            &[
                "--backend",
                "openai",
                "--endpoint",
                "http://x/v1",
                "--routing",
                "task",
            ],
            "a server routes",
        ),
        (
            &[
                "--backend",
                "openai",
                "--endpoint",
                "http://x/v1",
                "--constrain",
                "asr",
            ],
            "--constrain (or NEKO_CONSTRAIN) needs the in-process model",
        ),
        (
            &[
                "--backend",
                "openai",
                "--endpoint",
                "http://x/v1",
                "--quant",
                "q8_0",
            ],
            "--adapter and --quant",
        ),
    ];
    for (flags, want) in cases {
        let out = neko()
            .args(["correct", "--task", "asr", "--model"])
            .arg(fixture("tiny-llama"))
            .args(flags)
            .arg(fixture("records/shapes.jsonl"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    // Nothing listens on the endpoint: the run stops before correcting anything.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let out = served(&url)
        .args(["--retries", "1"])
        .arg(fixture("records/shapes.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{url}/models")), "{err}");
    assert!(err.contains("gave up after 2 attempts"), "{err}");
}

/// The real server of `.ci/run` (scripts/llama_server.sh): its endpoint and the GGUF it serves.
fn real_server() -> Option<(String, PathBuf)> {
    let endpoint = std::env::var("NEKO_TEST_OPENAI_ENDPOINT").ok();
    let gguf = std::env::var("NEKO_TEST_OPENAI_GGUF")
        .ok()
        .map(PathBuf::from);
    match (endpoint, gguf) {
        (Some(e), Some(g)) if g.is_file() => Some((e, g)),
        _ => {
            crate::util::skip(
                "no OpenAI-compatible test server (set NEKO_TEST_OPENAI_ENDPOINT and \
                 NEKO_TEST_OPENAI_GGUF, e.g. from scripts/llama_server.sh start)",
            );
            None
        }
    }
}

/// Up to 20 HyPoradise records: chime4's first 20 from ../shared, else the shipped variants.
fn hyporadise_records(dir: &Path) -> PathBuf {
    let path = dir.join("records.jsonl");
    let records: Vec<Value> = match shared_data("hyporadise/test/test_chime4.json") {
        Some(p) => {
            let all: Vec<Value> =
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            all.into_iter().take(20).collect()
        }
        None => serde_json::from_str(
            &std::fs::read_to_string(fixture("records/variants.json")).unwrap(),
        )
        .unwrap(),
    };
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Issue 7: the same GGUF gives the same corrections in process and served (llama-cpp-python
/// on SmolLM2-135M-Instruct, f32 weights and KV cache): every output line, and every raw answer
/// with the guard off; the server tokenizes neko's prompt text to neko's own ids.
#[test]
fn served_smollm2_gives_the_in_process_corrections() {
    let Some((endpoint, gguf)) = real_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = hyporadise_records(dir.path());
    let run = |extra: &[&str], dest: &Path| {
        ok(neko()
            .args(["correct", "--task", "asr", "--model"])
            .arg(&gguf)
            .args(extra)
            .arg("-o")
            .arg(dest)
            .arg(&input));
        std::fs::read_to_string(dest).unwrap()
    };
    let server = ["--backend", "openai", "--endpoint", &endpoint];
    // A served model's answers are not scored, so the in-process run leaves the margin out;
    // nor constrained, so it decodes freely.
    for guard in [&["--guard-margin", "off"][..], &["--no-guard"][..]] {
        let local = run(
            &[guard, &["--constrain", "none"]].concat(),
            &dir.path().join("local.jsonl"),
        );
        let served = run(
            &[&server[..], guard, &["--concurrency", "4"]].concat(),
            &dir.path().join("served.jsonl"),
        );
        let (local, served) = (json_lines(local.as_bytes()), json_lines(served.as_bytes()));
        assert!(local.len() >= 4);
        for (l, s) in local.iter().zip(&served) {
            assert_eq!(l, s, "guard flags {guard:?}");
        }
        assert_eq!(local.len(), served.len());
    }
    // The server's tokenizer reads the text neko sends as neko's ids (llama-cpp-python's
    // /extras/tokenize; specials such as <|im_start|> parsed as special tokens).
    let dump = ok(neko()
        .args(["correct", "--task", "asr", "--dump-prompts", "--model"])
        .arg(&gguf)
        .arg(&input));
    let base = endpoint.trim_end_matches("/v1");
    for d in json_lines(&dump.stdout) {
        let body = json!({"input": d["prompt"], "special": true}).to_string();
        let reply: Value = serde_json::from_str(
            &http_post(&format!("{base}/extras/tokenize"), &body).expect("tokenize"),
        )
        .unwrap();
        assert_eq!(reply["tokens"], d["ids"], "record {}", d["id"]);
    }
}

/// Issue 7: a request the real server rejects (a prompt longer than its 4,096-token context,
/// though within the model's 8,192) becomes that record's error line; the others are corrected.
#[test]
fn served_rejections_become_error_lines() {
    let Some((endpoint, gguf)) = real_server() else {
        return;
    };
    let long = vec!["word"; 5000].join(" ");
    let input = format!(
        "{{\"id\": \"ok\", \"input\": [\"the cat sat\", \"the cat sad\"]}}\n\
         {{\"id\": \"long\", \"input\": [\"{long}\"]}}\n"
    );
    let mut cmd = openai(&endpoint, &gguf);
    cmd.args(["--max-new-tokens", "8", "-"]);
    let out = crate::util::run_with_stdin(cmd, input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let got = json_lines(&out.stdout);
    assert!(got[0].get("error").is_none(), "{}", got[0]);
    let message = got[1]["error"]["message"].as_str().unwrap();
    assert!(message.contains("HTTP 400"), "{message}");
    assert!(got[1]["prediction"]
        .as_str()
        .unwrap()
        .starts_with("word word"));
}

/// A minimal HTTP POST for checks outside neko (the tokenize endpoint).
fn http_post(url: &str, body: &str) -> std::io::Result<String> {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(body.to_string())
}

/// An answer to a 1-best cut to fit the context covers only its head: MT/ST/GEC's edit limit
/// (half the words) let an answer without the last quarter through, and the tail was lost
/// from the output. Under the guard the whole 1-best is kept (`fallback:cut`); without it the
/// answer is written.
#[test]
fn an_answer_to_a_cut_one_best_keeps_the_whole_one_best() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    crate::util::copy_fixture("tiny-llama", &model);
    let config = model.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    v["max_position_embeddings"] = 160.into();
    std::fs::write(&config, v.to_string()).unwrap();
    let words: Vec<String> = (0..60).map(|i| format!("word{i}")).collect();
    let whole = words.join(" ");
    let head = words[..50].join(" ");
    let answer = head.clone();
    let server = FakeServer::start(move |_, _| Reply::ok(&answer));
    let input = dir.path().join("long.jsonl");
    let record = json!({"id": "g", "task": "gec", "input": [whole.clone()]});
    std::fs::write(&input, format!("{record}\n")).unwrap();
    let run = |flags: &[&str]| {
        let out = ok(openai(&server.url, &model)
            .args(["--max-new-tokens", "8"])
            .args(flags)
            .arg(&input));
        json_lines(&out.stdout).remove(0)
    };
    let guarded = run(&[]);
    assert!(
        guarded["warning"]
            .as_str()
            .unwrap()
            .contains("cut the 1-best"),
        "{guarded}"
    );
    assert_eq!(guarded["guard"], "fallback:cut", "{guarded}");
    assert_eq!(guarded["prediction"].as_str(), Some(whole.as_str()));
    let free = run(&["--no-guard"]);
    assert_eq!(free["prediction"].as_str(), Some(head.as_str()), "{free}");
}
