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
