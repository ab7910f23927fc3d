//! The mock's limits: what makes the real API answer `429` or `529` before it answers at all,
//! and the rate-limit headers it sends on every answer.
//!
//! The point is that the real CLI's own reactions (its retries and `system/api_retry` lines,
//! its `rate_limit_event` lines) are what a test sees, so every answer copies the real API's
//! shape: the `{"type":"error","error":{"type":"rate_limit_error",...}}` body, `retry-after`,
//! `x-should-retry: true`, the `anthropic-ratelimit-requests-*` / `-tokens-*` headers (resets as
//! RFC 3339) and, for subscription (OAuth) clients, the `anthropic-ratelimit-unified-*` headers
//! that Claude Code 2.1.329 reads (names taken from its bundle).
//!
//! The gates, in the order a `/v1/messages` request meets them (the first that refuses answers):
//!
//! | gate | knob | answer | counter |
//! |---|---|---|---|
//! | server overloaded | [`Limits::overloaded_for`] | `529 overloaded_error` | [`Stats::overloaded`] |
//! | subscription window exhausted | [`Unified::rejected_until`] | `429`, unified status `rejected` | [`Stats::rejected_unified`] |
//! | requests in flight | [`Limits::max_in_flight`] | `429` | [`Stats::rejected_in_flight`] |
//! | requests per window | [`Limits::rpm`] | `429` | [`Stats::rejected_rpm`] |
//! | tokens per window | [`Limits::tpm`] | `429` | [`Stats::rejected_tpm`] |
//!
//! Everything here takes the time as an argument (`now` for windows, `unix` for the
//! subscription window), so the arithmetic is tested without a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::http::rfc3339;

/// Server-wide limits of `POST /v1/messages` (all off by default).
///
/// Set them with [`crate::MockServer::set_limits`], `POST /_mock/config` (the JSON keys are the
/// field names; `overloaded_for` in seconds, `unified` an object or `null`) or the binary's
/// flags (`--max-in-flight`, `--rpm`, `--tpm`, `--rate-window`, `--limit-retry-after`,
/// `--overloaded-for`, `--unified-*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// At most this many `/v1/messages` answers in progress at once (from the request read to
    /// the last byte of the answer, stream included); one more gets `429` at once. `None`: no
    /// limit.
    pub max_in_flight: Option<u64>,
    /// At most this many requests admitted per [`Limits::window`] (sliding); `None`: no limit.
    pub rpm: Option<u64>,
    /// At most this many tokens (`input_tokens` + `output_tokens` of the answers the mock
    /// gives, so `MOCK_USAGE` sets them) admitted per [`Limits::window`] (sliding). A request is admitted while the
    /// window's tokens plus its own stay within the limit, and its tokens count from then on.
    pub tpm: Option<u64>,
    /// The sliding window of `rpm` and `tpm`: 60 s like the real API; shorter in tests.
    pub window: Duration,
    /// `retry-after` seconds on every limiter `429`. `None`: 1 for in-flight refusals, and the
    /// time until the window has room again (at least 1) for `rpm`/`tpm`; the time until
    /// [`Unified::rejected_until`] for the subscription window.
    pub retry_after: Option<u64>,
    /// Answer every `/v1/messages` with `529 overloaded_error` for this long, counted from
    /// when the limits are set (server start for the binary's `--overloaded-for`).
    pub overloaded_for: Option<Duration>,
    /// Send the subscription (OAuth) rate-limit headers on every `/v1/messages` answer.
    pub unified: Option<Unified>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: None,
            rpm: None,
            tpm: None,
            window: Duration::from_secs(60),
            retry_after: None,
            overloaded_for: None,
            unified: None,
        }
    }
}

/// Which subscription window speaks for the account
/// (`anthropic-ratelimit-unified-representative-claim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Claim {
    /// The five-hour session window (`five_hour`, header prefix `5h`).
    #[default]
    FiveHour,
    /// The weekly window (`seven_day`, header prefix `7d`).
    SevenDay,
}

impl Claim {
    /// The claim as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Claim::FiveHour => "five_hour",
            Claim::SevenDay => "seven_day",
        }
    }

    fn parse(s: &str) -> Option<Claim> {
        match s {
            "five_hour" | "5h" => Some(Claim::FiveHour),
            "seven_day" | "7d" => Some(Claim::SevenDay),
            _ => None,
        }
    }
}

