//! Restart policy: how often a supervisor restarts a child and how long it waits first.
//!
//! Pure: the supervisors feed it failure times and act on the [`Decision`]; [`child_exit`]
//! reads which child stopped from a supervision event.
//!
//! **Intensity.** At most `max_restarts` restarts within any `window`. The failure that would
//! be restart number `max_restarts + 1` inside the window is not restarted: the supervisor
//! escalates instead.
//!
//! **Backoff.** The n-th restart inside the current window (n = 1, 2, …) waits
//! `delay(n) = min(base × 2^(n−1), max)`.
//! Worked example with the slot defaults (base 250 ms, max 30 s, 5 restarts in 60 s): a slot
//! whose process dies at t = 0 s restarts at 0.25 s; dies again at 1 s → restarts at 1.5 s;
//! again at 2 s → 3 s; again at 4 s → 6 s; again at 7 s → 11 s (5th restart, delay 4 s); a
//! 6th failure before t = 60 s exceeds the limit and escalates. Failures older than the window
//! are forgotten, so a slot that fails once an hour always restarts after 250 ms.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ractor::{ActorCell, SupervisionEvent};

/// The child that stopped and why, for a supervisor's `handle_supervisor_evt`; `None` for
/// events that are not exits (a child starting, a process-group change).
pub fn child_exit(event: SupervisionEvent) -> Option<(ActorCell, String)> {
    match event {
        SupervisionEvent::ActorFailed(cell, err) => Some((cell, err.to_string())),
        SupervisionEvent::ActorTerminated(cell, _, reason) => Some((
            cell,
            reason.unwrap_or_else(|| "stopped without a reason".into()),
        )),
        _ => None,
    }
}

/// Limits and backoff for one supervised child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`.
    pub max_restarts: u32,
    /// The sliding window the restarts are counted in.
    pub window: Duration,
    /// Delay before the first restart in a window.
    pub backoff_base: Duration,
    /// Upper bound on any delay.
    pub backoff_max: Duration,
}

impl RestartPolicy {
    /// The slot supervisor's defaults: 5 restarts in 60 s, backoff 250 ms doubling to 30 s.
    pub const SLOT_DEFAULT: RestartPolicy = RestartPolicy {
        max_restarts: 5,
        window: Duration::from_secs(60),
        backoff_base: Duration::from_millis(250),
        backoff_max: Duration::from_secs(30),
    };

    /// The root supervisor's policy for the slot supervisor: 2 restarts in 10 min, 1 s doubling.
    pub const SLOT_SUPERVISOR_DEFAULT: RestartPolicy = RestartPolicy {
        max_restarts: 2,
        window: Duration::from_secs(600),
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(30),
    };

    /// `min(base × 2^(n−1), max)` for the n-th restart (n ≥ 1).
    pub fn delay(&self, n: u32) -> Duration {
        let exp = n.saturating_sub(1).min(31);
        let factor = 1u32 << exp;
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// What a supervisor does about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restart after `delay`; this is restart number `attempt` in the window.
    Restart {
        /// Wait this long first.
        delay: Duration,
        /// 1-based count of restarts in the current window.
        attempt: u32,
    },
    /// The limit is exceeded: escalate.
    GiveUp {
        /// Restarts already made within the window.
        restarts_in_window: u32,
    },
}

/// Remembers recent restarts of one child.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    /// A tracker with no history.
    pub fn new(policy: RestartPolicy) -> Self {
        RestartTracker {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// Records a failure at `now` and decides.
    pub fn on_failure(&mut self, now: Instant) -> Decision {
        while let Some(&t) = self.recent.front() {
            if now.saturating_duration_since(t) >= self.policy.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        let made = self.recent.len() as u32;
        if made >= self.policy.max_restarts {
            return Decision::GiveUp {
                restarts_in_window: made,
            };
        }
        self.recent.push_back(now);
        let attempt = made + 1;
        Decision::Restart {
            delay: self.policy.delay(attempt),
            attempt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_base_and_is_capped() {
        let p = RestartPolicy::SLOT_DEFAULT;
        let table = [
            (1, 250),
            (2, 500),
            (3, 1000),
            (4, 2000),
            (5, 4000),
            (8, 30_000),
            (40, 30_000),
        ];
        for (n, ms) in table {
            assert_eq!(p.delay(n), Duration::from_millis(ms), "delay({n})");
        }
    }

    #[test]
    fn the_worked_example_in_the_docs_holds() {
        let p = RestartPolicy::SLOT_DEFAULT;
        let mut t = RestartTracker::new(p);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let failures = [(0, 250), (1, 500), (2, 1000), (4, 2000), (7, 4000)];
        for (at, ms) in failures {
            assert_eq!(
                t.on_failure(t0 + s(at)),
                Decision::Restart {
                    delay: Duration::from_millis(ms),
                    attempt: match at {
                        0 => 1,
                        1 => 2,
                        2 => 3,
                        4 => 4,
                        _ => 5,
                    },
                },
                "failure at {at}s"
            );
        }
        assert_eq!(
            t.on_failure(t0 + s(30)),
            Decision::GiveUp {
                restarts_in_window: 5
            }
        );
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let p = RestartPolicy {
            max_restarts: 2,
            ..RestartPolicy::SLOT_DEFAULT
        };
        let mut t = RestartTracker::new(p);
        let t0 = Instant::now();
        assert!(matches!(
            t.on_failure(t0),
            Decision::Restart { attempt: 1, .. }
        ));
        assert!(matches!(
            t.on_failure(t0 + Duration::from_secs(1)),
            Decision::Restart { attempt: 2, .. }
        ));
        assert!(matches!(
            t.on_failure(t0 + Duration::from_secs(2)),
            Decision::GiveUp { .. }
        ));
        // 60.5 s after the first failure, that one has left the window; the second has not.
        assert_eq!(
            t.on_failure(t0 + Duration::from_millis(60_500)),
            Decision::Restart {
                delay: Duration::from_millis(500),
                attempt: 2
            }
        );
    }
}
