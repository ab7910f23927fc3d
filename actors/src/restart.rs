//! Restart policy: how often a supervisor restarts a child and how long it waits first.
//!
//! Pure: the supervisors feed it failures and act on the [`Decision`]; [`child_exit`] reads
//! which child stopped from a supervision event.
//!
//! **What counts.** Restart limits exist to catch a crash loop — a CLI that cannot start —
//! not to punish healthy processes that were killed from outside. So a failure is one of
//! three [`FailureKind`]s:
//! - [`FailureKind::AfterReady`]: the process had become ready (answered its warm-up) and
//!   then died, hung or misbehaved. The CLI can start: the history is forgotten and the
//!   slot restarts after `backoff_base`. Never given up.
//! - [`FailureKind::KilledBeforeReady`]: killed by SIGKILL, SIGTERM, SIGINT or SIGHUP during
//!   its warm-up — from outside, not by its own doing. Restarted with the backoff of the
//!   failures since the last ready process, but not counted towards the limit.
//! - [`FailureKind::StartFailed`]: it exited on its own, crashed, or timed out before it was
//!   ever ready. Counted: the `max_restarts + 1`-th such failure within `window`, with no
//!   ready process in between, gives the child up.
//!
//! **Backoff.** The n-th failure since the last ready process (n = 1, 2, …) waits
//! `delay(n) = min(base × 2^(n−1), max)`.
//! Worked example with the slot defaults (base 250 ms, max 30 s, 5 restarts in 60 s): a CLI
//! that cannot start fails at t = 0 s and restarts at 0.25 s; fails again at 1 s → restarts
//! at 1.5 s; at 2 s → 3 s; at 4 s → 6 s; at 7 s → 11 s (5th restart, delay 4 s); a 6th
//! start failure before t = 60 s gives the slot up. A slot whose process is killed every
//! second while it works is restarted every time after 250 ms, forever.
//!
//! **Probing.** A given-up child is not abandoned: it is probed (started again) after
//! `probe.delay(k)` for the k-th probe, with the long probe backoff (default 60 s doubling to
//! 15 min), and comes back by itself once the CLI starts again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ractor::{ActorCell, ActorProcessingErr, SupervisionEvent};

/// The child that stopped, why, and the error it failed with (`None` for a normal stop),
/// for a supervisor's `handle_supervisor_evt`; `None` for events that are not exits.
pub fn child_exit(
    event: SupervisionEvent,
) -> Option<(ActorCell, String, Option<ActorProcessingErr>)> {
    match event {
        SupervisionEvent::ActorFailed(cell, err) => {
            let reason = err.to_string();
            Some((cell, reason, Some(err)))
        }
        SupervisionEvent::ActorTerminated(cell, _, reason) => Some((
            cell,
            reason.unwrap_or_else(|| "stopped without a reason".into()),
            None,
        )),
        _ => None,
    }
}

/// How a supervised process failed, for the restart decision. Ordered from the least to
/// the most telling about the CLI, so a stronger finding is never replaced by a weaker one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// It had become ready, then died or misbehaved: not a crash loop.
    AfterReady,
    /// Killed by an outside signal (SIGKILL, SIGTERM, SIGINT, SIGHUP) before it was ready.
    KilledBeforeReady,
    /// It could not start: exited, crashed or timed out before it was ever ready.
    StartFailed,
}

impl FailureKind {
    /// The kind of an unplanned exit of a process that had (`ready`) or had not become
    /// ready, killed by `signal` if any.
    pub fn of_exit(ready: bool, signal: Option<i32>) -> FailureKind {
        if ready {
            return FailureKind::AfterReady;
        }
        match signal {
            Some(libc::SIGKILL | libc::SIGTERM | libc::SIGINT | libc::SIGHUP) => {
                FailureKind::KilledBeforeReady
            }
            _ => FailureKind::StartFailed,
        }
    }
}