/// The subscription windows the real API reports to OAuth clients, as headers:
///
/// | header | value |
/// |---|---|
/// | `anthropic-ratelimit-unified-status` | `rejected` while [`Unified::rejected_until`] is ahead, else `allowed_warning` when the claim window's utilisation reaches [`Unified::warn_at`], else `allowed` |
/// | `anthropic-ratelimit-unified-reset` | the claim window's reset (unix seconds) |
/// | `anthropic-ratelimit-unified-representative-claim` | [`Unified::claim`] |
/// | `anthropic-ratelimit-unified-{5h,7d}-utilization` | 0..1 |
/// | `anthropic-ratelimit-unified-{5h,7d}-reset` | unix seconds |
/// | `anthropic-ratelimit-unified-{5h,7d}-status` | that window's status |
/// | `anthropic-ratelimit-unified-{5h,7d}-surpassed-threshold` | [`Unified::warn_at`], only when the utilisation reaches it (the CLI's cue for `allowed_warning`) |
#[derive(Debug, Clone, PartialEq)]
pub struct Unified {
    /// The window that speaks for the account (and that `rejected_until` exhausts).
    pub claim: Claim,
    /// Utilisation of the five-hour window, 0..1.
    pub five_hour_utilization: f64,
    /// Utilisation of the weekly window, 0..1.
    pub seven_day_utilization: f64,
    /// When the five-hour window resets (unix seconds).
    pub five_hour_resets_at: u64,
    /// When the weekly window resets (unix seconds).
    pub seven_day_resets_at: u64,
    /// The claim window is exhausted until this unix time: every request gets `429` with
    /// status `rejected` and this as its reset; from then on, allowed again.
    pub rejected_until: Option<u64>,
    /// Utilisation from which a window is reported as past its warning threshold.
    pub warn_at: f64,
}

impl Unified {
    /// Both windows empty, resetting 5 h and 7 d after `unix`, warning at 0.75.
    pub fn starting_at(unix: u64) -> Unified {
        Unified {
            claim: Claim::FiveHour,
            five_hour_utilization: 0.0,
            seven_day_utilization: 0.0,
            five_hour_resets_at: unix + 5 * 3600,
            seven_day_resets_at: unix + 7 * 86_400,
            rejected_until: None,
            warn_at: 0.75,
        }
    }

    /// Both windows empty, resetting 5 h and 7 d from now.
    pub fn now() -> Unified {
        Unified::starting_at(unix_now())
    }

    fn rejected(&self, unix: u64) -> bool {
        self.rejected_until.is_some_and(|t| unix < t)
    }

    /// `(prefix, claim, utilisation, reset)` of each window at `unix`.
    fn windows(&self, unix: u64) -> [(&'static str, Claim, f64, u64); 2] {
        let rejected = self.rejected(unix);
        let reset = |claim: Claim, at: u64| match self.rejected_until {
            Some(t) if rejected && claim == self.claim => t,
            _ => at,
        };
        [
            (
                "5h",
                Claim::FiveHour,
                self.five_hour_utilization,
                reset(Claim::FiveHour, self.five_hour_resets_at),
            ),
            (
                "7d",
                Claim::SevenDay,
                self.seven_day_utilization,
                reset(Claim::SevenDay, self.seven_day_resets_at),
            ),
        ]
    }

    /// The overall status at `unix`.
    pub(crate) fn status(&self, unix: u64) -> &'static str {
        if self.rejected(unix) {
            "rejected"
        } else if self
            .windows(unix)
            .iter()
            .any(|(_, claim, u, _)| *claim == self.claim && *u >= self.warn_at)
        {
            "allowed_warning"
        } else {
            "allowed"
        }
    }

