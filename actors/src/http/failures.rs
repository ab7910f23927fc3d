//! Failed authentications per peer address: a wrong bearer token or a wrong token posted to
//! the page's `/login`. After [`FailureLimit::max`] failures within [`FailureLimit::window`]
//! the address gets 429 for [`FailureLimit::block`] on every further wrong try, without the
//! token being compared or logged. A request with the right token still passes: the limit
//! stops guessing, and a neighbour on the same loopback address cannot lock the token's
//! holder out by failing on purpose.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many failures trip the limit, over what window, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    /// Failures allowed within `window`; the next one blocks.
    pub max: u32,
    /// The window failures are counted in (from the first of them).
    pub window: Duration,
    /// How long an address that tripped the limit gets 429.
    pub block: Duration,
}

impl Default for FailureLimit {
    fn default() -> Self {
        FailureLimit {
            max: 10,
            window: Duration::from_secs(60),
            block: Duration::from_secs(60),
        }
    }
}

/// The addresses remembered at most; past it, the ones with nothing left to remember go.
const MAX_PEERS: usize = 4096;

/// One address's record.
#[derive(Debug)]
struct Entry {
    /// The start of the window its failures are counted in.
    since: Instant,
    /// Its failures in that window.
    count: u32,
    /// Until when it gets 429, once it failed too often.
    blocked_until: Option<Instant>,
}

/// The failures of each peer address (shared by the guard and `/login`).
#[derive(Debug, Default)]
pub struct Failures {
    /// What trips a block, and for how long.
    limit: FailureLimit,
    /// Each address's record (a plain mutex: held for a map lookup, never across an await).
    map: Mutex<HashMap<IpAddr, Entry>>,
}

impl Failures {
    /// An empty record under `limit`.
    pub fn new(limit: FailureLimit) -> Failures {
        Failures {
            limit,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The limit it applies.
    pub fn limit(&self) -> FailureLimit {
        self.limit
    }

    /// Whether `ip` is blocked at `now`.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.map
            .lock()
            .ok()
            .and_then(|m| m.get(&ip).and_then(|e| e.blocked_until))
            .is_some_and(|until| now < until)
    }

    /// Records a failure of `ip` at `now`; whether `ip` is now blocked.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(mut map) = self.map.lock() else {
            return false;
        };
        if map.len() >= MAX_PEERS && !map.contains_key(&ip) {
            let limit = self.limit;
            map.retain(|_, e| {
                e.blocked_until.is_some_and(|u| now < u)
                    || now.saturating_duration_since(e.since) < limit.window
            });
        }
        let e = map.entry(ip).or_insert(Entry {
            since: now,
            count: 0,
            blocked_until: None,
        });
        if e.blocked_until.is_some_and(|u| now < u) {
            return true;
        }
        if now.saturating_duration_since(e.since) >= self.limit.window || e.blocked_until.is_some()
        {
            // A new window (after the last one, or after a block ran out).
            *e = Entry {
                since: now,
                count: 0,
                blocked_until: None,
            };
        }
        e.count += 1;
        if e.count > self.limit.max {
            e.blocked_until = Some(now + self.limit.block);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_past_the_limit_blocks_for_the_block_time_and_then_counting_restarts() {
        let limit = FailureLimit {
            max: 3,
            window: Duration::from_secs(60),
            block: Duration::from_secs(30),
        };
        let f = Failures::new(limit);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        let t0 = Instant::now();
        for i in 0..limit.max {
            assert!(
                !f.failed(ip, t0),
                "failure {} of {} blocked",
                i + 1,
                limit.max
            );
        }
        assert!(f.failed(ip, t0), "failure {} did not block", limit.max + 1);
        assert!(f.blocked(ip, t0 + limit.block - Duration::from_secs(1)));
        assert!(!f.blocked(other, t0), "another address was blocked");
        let after = t0 + limit.block;
        assert!(!f.blocked(ip, after));
        assert!(
            !f.failed(ip, after),
            "counting did not restart after the block"
        );
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_block() {
        let limit = FailureLimit::default();
        let f = Failures::new(limit);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t0 = Instant::now();
        for i in 0..(3 * limit.max) {
            let now = t0 + limit.window / limit.max * 2 * i;
            assert!(!f.failed(ip, now), "failure {i} blocked");
        }
    }
}
