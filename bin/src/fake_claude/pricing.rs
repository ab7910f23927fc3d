//! Model aliases, the price table and per-model usage accounting, as measured on the real
//! CLI 2.1.329 (same numbers and arithmetic as `fake_claude.py`).

use serde_json::{Value, json};

pub const DEFAULT_MODEL: &str = "claude-opus-5-5";

/// Usage of one API call: input, output, cache read, cache write tokens.
pub type Usage = [u64; 4];

/// Resolves `opus` / `sonnet` / `haiku` / `fable`; no model (or "") means the default.
pub fn resolve_model(model: Option<&str>) -> String {
    match model.unwrap_or("") {
        "" => DEFAULT_MODEL,
        "opus" => "claude-opus-5-5",
        "sonnet" => "claude-sonnet-5-5",
        "haiku" => "claude-haiku-5-5",
        "fable" => "claude-fable-5-2",
        other => other,
    }
    .to_string()
}

/// `model` without a trailing `-YYYYMMDD` date.
fn strip_date(model: &str) -> &str {
    let b = model.as_bytes();
    if b.len() >= 9 && b[b.len() - 9] == b'-' && b[b.len() - 8..].iter().all(u8::is_ascii_digit) {
        &model[..model.len() - 9]
    } else {
        model
    }
}

pub fn canonical(model: &str) -> String {
    match strip_date(model) {
        "claude-sonnet-4" => "claude-sonnet-4-0".to_string(),
        m => m.to_string(),
    }
}

/// $ per million tokens: input, output, cache read, cache write.
fn price(model: &str) -> Option<[f64; 4]> {
    Some(match model {
        "claude-opus-5-5" => [4.0, 20.0, 0.2, 5.0],
        "claude-sonnet-5-5" => [2.0, 10.0, 0.1, 2.5],
        "claude-haiku-5-5" => [0.5, 2.5, 0.05, 0.625],
        "claude-fable-5-2" => [8.0, 40.0, 0.2, 10.0],
        "claude-opus-4-5" => [5.0, 25.0, 0.5, 6.25],
        "claude-sonnet-4-5" | "claude-sonnet-4" => [3.0, 15.0, 0.3, 3.75],
        "claude-haiku-4-5" => [1.0, 5.0, 0.1, 1.25],
        "claude-3-5-haiku" => [0.8, 4.0, 0.08, 1.0],
        _ => return None,
    })
}

/// Cost in dollars of one call, and whether the model is in the price table (unknown models
/// are billed at the default model's prices, with `costBasis: "unknown"`).
pub fn cost_of(model: &str, u: &Usage) -> (f64, bool) {
    let canon = canonical(model);
    let found = price(&canon).or_else(|| price(strip_date(model)));
    let known = found.is_some();
    let mut p = found.unwrap_or([4.0, 20.0, 0.2, 5.0]);
    if canon == "claude-haiku-5-5" && (u[0] as f64 + u[2] as f64 + u[3] as f64) <= 100_000.0 {
        p = [0.1, 0.5, 0.01, 0.125]; // measured: haiku-5-5 is cheaper up to 100k input tokens
    }
    let c = u[0] as f64 * p[0] + u[1] as f64 * p[1] + u[2] as f64 * p[2] + u[3] as f64 * p[3];
    (c / 1e6, known)
}

/// A number as JavaScript prints it: integral values without a fraction (`0`, not `0.0`).
pub fn js_num(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// One `modelUsage` entry (cumulative per session, or per turn for
/// `model_usage_since_last_result`).
#[derive(Debug, Clone)]
pub struct ModelUsage {
    pub tokens: Usage,
    pub cost: f64,
    pub known: bool,
}

impl ModelUsage {
    pub fn new(known: bool) -> Self {
        Self {
            tokens: [0; 4],
            cost: 0.0,
            known,
        }
    }

    pub fn add(&mut self, u: &Usage, cost: f64) {
        for (t, v) in self.tokens.iter_mut().zip(u) {
            *t = t.saturating_add(*v);
        }
        self.cost += cost;
    }

    pub fn to_json(&self, model: &str) -> Value {
        let big = [
            "claude-opus-5",
            "claude-sonnet-5",
            "claude-haiku-5",
            "claude-fable",
        ]
        .iter()
        .any(|p| model.starts_with(p));
        let u = &self.tokens;
        json!({
            "inputTokens": u[0], "outputTokens": u[1], "cacheReadInputTokens": u[2],
            "cacheCreationInputTokens": u[3], "webSearchRequests": 0, "costUSD": js_num(self.cost),
            "contextWindow": if big || !self.known { 1_000_000 } else { 200_000 },
            "maxOutputTokens": if big { 128_000 } else { 32_000 }, "thinkingTokens": 0,
            // Always 0, as in fake_claude.py's measured shapes.
            "cacheCreationEphemeral5mInputTokens": 0, "cacheCreationEphemeral1hInputTokens": 0,
            "canonicalModel": canonical(model), "provider": "firstParty",
            "costBasis": if self.known { "list" } else { "unknown" },
        })
    }

    /// Reads an entry written by `to_json` (or by `fake_claude.py`).
    pub fn from_json(v: &Value) -> Option<Self> {
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        Some(Self {
            tokens: [
                n("inputTokens"),
                n("outputTokens"),
                n("cacheReadInputTokens"),
                n("cacheCreationInputTokens"),
            ],
            cost: v.get("costUSD")?.as_f64()?,
            known: v.get("costBasis").and_then(Value::as_str) != Some("unknown"),
        })
    }
}