    /// The `anthropic-ratelimit-unified-*` headers at `unix`.
    pub(crate) fn headers(&self, unix: u64) -> Vec<(&'static str, String)> {
        let status = self.status(unix);
        let windows = self.windows(unix);
        let claim_reset = windows
            .iter()
            .find(|w| w.1 == self.claim)
            .map_or(0, |w| w.3);
        let mut h = vec![
            ("anthropic-ratelimit-unified-status", status.to_string()),
            ("anthropic-ratelimit-unified-reset", claim_reset.to_string()),
            (
                "anthropic-ratelimit-unified-representative-claim",
                self.claim.as_str().to_string(),
            ),
        ];
        for (prefix, claim, util, reset) in windows {
            let past = util >= self.warn_at;
            let wstatus = if claim == self.claim {
                status
            } else if past {
                "allowed_warning"
            } else {
                "allowed"
            };
            let name = |what: &str| -> &'static str {
                // header names are `&'static str`: spell the eight out
                match (prefix, what) {
                    ("5h", "utilization") => "anthropic-ratelimit-unified-5h-utilization",
                    ("5h", "reset") => "anthropic-ratelimit-unified-5h-reset",
                    ("5h", "status") => "anthropic-ratelimit-unified-5h-status",
                    ("5h", _) => "anthropic-ratelimit-unified-5h-surpassed-threshold",
                    (_, "utilization") => "anthropic-ratelimit-unified-7d-utilization",
                    (_, "reset") => "anthropic-ratelimit-unified-7d-reset",
                    (_, "status") => "anthropic-ratelimit-unified-7d-status",
                    _ => "anthropic-ratelimit-unified-7d-surpassed-threshold",
                }
            };
            h.push((name("utilization"), fmt_f64(util)));
            h.push((name("reset"), reset.to_string()));
            h.push((name("status"), wstatus.to_string()));
            if past {
                h.push((name("surpassed-threshold"), fmt_f64(self.warn_at)));
            }
        }
        h
    }

    fn to_json(&self) -> Value {
        json!({
            "claim": self.claim.as_str(),
            "five_hour_utilization": self.five_hour_utilization,
            "seven_day_utilization": self.seven_day_utilization,
            "five_hour_resets_at": self.five_hour_resets_at,
            "seven_day_resets_at": self.seven_day_resets_at,
            "rejected_until": self.rejected_until,
            "warn_at": self.warn_at,
        })
    }

    fn update(&mut self, p: &serde_json::Map<String, Value>) {
        let unit = |v: &Value| v.as_f64().map(|f| f.clamp(0.0, 1.0));
        if let Some(c) = p
            .get("claim")
            .and_then(Value::as_str)
            .and_then(Claim::parse)
        {
            self.claim = c;
        }
        if let Some(v) = p.get("five_hour_utilization").and_then(unit) {
            self.five_hour_utilization = v;
        }
        if let Some(v) = p.get("seven_day_utilization").and_then(unit) {
            self.seven_day_utilization = v;
        }
        if let Some(v) = p.get("five_hour_resets_at").and_then(Value::as_u64) {
            self.five_hour_resets_at = v;
        }
        if let Some(v) = p.get("seven_day_resets_at").and_then(Value::as_u64) {
            self.seven_day_resets_at = v;
        }
        if let Some(v) = p.get("rejected_until") {
            self.rejected_until = v.as_u64();
        }
        if let Some(v) = p.get("rejected_for").and_then(Value::as_f64) {
            self.rejected_until = Some(unix_now() + v.max(0.0).ceil() as u64);
        }
        if let Some(v) = p.get("warn_at").and_then(unit) {
            self.warn_at = v;
        }
    }
}

/// `0.85`, `1`, `0` — the shortest decimal that reads back the same.
fn fmt_f64(v: f64) -> String {
    format!("{v}")
}

/// Seconds since the epoch, now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Limits {
    /// The limits as `POST /_mock/config` reports them.
    pub(crate) fn to_json(&self, overloaded_left: Option<Duration>) -> Value {
        json!({
            "max_in_flight": self.max_in_flight,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "window": self.window.as_secs_f64(),
            "retry_after_limits": self.retry_after,
            "overloaded_for": overloaded_left.map(|d| d.as_secs_f64()),
            "unified": self.unified.as_ref().map(Unified::to_json),
        })
    }

    /// Apply the keys of a `POST /_mock/config` patch that concern the limits (`0` or `null`
    /// turns a limit off). Returns whether `overloaded_for` was given (it restarts that clock).
    pub(crate) fn update(&mut self, patch: &Value) -> bool {
        let Some(p) = patch.as_object() else {
            return false;
        };
        let limit = |v: &Value| v.as_u64().filter(|n| *n > 0);
        for (key, slot) in [
            ("max_in_flight", &mut self.max_in_flight),
            ("rpm", &mut self.rpm),
            ("tpm", &mut self.tpm),
            ("retry_after_limits", &mut self.retry_after),
        ] {
            if let Some(v) = p.get(key) {
                *slot = limit(v);
            }
        }
        if let Some(w) = p.get("window").and_then(Value::as_f64)
            && w > 0.0
        {
            self.window = Duration::from_secs_f64(w);
        }
        let mut restarted = false;
        if let Some(v) = p.get("overloaded_for") {
            self.overloaded_for = v.as_f64().filter(|s| *s > 0.0).map(Duration::from_secs_f64);
            restarted = true;
        }
        match p.get("unified") {
            Some(Value::Object(u)) => self.unified.get_or_insert_with(Unified::now).update(u),
            Some(_) => self.unified = None,
            None => {}
        }
        restarted
    }
}

