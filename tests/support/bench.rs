//! Measuring helpers shared by the benches.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::Server;

/// The middle sample.
pub fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

/// The sample at quantile `p` (0.0..=1.0).
pub fn pct(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// Prints one line of figures: median, p90, min.
pub fn row(name: &str, v: &[Duration]) {
    println!(
        "  {name:<44} median {:>8.3} ms   p90 {:>8.3} ms   min {:>8.3} ms   (n={})",
        ms(median(v)),
        ms(pct(v, 0.9)),
        ms(*v.iter().min().unwrap()),
        v.len()
    );
}

/// Resident memory of a process, in KiB (children excluded).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The anonymous part of a process's resident set in KiB: its heap and stacks, without the
/// pages of its executable and libraries (which grow as more of its code has run).
pub fn anon_kib(pid: u32) -> u64 {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `iters` timed `pool_run`s of `prompt`, after three untimed ones.
pub async fn pool_runs(server: &Server, iters: usize, prompt: &str) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..iters + 3 {
        let t = Instant::now();
        let r = server
            .call_ok("pool_run", json!({ "prompt": prompt }))
            .await;
        if i >= 3 {
            out.push(t.elapsed());
        }
        assert_eq!(r["status"], "completed");
    }
    out
}

/// `iters` timed cold `claude -p` runs (after one untimed), each a fresh process.
pub async fn cold_cli_runs(
    claude: &std::path::Path,
    env: &[(String, String)],
    iters: usize,
    scratch: &crate::Scratch,
) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..iters + 1 {
        let t = Instant::now();
        let o = tokio::process::Command::new(claude)
            .args(["-p", "cold start", "--output-format", "json"])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(scratch.path())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let d = t.elapsed();
        assert!(
            o.status.success(),
            "cold claude -p failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        if i > 0 {
            out.push(d);
        }
    }
    out
}
