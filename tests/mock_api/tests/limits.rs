//! The mock's limits over HTTP: refusals with the real API's shape and headers, the counters,
//! the windows' reset, the binary's flags. The window arithmetic itself is table-tested
//! against explicit instants in `src/limits.rs`; here the only waits on time are a window of
//! 0.3 s passing (the behaviour under test is time itself).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mock_anthropic::{Claim, Limits, MockServer, Stats, Unified};
use serde_json::{Value, json};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A blocking HTTP/1.1 client on one connection (JSON answers only: no `"stream"`).
struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Client {
            r: BufReader::new(s),
        }
    }

    fn send(&mut self, method: &str, path: &str, body: &Value) {
        let data = body.to_string();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{data}",
            data.len()
        );
        self.r.get_mut().write_all(req.as_bytes()).expect("write");
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read line");
        l.trim_end_matches(['\r', '\n']).to_string()
    }

    fn read(&mut self) -> Resp {
        let status_line = self.line();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header");
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let n = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; n];
        self.r.read_exact(&mut body).expect("body");
        Resp {
            status,
            headers,
            body,
        }
    }

    fn ask(&mut self, text: &str) -> Resp {
        self.send("POST", "/v1/messages", &message(text));
        self.read()
    }
}

fn message(text: &str) -> Value {
    json!({"model": "claude-test", "max_tokens": 100,
           "messages": [{"role": "user", "content": text}]})
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A refusal has the real API's error body and the retry headers.
fn assert_rate_limited(r: &Resp, retry_after: &str) {
    assert_eq!(r.status, 429, "{:?}", r.json());
    let e = r.json();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "rate_limit_error");
    assert!(e["error"]["message"].is_string());
    assert_eq!(r.header("retry-after"), Some(retry_after));
    assert_eq!(r.header("x-should-retry"), Some("true"));
}

async fn wait_stats(mock: &MockServer, what: &str, pred: impl Fn(&Stats) -> bool) -> Stats {
    match mock.wait_for_stats(pred, IO_TIMEOUT).await {
        Ok(s) => s,
        Err(s) => panic!("never saw {what}; last stats {s:?}"),
    }
}

#[tokio::test]
async fn requests_beyond_max_in_flight_get_429_at_once_and_are_counted() {
    let mock = MockServer::start().expect("start");
    mock.set_limits(Limits {
        max_in_flight: Some(2),
        ..Limits::default()
    });
    // two answers held in progress by a server-side sleep
    let mut held: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = Client::connect(mock.port());
            c.send("POST", "/v1/messages", &message("MOCK_SLEEP:60 hold"));
            c
        })
        .collect();
    wait_stats(&mock, "two answers in flight", |s| s.in_flight == 2).await;
    for _ in 0..3 {
        let r = Client::connect(mock.port()).ask("one too many");
        assert_rate_limited(&r, "1");
        assert_eq!(r.header("anthropic-ratelimit-requests-limit"), Some("2"));
        assert_eq!(
            r.header("anthropic-ratelimit-requests-remaining"),
            Some("0")
        );
        let reset = r
            .header("anthropic-ratelimit-requests-reset")
            .expect("reset");
        assert!(
            reset.len() == 20 && reset.ends_with('Z') && reset.as_bytes()[10] == b'T',
            "RFC 3339: {reset}"
        );
    }
    let s = mock.stats();
    assert_eq!(
        (s.received, s.rejected_in_flight, s.rejected(), s.ok),
        (5, 3, 3, 0)
    );
    assert_eq!((s.in_flight, s.peak_in_flight), (2, 2));
    // the held clients hang up: their answers leave the count, and there is room again
    held.clear();
    wait_stats(&mock, "in-flight back to 0", |s| s.in_flight == 0).await;
    let r = Client::connect(mock.port()).ask("room again");
    assert_eq!(r.status, 200);
    let s = mock.stats();
    assert_eq!((s.ok, s.peak_in_flight, s.received), (1, 2, 6));
}