/// Why a request was refused before it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// [`Limits::overloaded_for`] is running: `529`.
    Overloaded,
    /// The subscription window is exhausted: `429`.
    Unified,
    /// [`Limits::max_in_flight`] answers are already in progress: `429`.
    InFlight,
    /// [`Limits::rpm`] requests in the window already: `429`.
    Rpm,
    /// [`Limits::tpm`] would be passed: `429`.
    Tpm,
}

/// A refusal, ready to send.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub why: Refused,
    pub status: u16,
    pub message: String,
    /// `retry-after`, `x-should-retry` and the rate-limit headers.
    pub headers: Vec<(&'static str, String)>,
}

/// What the mock has seen on `POST /v1/messages` since start or the last reset.
///
/// Read it with [`crate::MockServer::stats`], wait on it with
/// [`crate::MockServer::wait_for_stats`], or `GET /_mock/stats` (the same fields as JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received (counted when read, whatever the answer).
    pub received: u64,
    /// Answered `200` (counted as the last bytes are written, a stream's included).
    pub ok: u64,
    /// Refused `429` because [`Limits::max_in_flight`] answers were in progress.
    pub rejected_in_flight: u64,
    /// Refused `429` by [`Limits::rpm`].
    pub rejected_rpm: u64,
    /// Refused `429` by [`Limits::tpm`].
    pub rejected_tpm: u64,
    /// Refused `429` because the subscription window was exhausted ([`Unified::rejected_until`]).
    pub rejected_unified: u64,
    /// Answered `429` on request (`MOCK_STATUS:429`, `fail_status`).
    pub rejected_other: u64,
    /// Answered `529`, whether by [`Limits::overloaded_for`], `MOCK_STATUS:529` or `fail_status`.
    pub overloaded: u64,
    /// Answered with any other error status (`MOCK_STATUS`, `fail_status`, `MOCK_FAIL_FIRST`,
    /// a body that is not JSON).
    pub other_errors: u64,
    /// Answers in progress now (admitted, last bytes not yet written).
    pub in_flight: u64,
    /// The most answers in progress at once.
    pub peak_in_flight: u64,
}

impl Stats {
    /// All `429` answers, whatever the reason.
    pub fn rejected(&self) -> u64 {
        self.rejected_in_flight
            + self.rejected_rpm
            + self.rejected_tpm
            + self.rejected_unified
            + self.rejected_other
    }

    pub(crate) fn to_json(self) -> Value {
        json!({
            "received": self.received,
            "ok": self.ok,
            "rejected": {
                "in_flight": self.rejected_in_flight,
                "rpm": self.rejected_rpm,
                "tpm": self.rejected_tpm,
                "unified": self.rejected_unified,
                "other": self.rejected_other,
            },
            "overloaded": self.overloaded,
            "other_errors": self.other_errors,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
        })
    }

    /// Count an answer with `status` that was not refused by the limiter.
    pub(crate) fn count_answer(&mut self, status: u16) {
        match status {
            200 => self.ok += 1,
            429 => self.rejected_other += 1,
            529 => self.overloaded += 1,
            _ => self.other_errors += 1,
        }
    }

    pub(crate) fn count_refusal(&mut self, why: Refused) {
        match why {
            Refused::Overloaded => self.overloaded += 1,
            Refused::Unified => self.rejected_unified += 1,
            Refused::InFlight => self.rejected_in_flight += 1,
            Refused::Rpm => self.rejected_rpm += 1,
            Refused::Tpm => self.rejected_tpm += 1,
        }
    }
}

