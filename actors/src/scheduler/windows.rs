//! The API's usage windows: when one is used up, no turn starts until it starts again.
//!
//! With subscription credentials every turn's `rate_limit_event` says how much of each
//! window (five-hour, seven-day, …) is used and when it resets. A window **holds** dispatch
//! when it is `rejected` (used up: every call would get a 429 the CLI does not retry), or
//! when its utilisation reached the operator's cap (`--max-window-use`), until its reset
//! time. A rejection without a reset time holds for [`UNKNOWN_RESET`]. While held, queued
//! tasks wait (their deadlines still run) and are told why and until when; the scheduler
//! arms a timer for the reset and dispatches again by itself.
//!
//! Reports can arrive out of order — a turn that started before the window ran out may
//! report `allowed` after another turn's `rejected` — so a rejection stands until its own
//! reset time unless a report names a different reset (a new window).

use std::collections::BTreeMap;

use claude_pool_protocol::limits::RateLimitInfo;
use claude_pool_protocol::tools::ApiWindow;

use claude_pool_protocol::TaskId;
use claude_pool_protocol::tools::TaskReport;

use super::SchedulerMsg;
use super::table::TaskState;
use crate::clock::rfc3339_seconds as rfc3339;
use crate::events::PoolEvent;
use crate::task::TaskProgress;

/// How long a rejection that names no reset time holds dispatch.
pub const UNKNOWN_RESET: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Known {
    status: String,
    utilization: Option<f64>,
    /// Unix ms.
    resets_at_ms: Option<i64>,
    seen_ms: i64,
}

/// Why dispatch waits, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    /// The window that holds it (the one that resets last, when several do).
    pub window: String,
    /// When it starts again (unix ms).
    pub until_ms: i64,
    /// A sentence for callers.
    pub why: String,
}

/// Every window the API reported, and the operator's cap.
#[derive(Debug, Default)]
pub(super) struct Windows {
    known: BTreeMap<String, Known>,
    /// `--max-window-use`: hold at this utilisation (0..1).
    max_use: Option<f64>,
}

impl Windows {
    pub fn new(max_use: Option<f64>) -> Windows {
        Windows {
            known: BTreeMap::new(),
            max_use,
        }
    }

    /// A slot's report, seen at `now_ms`.
    pub fn update(&mut self, info: &RateLimitInfo, now_ms: i64) {
        for w in &info.windows {
            let resets_at_ms = w
                .resets_at
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX / 2) * 1000);
            if let Some(old) = self.known.get(&w.name)
                && old.status == "rejected"
                && w.status != "rejected"
                && old.resets_at_ms.is_some_and(|r| r > now_ms)
                && (resets_at_ms.is_none() || resets_at_ms == old.resets_at_ms)
            {
                continue; // a late report from before the window ran out
            }
            self.known.insert(
                w.name.clone(),
                Known {
                    status: w.status.clone(),
                    utilization: w.utilization,
                    resets_at_ms,
                    seen_ms: now_ms,
                },
            );
        }
    }

    /// What holds dispatch at `now_ms`, if anything.
    pub fn hold(&self, now_ms: i64) -> Option<Hold> {
        let mut hold: Option<Hold> = None;
        for (name, k) in &self.known {
            let capped = self
                .max_use
                .zip(k.utilization)
                .is_some_and(|(cap, used)| used >= cap);
            let until = match (k.status.as_str(), k.resets_at_ms) {
                ("rejected", Some(r)) => r,
                ("rejected", None) => k.seen_ms + UNKNOWN_RESET.as_millis() as i64,
                (_, Some(r)) if capped => r,
                _ => continue,
            };
            if until <= now_ms || hold.as_ref().is_some_and(|h| h.until_ms >= until) {
                continue;
            }
            let why = if k.status == "rejected" {
                format!(
                    "the API's {name} usage window is used up until {}",
                    rfc3339(until)
                )
            } else {
                format!(
                    "the API's {name} usage window is {:.0}% used, at the --max-window-use cap of {:.0}%, until {}",
                    k.utilization.unwrap_or(0.0) * 100.0,
                    self.max_use.unwrap_or(1.0) * 100.0,
                    rfc3339(until)
                )
            };
            hold = Some(Hold {
                window: name.clone(),
                until_ms: until,
                why,
            });
        }
        hold
    }

    /// Every window as `pool_status` shows it.
    pub fn report(&self) -> Vec<ApiWindow> {
        self.known
            .iter()
            .map(|(name, k)| ApiWindow {
                name: name.clone(),
                status: k.status.clone(),
                utilization: k.utilization,
                resets_at: k.resets_at_ms.map(rfc3339),
            })
            .collect()
    }
}

impl super::SchedulerState {
    /// A slot relayed the API's usage windows.
    pub(super) fn on_api_windows(&mut self, info: &RateLimitInfo) {
        let now = crate::clock::now_ms();
        let before = (self.windows.hold(now), self.windows.report());
        self.windows.update(info, now);
        let after = (self.windows.hold(now), self.windows.report());
        if before == after {
            return;
        }
        match (&before.0, &after.0) {
            (None, Some(h)) => {
                tracing::warn!(window = %h.window, "no turn starts until the window resets: {}", h.why);
            }
            (Some(_), None) => tracing::info!("the API's usage windows allow turns again"),
            _ => {}
        }
        self.events.publish(PoolEvent::Api);
        self.arm_window_timer(now);
    }