#[test]
fn tokens_per_window_refuse_what_would_pass_the_limit() {
    let mock = MockServer::start().expect("start");
    mock.set_limits(Limits {
        tpm: Some(1000),
        ..Limits::default()
    });
    let mut c = Client::connect(mock.port());
    let r = c.ask("MOCK_USAGE:500,100 first");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("anthropic-ratelimit-tokens-limit"), Some("1000"));
    assert_eq!(
        r.header("anthropic-ratelimit-tokens-remaining"),
        Some("400")
    );
    // 300 + 200 would make 1100: refused, and the 60 s window frees in 60 s
    let r = c.ask("MOCK_USAGE:300,200 second");
    assert_rate_limited(&r, "60");
    assert_eq!(
        r.header("anthropic-ratelimit-tokens-remaining"),
        Some("400")
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1000"))
    );
    // exactly the rest still fits
    assert_eq!(c.ask("MOCK_USAGE:300,100 third").status, 200);
    let s = mock.stats();
    assert_eq!((s.ok, s.rejected_tpm, s.rejected()), (2, 1, 1));
}

#[test]
fn requests_per_window_reset_when_the_window_slides_past() {
    let mock = MockServer::start().expect("start");
    let window = Duration::from_millis(300);
    mock.set_limits(Limits {
        rpm: Some(2),
        window,
        ..Limits::default()
    });
    let mut c = Client::connect(mock.port());
    let first = c.ask("a");
    assert_eq!(
        (
            first.status,
            first.header("anthropic-ratelimit-requests-remaining")
        ),
        (200, Some("1"))
    );
    assert_eq!(c.ask("b").status, 200);
    let r = c.ask("c");
    assert_rate_limited(&r, "1");
    assert_eq!(r.header("anthropic-ratelimit-requests-limit"), Some("2"));
    assert_eq!(
        r.header("anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
    // the window is the behaviour under test: let it pass
    std::thread::sleep(window + Duration::from_millis(50));
    assert_eq!(c.ask("d").status, 200);
    assert_eq!(
        (mock.stats().ok, mock.stats().rejected_rpm),
        (3, 1),
        "{:?}",
        mock.stats()
    );
}

#[test]
fn subscription_window_headers_warn_reject_and_allow_again() {
    let mock = MockServer::start().expect("start");
    let now = unix_now();
    mock.set_limits(Limits {
        unified: Some(Unified {
            five_hour_utilization: 0.85,
            seven_day_utilization: 0.2,
            ..Unified::starting_at(now)
        }),
        ..Limits::default()
    });
    let mut c = Client::connect(mock.port());
    let r = c.ask("warned");
    assert_eq!(r.status, 200);
    let five_reset = (now + 5 * 3600).to_string();
    for (name, value) in [
        ("anthropic-ratelimit-unified-status", "allowed_warning"),
        ("anthropic-ratelimit-unified-reset", five_reset.as_str()),
        (
            "anthropic-ratelimit-unified-representative-claim",
            "five_hour",
        ),
        ("anthropic-ratelimit-unified-5h-utilization", "0.85"),
        ("anthropic-ratelimit-unified-5h-surpassed-threshold", "0.75"),
        ("anthropic-ratelimit-unified-7d-utilization", "0.2"),
        ("anthropic-ratelimit-unified-7d-status", "allowed"),
    ] {
        assert_eq!(r.header(name), Some(value), "{name}");
    }
    assert_eq!(
        r.header("anthropic-ratelimit-unified-7d-surpassed-threshold"),
        None
    );

    // exhausted for a minute, through the control endpoint
    c.send(
        "POST",
        "/_mock/config",
        &json!({"unified": {"rejected_for": 60, "five_hour_utilization": 1.0}}),
    );
    let cfg = c.read().json();
    let until = cfg["unified"]["rejected_until"].as_u64().expect("until");
    assert!((now + 60..=now + 62).contains(&until), "{cfg}");
    let r = c.ask("rejected");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(r.header("x-should-retry"), Some("true"));
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("retry-after");
    assert!((58..=62).contains(&retry), "{retry}");
    assert_eq!(
        r.header("anthropic-ratelimit-unified-status"),
        Some("rejected")
    );
    assert_eq!(
        r.header("anthropic-ratelimit-unified-reset"),
        Some(until.to_string().as_str())
    );

    // the reset passes (moved into the past rather than waited for): allowed again
    let mut limits = mock.limits();
    let u = limits.unified.as_mut().expect("unified");
    u.rejected_until = Some(now - 1);
    u.claim = Claim::SevenDay;
    u.five_hour_utilization = 0.1;
    mock.set_limits(limits);
    let r = c.ask("allowed");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("anthropic-ratelimit-unified-status"),
        Some("allowed")
    );
    assert_eq!(
        r.header("anthropic-ratelimit-unified-representative-claim"),
        Some("seven_day")
    );
    let s = mock.stats();
    assert_eq!((s.ok, s.rejected_unified, s.received), (2, 1, 3));
}

#[test]
fn overloaded_for_answers_529_until_it_is_lifted_and_stats_are_served() {
    let mock = MockServer::start().expect("start");
    let mut c = Client::connect(mock.port());
    c.send("POST", "/_mock/config", &json!({"overloaded_for": 600}));
    assert!(
        c.read().json()["overloaded_for"]
            .as_f64()
            .is_some_and(|s| s > 590.0)
    );
    let r = c.ask("busy");
    assert_eq!(r.status, 529);
    assert_eq!(
        r.json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    assert_eq!(r.header("x-should-retry"), Some("true"));
    // MOCK_STATUS:529 and 429 are counted with the limiter's refusals
    c.send("POST", "/_mock/config", &json!({"overloaded_for": 0}));
    assert!(c.read().json()["overloaded_for"].is_null());
    assert_eq!(
        c.ask("MOCK_STATUS:529").json()["error"]["type"],
        "overloaded_error"
    );
    assert_eq!(c.ask("MOCK_STATUS:429").status, 429);
    assert_eq!(c.ask("MOCK_STATUS:401").status, 401);
    assert_eq!(c.ask("fine").status, 200);
    c.send("GET", "/_mock/stats", &json!({}));
    assert_eq!(
        c.read().json(),
        json!({"received": 5, "ok": 1, "overloaded": 2, "other_errors": 1,
               "rejected": {"in_flight": 0, "rpm": 0, "tpm": 0, "unified": 0, "other": 1},
               "in_flight": 0, "peak_in_flight": 1})
    );
    mock.reset();
    assert_eq!(mock.stats(), Stats::default());
}

#[test]
fn the_binary_takes_the_limits_as_flags() {
    let dir = std::env::temp_dir().join(format!("mock-limits-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let port_file = dir.join("port");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mock-anthropic"))
        .args(["--port-file", &port_file.to_string_lossy()])
        .args(["--max-in-flight", "3", "--rpm", "50", "--tpm", "9000"])
        .args(["--rate-window", "30", "--limit-retry-after", "4"])
        .args([
            "--unified-claim",
            "seven_day",
            "--unified-7d-utilization",
            "0.9",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mock-anthropic");
    // it prints its URL once it listens
    let mut url = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut url)
        .expect("url line");
    let port: u16 = std::fs::read_to_string(&port_file)
        .expect("port file")
        .parse()
        .expect("port");
    let mut c = Client::connect(port);
    c.send("POST", "/_mock/config", &json!({}));
    let cfg = c.read().json();
    let r = c.ask("hi");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        (
            &cfg["max_in_flight"],
            &cfg["rpm"],
            &cfg["tpm"],
            &cfg["window"]
        ),
        (&json!(3), &json!(50), &json!(9000), &json!(30.0)),
        "{cfg}"
    );
    assert_eq!(cfg["retry_after_limits"], 4);
    assert_eq!(cfg["unified"]["claim"], "seven_day");
    assert_eq!(cfg["unified"]["seven_day_utilization"], 0.9);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("anthropic-ratelimit-requests-remaining"),
        Some("49")
    );
    assert_eq!(
        r.header("anthropic-ratelimit-unified-status"),
        Some("allowed_warning")
    );
}