/// The limiter's memory: admitted requests and their tokens within the window, answers in
/// progress, and when the overload ends.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    /// Admission times of the requests still inside the window.
    requests: VecDeque<Instant>,
    /// Admission times and tokens of the requests still inside the window.
    tokens: VecDeque<(Instant, u64)>,
    /// When [`Limits::overloaded_for`] ends.
    pub overloaded_until: Option<Instant>,
    /// Answers in progress (admitted, last byte not yet written).
    pub in_flight: u64,
}

impl Limiter {
    /// Forget the windows (not the answers in progress nor the overload).
    pub(crate) fn reset(&mut self) {
        self.requests.clear();
        self.tokens.clear();
    }

    fn expire(&mut self, window: Duration, now: Instant) {
        let live = |t: Instant| now.saturating_duration_since(t) < window;
        while self.requests.front().is_some_and(|t| !live(*t)) {
            self.requests.pop_front();
        }
        while self.tokens.front().is_some_and(|(t, _)| !live(*t)) {
            self.tokens.pop_front();
        }
    }

    fn tokens_used(&self) -> u64 {
        self.tokens.iter().map(|(_, n)| n).sum()
    }

    /// When the oldest entry in the window leaves it (`now` if the window is empty).
    fn frees_at(oldest: Option<Instant>, window: Duration, now: Instant) -> Instant {
        oldest.map_or(now, |t| t + window)
    }

