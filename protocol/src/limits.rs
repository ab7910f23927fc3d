//! What the API says about a subscription's usage windows, as the CLI relays it.
//!
//! With subscription (OAuth) credentials the API answers every call with
//! `anthropic-ratelimit-unified-*` headers, and the CLI prints them as a `rate_limit_event`
//! line (measured with 2.1.329):
//!
//! ```json
//! {"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1796621195,
//!  "rateLimitType":"five_hour","utilization":0.85,"unifiedWindows":{
//!   "five_hour":{"utilization":0.85,"resetsAt":1796621195,"status":"rejected"},
//!   "seven_day":{"utilization":0,"resetsAt":1797225971,"status":"allowed"}}}}
//! ```
//!
//! `status` is `allowed`, `allowed_warning` (a threshold passed) or `rejected` (the window is
//! used up until `resetsAt`, unix seconds: the CLI does not retry, and the turn ends with a
//! 429 result). [`RateLimitInfo::parse`] reads it by field name and tolerates what it does
//! not know.

use serde_json::{Map, Value};

/// One usage window's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowUse {
    /// The window (`five_hour`, `seven_day`, …).
    pub name: String,
    /// `allowed`, `allowed_warning` or `rejected`.
    pub status: String,
    /// How much of it is used, 0..1, when the API says.
    pub utilization: Option<f64>,
    /// When it starts again (unix seconds), when the API says.
    pub resets_at: Option<u64>,
}

impl WindowUse {
    /// Whether the window refuses calls now.
    pub fn rejected(&self) -> bool {
        self.status == "rejected"
    }
}

/// A `rate_limit_event` line's `rate_limit_info`.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct RateLimitInfo {
    /// Every window the API reported; the representative one first.
    pub windows: Vec<WindowUse>,
}

impl RateLimitInfo {
    /// Reads a `rate_limit_event` object (the whole line).
    pub fn parse(obj: &Map<String, Value>) -> RateLimitInfo {
        let Some(info) = obj.get("rate_limit_info").and_then(Value::as_object) else {
            return RateLimitInfo::default();
        };
        let mut windows = Vec::new();
        // The representative window: the top-level fields.
        if let Some(name) = info.get("rateLimitType").and_then(Value::as_str) {
            windows.push(window(name, info));
        }
        if let Some(all) = info.get("unifiedWindows").and_then(Value::as_object) {
            for (name, w) in all {
                let Some(w) = w.as_object() else { continue };
                let parsed = window(name, w);
                match windows.iter_mut().find(|x| x.name == *name) {
                    // The top level speaks for the representative window; its own entry
                    // only fills what the top level left out.
                    Some(top) => {
                        top.utilization = top.utilization.or(parsed.utilization);
                        top.resets_at = top.resets_at.or(parsed.resets_at);
                    }
                    None => windows.push(parsed),
                }
            }
        }
        RateLimitInfo { windows }
    }

    /// Whether any window refuses calls now.
    pub fn rejected(&self) -> bool {
        self.windows.iter().any(WindowUse::rejected)
    }
}

fn window(name: &str, obj: &Map<String, Value>) -> WindowUse {
    WindowUse {
        name: name.to_owned(),
        status: obj
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("allowed")
            .to_owned(),
        utilization: obj.get("utilization").and_then(Value::as_f64),
        resets_at: obj
            .get("resetsAt")
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> RateLimitInfo {
        let v: Value = serde_json::from_str(line).unwrap();
        RateLimitInfo::parse(v.as_object().unwrap())
    }

    #[test]
    fn reads_the_representative_window_and_the_others() {
        // As the pinned CLI printed it against the mock's headers.
        let info = parse(
            r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1796621195,"rateLimitType":"five_hour","isUsingOverage":false,"unifiedWindows":{"five_hour":{"utilization":0.85,"resetsAt":1796621195,"status":"rejected","surpassedThreshold":0.8},"seven_day":{"utilization":0,"resetsAt":1797225971,"status":"allowed"}}},"uuid":"u","session_id":"s"}"#,
        );
        assert!(info.rejected());
        assert_eq!(
            info.windows,
            vec![
                WindowUse {
                    name: "five_hour".into(),
                    status: "rejected".into(),
                    utilization: Some(0.85),
                    resets_at: Some(1796621195),
                },
                WindowUse {
                    name: "seven_day".into(),
                    status: "allowed".into(),
                    utilization: Some(0.0),
                    resets_at: Some(1797225971),
                },
            ]
        );
    }

    #[test]
    fn tolerates_a_bare_or_empty_event() {
        let info = parse(
            r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning","resetsAt":5,"rateLimitType":"seven_day","utilization":0.9}}"#,
        );
        assert_eq!(info.windows.len(), 1);
        assert_eq!(info.windows[0].status, "allowed_warning");
        assert_eq!(info.windows[0].utilization, Some(0.9));
        assert!(!info.rejected());
        assert_eq!(
            parse(r#"{"type":"rate_limit_event"}"#),
            RateLimitInfo::default()
        );
    }
}