    /// The reset time of the window that held dispatch came.
    pub(super) fn on_window_tick(&mut self) {
        self.window_timer = None;
        let now = crate::clock::now_ms();
        if self.windows.hold(now).is_none() {
            tracing::info!("a usage window started again: turns start again");
            self.events.publish(PoolEvent::Api);
        }
        self.arm_window_timer(now);
    }

    /// A timer for the moment the current hold ends (at most one per reset time).
    fn arm_window_timer(&mut self, now: i64) {
        let Some(h) = self.windows.hold(now) else {
            return;
        };
        if self.window_timer.is_some_and(|t| t <= h.until_ms) {
            return; // one fires first; it re-arms for the rest
        }
        self.window_timer = Some(h.until_ms);
        let wait =
            std::time::Duration::from_millis(u64::try_from(h.until_ms - now).unwrap_or(0) + 1);
        self.myself.send_after(wait, || SchedulerMsg::WindowTick);
    }

    /// Whether a usage window holds dispatch now; if so, every queued task's caller that
    /// was not told about this hold is told why and until when.
    pub(super) fn window_holds(&mut self) -> bool {
        let Some(h) = self.windows.hold(crate::clock::now_ms()) else {
            return false;
        };
        for id in &self.queue {
            let Some(r) = self.tasks.get_mut(id) else {
                continue;
            };
            if r.told_hold == Some(h.until_ms) {
                continue;
            }
            r.told_hold = Some(h.until_ms);
            if let Some((_, Some(sink))) = &r.payload {
                let _ = sink.send(TaskProgress::Held(h.why.clone()));
            }
        }
        true
    }

    /// A task's report, with what holds it back when it is queued behind a used-up window.
    pub(super) fn report(&self, id: &TaskId) -> Option<TaskReport> {
        let r = self.tasks.get(id)?;
        let mut report = r.report(id);
        if matches!(r.state, TaskState::Pending) {
            report.waiting_for_window = self.windows.hold(crate::clock::now_ms()).map(|h| h.why);
        }
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use claude_pool_protocol::limits::WindowUse;

    use super::*;

    fn info(name: &str, status: &str, used: f64, resets_s: u64) -> RateLimitInfo {
        RateLimitInfo {
            windows: vec![WindowUse {
                name: name.into(),
                status: status.into(),
                utilization: Some(used),
                resets_at: Some(resets_s),
            }],
        }
    }

    #[test]
    fn a_used_up_window_holds_until_its_reset_and_a_late_allowed_does_not_lift_it() {
        let mut w = Windows::new(None);
        let now = 1_000_000;
        w.update(&info("five_hour", "allowed", 0.5, 2_000), now);
        assert_eq!(w.hold(now), None);
        w.update(&info("five_hour", "rejected", 1.0, 2_000), now);
        let h = w.hold(now).expect("held");
        assert_eq!(h.until_ms, 2_000_000);
        assert_eq!(h.window, "five_hour");
        assert!(
            h.why.contains("used up until 1970-01-01T00:33:20Z"),
            "{}",
            h.why
        );
        // A turn that began before the window ran out reports `allowed` late.
        w.update(&info("five_hour", "allowed", 0.99, 2_000), now + 1);
        assert!(w.hold(now + 1).is_some());
        // At the reset, nothing holds.
        assert_eq!(w.hold(2_000_000), None);
        // A report naming a new window replaces the old one.
        w.update(&info("five_hour", "allowed", 0.0, 20_000), 2_000_001);
        assert_eq!(w.hold(2_000_001), None);
    }

    #[test]
    fn the_cap_holds_a_window_at_its_utilisation_and_the_latest_reset_wins() {
        let mut w = Windows::new(Some(0.8));
        let now = 1_000;
        w.update(&info("five_hour", "allowed_warning", 0.85, 50), now);
        let h = w.hold(now).expect("capped");
        assert!(
            h.why.contains("85% used") && h.why.contains("cap of 80%"),
            "{}",
            h.why
        );
        w.update(&info("seven_day", "rejected", 1.0, 90), now);
        assert_eq!(w.hold(now).unwrap().until_ms, 90_000);
        assert_eq!(w.hold(now).unwrap().window, "seven_day");
        // Without the cap, 85% does not hold.
        let mut open = Windows::new(None);
        open.update(&info("five_hour", "allowed_warning", 0.85, 50), now);
        assert_eq!(open.hold(now), None);
        // A rejection with no reset time holds for a minute.
        let mut bare = Windows::new(None);
        bare.update(
            &RateLimitInfo {
                windows: vec![WindowUse {
                    name: "five_hour".into(),
                    status: "rejected".into(),
                    utilization: None,
                    resets_at: None,
                }],
            },
            now,
        );
        assert_eq!(
            bare.hold(now).unwrap().until_ms,
            now + UNKNOWN_RESET.as_millis() as i64
        );
    }
}