/// A slot actor's failure: the reason, and what it says about the CLI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SlotFailure {
    /// What happened, for logs and `pool_status.last_error`.
    pub reason: String,
    /// Whether it counts towards the restart limit.
    pub kind: FailureKind,
}

impl SlotFailure {
    /// The failure kind carried by an actor's error, if it is a [`SlotFailure`]; any other
    /// error (a panic, a refused spawn) counts as a start failure.
    pub fn kind_of(err: Option<&ActorProcessingErr>) -> FailureKind {
        err.and_then(|e| e.downcast_ref::<SlotFailure>())
            .map(|f| f.kind)
            .unwrap_or(FailureKind::StartFailed)
    }
}

/// Limits and backoff for one supervised child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Start failures allowed within `window`.
    pub max_restarts: u32,
    /// The sliding window the start failures are counted in.
    pub window: Duration,
    /// Delay before the first restart after a ready process.
    pub backoff_base: Duration,
    /// Upper bound on any delay.
    pub backoff_max: Duration,
}

impl RestartPolicy {
    /// The slot supervisor's defaults: 5 start failures in 60 s, backoff 250 ms doubling to 30 s.
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

    /// How given-up slots and a halted pool are probed: 60 s doubling to 15 min.
    pub const PROBE_DEFAULT: RestartPolicy = RestartPolicy {
        max_restarts: u32::MAX,
        window: Duration::from_secs(3600),
        backoff_base: Duration::from_secs(60),
        backoff_max: Duration::from_secs(900),
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
    /// Restart after `delay`; `attempt` counts the failures since the last ready process.
    Restart {
        /// Wait this long first.
        delay: Duration,
        /// 1-based count of failures since the last ready process.
        attempt: u32,
    },
    /// The limit is exceeded: give the child up (and probe it later).
    GiveUp {
        /// Start failures already restarted within the window.
        restarts_in_window: u32,
    },
}

/// Remembers recent failures of one child.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    /// Start failures within the window since the last ready process.
    recent: VecDeque<Instant>,
    /// Failures of any kind since the last ready process (sets the backoff).
    consecutive: u32,
}

impl RestartTracker {
    /// A tracker with no history.
    pub fn new(policy: RestartPolicy) -> Self {
        RestartTracker {
            policy,
            recent: VecDeque::new(),
            consecutive: 0,
        }
    }

    /// The child became ready: whatever failed before was not a crash loop.
    pub fn on_ready(&mut self) {
        self.recent.clear();
        self.consecutive = 0;
    }