    /// The standard rate-limit headers (`requests-*` when `rpm` is set, `tokens-*` when `tpm`
    /// is), after `expire`.
    fn standard_headers(
        &self,
        limits: &Limits,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<(&'static str, String)> {
        let at = |i: Instant| rfc3339(wall + i.saturating_duration_since(now));
        let mut h = Vec::new();
        if let Some(rpm) = limits.rpm {
            let oldest = self.requests.front().copied();
            h.push(("anthropic-ratelimit-requests-limit", rpm.to_string()));
            h.push((
                "anthropic-ratelimit-requests-remaining",
                rpm.saturating_sub(self.requests.len() as u64).to_string(),
            ));
            h.push((
                "anthropic-ratelimit-requests-reset",
                at(Self::frees_at(oldest, limits.window, now)),
            ));
        }
        if let Some(tpm) = limits.tpm {
            let oldest = self.tokens.front().map(|(t, _)| *t);
            h.push(("anthropic-ratelimit-tokens-limit", tpm.to_string()));
            h.push((
                "anthropic-ratelimit-tokens-remaining",
                tpm.saturating_sub(self.tokens_used()).to_string(),
            ));
            h.push((
                "anthropic-ratelimit-tokens-reset",
                at(Self::frees_at(oldest, limits.window, now)),
            ));
        }
        h
    }

    /// Admit a request that would cost `tokens`, or refuse it. On admission the request and
    /// its tokens enter the windows and it counts as in flight (the caller must call
    /// [`Limiter::finish`]); the returned headers go on its answer.
    pub(crate) fn admit(
        &mut self,
        limits: &Limits,
        tokens: u64,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Vec<(&'static str, String)>, Refusal> {
        let unix = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let unified = limits
            .unified
            .as_ref()
            .map(|u| u.headers(unix))
            .unwrap_or_default();
        if let Some(until) = self.overloaded_until
            && now < until
        {
            let mut headers = vec![("x-should-retry", "true".to_string())];
            if let Some(s) = limits.retry_after {
                headers.push(("retry-after", s.to_string()));
            }
            headers.extend(unified);
            return Err(Refusal {
                why: Refused::Overloaded,
                status: 529,
                message: "Overloaded".into(),
                headers,
            });
        }
        self.expire(limits.window, now);
        let refuse = |this: &Self, why: Refused, wait: Duration, extra: Vec<_>| {
            let secs = limits
                .retry_after
                .unwrap_or_else(|| wait.as_secs_f64().ceil().max(1.0) as u64);
            let mut headers = vec![
                ("retry-after", secs.to_string()),
                ("x-should-retry", "true".to_string()),
            ];
            headers.extend(extra);
            headers.extend(this.standard_headers(limits, now, wall));
            headers.extend(unified.clone());
            let message = match why {
                Refused::Unified => {
                    "This request would exceed your account's rate limit. Please try again later."
                        .to_string()
                }
                Refused::InFlight => format!(
                    "mock-anthropic: more than {} requests in flight (max_in_flight)",
                    limits.max_in_flight.unwrap_or(0)
                ),
                Refused::Rpm => format!(
                    "This request would exceed the rate limit for your organization of {} \
                     requests per minute. (mock-anthropic rpm)",
                    limits.rpm.unwrap_or(0)
                ),
                Refused::Tpm => format!(
                    "This request would exceed the rate limit for your organization of {} \
                     input+output tokens per minute. (mock-anthropic tpm)",
                    limits.tpm.unwrap_or(0)
                ),
                Refused::Overloaded => "Overloaded".to_string(),
            };
            Refusal {
                why,
                status: 429,
                message,
                headers,
            }
        };
        if let Some(u) = &limits.unified
            && let Some(until) = u.rejected_until
            && unix < until
        {
            let wait = Duration::from_secs(until - unix);
            return Err(refuse(self, Refused::Unified, wait, Vec::new()));
        }
        if let Some(max) = limits.max_in_flight
            && self.in_flight >= max
        {
            // the request limit of the in-flight gate, when no rpm headers say otherwise
            let extra = if limits.rpm.is_none() {
                let secs = limits.retry_after.unwrap_or(1);
                vec![
                    ("anthropic-ratelimit-requests-limit", max.to_string()),
                    ("anthropic-ratelimit-requests-remaining", "0".to_string()),
                    (
                        "anthropic-ratelimit-requests-reset",
                        rfc3339(wall + Duration::from_secs(secs)),
                    ),
                ]
            } else {
                Vec::new()
            };
            return Err(refuse(
                self,
                Refused::InFlight,
                Duration::from_secs(1),
                extra,
            ));
        }
        if let Some(rpm) = limits.rpm
            && self.requests.len() as u64 >= rpm
        {
            let free = Self::frees_at(self.requests.front().copied(), limits.window, now);
            return Err(refuse(self, Refused::Rpm, free - now, Vec::new()));
        }
        if let Some(tpm) = limits.tpm
            && self.tokens_used() + tokens > tpm
        {
            // wait until enough of the oldest tokens have left the window
            let mut used = self.tokens_used();
            let mut free = now;
            for (t, n) in &self.tokens {
                if used + tokens <= tpm {
                    break;
                }
                used -= n;
                free = *t + limits.window;
            }
            return Err(refuse(self, Refused::Tpm, free - now, Vec::new()));
        }
        self.requests.push_back(now);
        self.tokens.push_back((now, tokens));
        self.in_flight += 1;
        let mut headers = self.standard_headers(limits, now, wall);
        headers.extend(unified);
        Ok(headers)
    }

    /// An admitted answer is over (written, or the client went away).
    pub(crate) fn finish(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn in_flight_gate_refuses_beyond_the_limit_until_one_finishes() {
        let limits = Limits {
            max_in_flight: Some(2),
            ..Limits::default()
        };
        let (mut l, t0, wall) = (Limiter::default(), Instant::now(), UNIX_EPOCH);
        assert!(l.admit(&limits, 10, t0, wall).is_ok());
        assert!(l.admit(&limits, 10, t0, wall).is_ok());
        let r = l.admit(&limits, 10, t0, wall).expect_err("third refused");
        assert_eq!((r.why, r.status), (Refused::InFlight, 429));
        assert_eq!(header(&r.headers, "retry-after"), Some("1"));
        assert_eq!(header(&r.headers, "x-should-retry"), Some("true"));
        assert_eq!(
            header(&r.headers, "anthropic-ratelimit-requests-reset"),
            Some("1970-01-01T00:00:01Z")
        );
        l.finish();
        assert!(l.admit(&limits, 10, t0, wall).is_ok());
    }

    #[test]
    fn rpm_window_slides() {
        let limits = Limits {
            rpm: Some(2),
            ..Limits::default()
        };
        let (mut l, t0, wall) = (Limiter::default(), Instant::now(), UNIX_EPOCH);
        let s = Duration::from_secs;
        let ok = l.admit(&limits, 0, t0, wall).expect("1st");
        assert_eq!(
            header(&ok, "anthropic-ratelimit-requests-remaining"),
            Some("1")
        );
        l.admit(&limits, 0, t0 + s(10), wall + s(10)).expect("2nd");
        let r = l
            .admit(&limits, 0, t0 + s(30), wall + s(30))
            .expect_err("3rd within the window");
        assert_eq!(r.why, Refused::Rpm);
        // the first admission leaves the window at t0+60: 30 s from now
        assert_eq!(header(&r.headers, "retry-after"), Some("30"));
        assert_eq!(
            header(&r.headers, "anthropic-ratelimit-requests-reset"),
            Some("1970-01-01T00:01:00Z")
        );
        assert_eq!(
            header(&r.headers, "anthropic-ratelimit-requests-remaining"),
            Some("0")
        );
        assert!(l.admit(&limits, 0, t0 + s(60), wall + s(60)).is_ok());
    }

    #[test]
    fn tpm_counts_tokens_of_admitted_requests() {
        let limits = Limits {
            tpm: Some(1000),
            retry_after: Some(7),
            ..Limits::default()
        };
        let (mut l, t0, wall) = (Limiter::default(), Instant::now(), UNIX_EPOCH);
        let s = Duration::from_secs;
        l.admit(&limits, 600, t0, wall).expect("600");
        let r = l
            .admit(&limits, 500, t0 + s(1), wall)
            .expect_err("1100 > 1000");
        assert_eq!(r.why, Refused::Tpm);
        assert_eq!(header(&r.headers, "retry-after"), Some("7"));
        assert_eq!(
            header(&r.headers, "anthropic-ratelimit-tokens-remaining"),
            Some("400")
        );
        l.admit(&limits, 400, t0 + s(2), wall)
            .expect("exactly 1000");
        assert!(l.admit(&limits, 1, t0 + s(3), wall).is_err());
        assert!(l.admit(&limits, 600, t0 + s(60), wall).is_ok());
    }

    #[test]
    fn overload_ends_and_unified_window_rejects_until_its_reset() {
        let t0 = Instant::now();
        let mut l = Limiter {
            overloaded_until: Some(t0 + Duration::from_secs(5)),
            ..Limiter::default()
        };
        let mut u = Unified::starting_at(1000);
        u.rejected_until = Some(1100);
        let limits = Limits {
            unified: Some(u),
            ..Limits::default()
        };
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let r = l.admit(&limits, 0, t0, at(1000)).expect_err("overloaded");
        assert_eq!((r.why, r.status), (Refused::Overloaded, 529));
        let later = t0 + Duration::from_secs(5);
        let r = l.admit(&limits, 0, later, at(1040)).expect_err("window");
        assert_eq!((r.why, r.status), (Refused::Unified, 429));
        assert_eq!(header(&r.headers, "retry-after"), Some("60"));
        assert_eq!(
            header(&r.headers, "anthropic-ratelimit-unified-status"),
            Some("rejected")
        );
        assert_eq!(
            header(&r.headers, "anthropic-ratelimit-unified-reset"),
            Some("1100")
        );
        let ok = l.admit(&limits, 0, later, at(1100)).expect("reset passed");
        assert_eq!(
            header(&ok, "anthropic-ratelimit-unified-status"),
            Some("allowed")
        );
        assert_eq!(
            header(&ok, "anthropic-ratelimit-unified-reset"),
            Some("19000")
        );
    }

    #[test]
    fn unified_status_follows_utilisation() {
        let cases = [
            (Claim::FiveHour, 0.5, 0.9, "allowed", None),
            (Claim::FiveHour, 0.85, 0.1, "allowed_warning", Some("0.75")),
            (Claim::SevenDay, 0.1, 0.85, "allowed_warning", None),
        ];
        for (claim, five, seven, status, five_threshold) in cases {
            let u = Unified {
                claim,
                five_hour_utilization: five,
                seven_day_utilization: seven,
                ..Unified::starting_at(0)
            };
            let h = u.headers(0);
            assert_eq!(
                header(&h, "anthropic-ratelimit-unified-status"),
                Some(status),
                "{claim:?} {five} {seven}"
            );
            assert_eq!(
                header(&h, "anthropic-ratelimit-unified-5h-surpassed-threshold"),
                five_threshold
            );
            assert_eq!(
                header(&h, "anthropic-ratelimit-unified-representative-claim"),
                Some(claim.as_str())
            );
        }
    }
}