    /// Records a failure of `kind` at `now` and decides.
    pub fn on_failure(&mut self, now: Instant, kind: FailureKind) -> Decision {
        match kind {
            FailureKind::AfterReady => {
                self.on_ready();
                self.consecutive = 1;
                Decision::Restart {
                    delay: self.policy.delay(1),
                    attempt: 1,
                }
            }
            FailureKind::KilledBeforeReady => {
                self.consecutive = self.consecutive.saturating_add(1);
                Decision::Restart {
                    delay: self.policy.delay(self.consecutive),
                    attempt: self.consecutive,
                }
            }
            FailureKind::StartFailed => {
                while let Some(&t) = self.recent.front() {
                    if now.saturating_duration_since(t) >= self.policy.window {
                        self.recent.pop_front();
                    } else {
                        break;
                    }
                }
                let made = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
                if made >= self.policy.max_restarts {
                    return Decision::GiveUp {
                        restarts_in_window: made,
                    };
                }
                self.recent.push_back(now);
                self.consecutive = self.consecutive.saturating_add(1);
                Decision::Restart {
                    delay: self.policy.delay(self.consecutive),
                    attempt: self.consecutive,
                }
            }
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
        let failures = [
            (0, 250, 1),
            (1, 500, 2),
            (2, 1000, 3),
            (4, 2000, 4),
            (7, 4000, 5),
        ];
        for (at, ms, attempt) in failures {
            assert_eq!(
                t.on_failure(t0 + s(at), FailureKind::StartFailed),
                Decision::Restart {
                    delay: Duration::from_millis(ms),
                    attempt,
                },
                "failure at {at}s"
            );
        }
        assert_eq!(
            t.on_failure(t0 + s(30), FailureKind::StartFailed),
            Decision::GiveUp {
                restarts_in_window: 5
            }
        );
    }

    #[test]
    fn healthy_processes_killed_from_outside_are_never_given_up() {
        let mut t = RestartTracker::new(RestartPolicy::SLOT_DEFAULT);
        let t0 = Instant::now();
        // 1000 kills, 150 ms apart, of processes that had become ready.
        for i in 0..1000u64 {
            let d = t.on_failure(t0 + Duration::from_millis(150 * i), FailureKind::AfterReady);
            assert_eq!(
                d,
                Decision::Restart {
                    delay: Duration::from_millis(250),
                    attempt: 1
                },
                "kill {i}"
            );
        }
        // Kills during warm-up back off (counting from the last kill of a ready process) but
        // are not counted towards the limit either.
        let d = (0..20)
            .map(|i| {
                t.on_failure(
                    t0 + Duration::from_millis(i),
                    FailureKind::KilledBeforeReady,
                )
            })
            .last();
        assert_eq!(
            d,
            Some(Decision::Restart {
                delay: Duration::from_secs(30),
                attempt: 21
            })
        );
    }

    #[test]
    fn a_ready_process_resets_the_crash_loop_count() {
        let p = RestartPolicy {
            max_restarts: 2,
            ..RestartPolicy::SLOT_DEFAULT
        };
        let mut t = RestartTracker::new(p);
        let t0 = Instant::now();
        let start = FailureKind::StartFailed;
        assert!(matches!(
            t.on_failure(t0, start),
            Decision::Restart { attempt: 1, .. }
        ));
        assert!(matches!(
            t.on_failure(t0, start),
            Decision::Restart { attempt: 2, .. }
        ));
        t.on_ready();
        assert!(matches!(
            t.on_failure(t0, start),
            Decision::Restart { attempt: 1, .. }
        ));
        assert!(matches!(
            t.on_failure(t0, start),
            Decision::Restart { attempt: 2, .. }
        ));
        assert!(matches!(t.on_failure(t0, start), Decision::GiveUp { .. }));
    }

    #[test]
    fn start_failures_older_than_the_window_are_forgotten() {
        let p = RestartPolicy {
            max_restarts: 2,
            ..RestartPolicy::SLOT_DEFAULT
        };
        let mut t = RestartTracker::new(p);
        let t0 = Instant::now();
        let start = FailureKind::StartFailed;
        assert!(matches!(t.on_failure(t0, start), Decision::Restart { .. }));
        assert!(matches!(
            t.on_failure(t0 + Duration::from_secs(1), start),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            t.on_failure(t0 + Duration::from_secs(2), start),
            Decision::GiveUp { .. }
        ));
        // 60.5 s after the first failure, that one has left the window; the second has not.
        assert!(matches!(
            t.on_failure(t0 + Duration::from_millis(60_500), start),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn exits_are_classified_by_readiness_and_signal() {
        let table = [
            (true, None, FailureKind::AfterReady),
            (true, Some(libc::SIGSEGV), FailureKind::AfterReady),
            (false, Some(libc::SIGKILL), FailureKind::KilledBeforeReady),
            (false, Some(libc::SIGTERM), FailureKind::KilledBeforeReady),
            (false, Some(libc::SIGSEGV), FailureKind::StartFailed),
            (false, None, FailureKind::StartFailed),
        ];
        for (ready, signal, want) in table {
            assert_eq!(
                FailureKind::of_exit(ready, signal),
                want,
                "{ready} {signal:?}"
            );
        }
    }
}
