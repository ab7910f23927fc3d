//! The admission gate: how many turns may be in flight at once when the API pushes back.
//!
//! Open (no limit beyond the slots) until a slot reports a rate or load refusal — a
//! `system/api_retry` line with status 429 or 529, or a turn that ended with one. Then the
//! ceiling is cut to half the turns in flight, rounded up (never below 1; at most one cut per
//! [`COOLDOWN`], since one burst of refusals is one signal), and grows back by one turn
//! for every [`CALM`] without a refusal, until it reaches the slot count and the gate is
//! open again — so once the API stops refusing, the whole pool is back within
//! `slots × CALM`. Slots stay warm: only dispatch waits.
//!
//! A cut that follows growth means the step just taken was one too many: the level below
//! it is known to work, so the ceiling climbs back to it one turn per [`QUICK`] and only
//! probes above it at the calm pace. Against an API that takes four, the ceiling spends its
//! time at four, not between two and four.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// One cut per this long: the refusals of one burst arrive together.
pub const COOLDOWN: Duration = Duration::from_secs(2);

/// The ceiling grows by one turn for every this long without a refusal.
pub const CALM: Duration = Duration::from_secs(5);

/// The ceiling climbs back to a level known to work one turn per this long.
pub const QUICK: Duration = Duration::from_secs(1);

/// How far back `retries_last_minute` looks.
const MINUTE: Duration = Duration::from_secs(60);

/// The gate's state.
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// Turns allowed in flight; `None`: open.
    ceiling: Option<usize>,
    last_cut: Option<Instant>,
    last_refusal: Option<Instant>,
    /// When the ceiling last grew.
    last_step: Option<Instant>,
    /// When each refusal of the last minute was seen.
    refusals: VecDeque<Instant>,
    /// Whether the ceiling grew since the last cut.
    grew: bool,
    /// A level that worked: the one below the step a cut followed.
    good: Option<usize>,
}

impl Gate {
    /// A refusal (429 or 529) seen with `in_flight` turns running. True when the ceiling
    /// was cut.
    pub fn refused(&mut self, now: Instant, in_flight: usize) -> bool {
        self.refusals.push_back(now);
        self.last_refusal = Some(now);
        self.forget_old(now);
        if self
            .last_cut
            .is_some_and(|t| now.duration_since(t) < COOLDOWN)
        {
            return false;
        }
        let base = self.ceiling.unwrap_or(in_flight).min(in_flight.max(1));
        // Half, rounded up: from three turns, two — the API took at least that many.
        self.ceiling = Some(base.div_ceil(2).max(1));
        self.good = (self.grew && base > 1).then(|| base - 1);
        self.grew = false;
        self.last_cut = Some(now);
        true
    }

    /// How long the ceiling waits before its next step up.
    pub fn step(&self) -> Duration {
        match (self.ceiling, self.good) {
            (Some(c), Some(g)) if c < g => QUICK,
            _ => CALM,
        }
    }

    /// Time passed: one more turn for every calm period since the last refusal (or the
    /// last growth). Opens the gate once the ceiling reaches `slots`. True when it changed.
    pub fn tick(&mut self, now: Instant, slots: usize) -> bool {
        self.forget_old(now);
        let Some(c) = self.ceiling else {
            return false;
        };
        let Some(calm_since) = [self.last_refusal, self.last_cut, self.last_step]
            .into_iter()
            .flatten()
            .max()
        else {
            return false;
        };
        if now.duration_since(calm_since) < self.step() {
            return false;
        }
        let next = c + 1;
        self.grew = true;
        if next >= slots.max(1) {
            self.ceiling = None;
            self.good = None;
            self.grew = false;
        } else {
            self.ceiling = Some(next);
            // The next step counts from now.
            self.last_step = Some(now);
        }
        true
    }

    /// Whether another turn may start with `in_flight` running.
    pub fn admits(&self, in_flight: usize) -> bool {
        self.ceiling.is_none_or(|c| in_flight < c)
    }

    /// The ceiling, if the gate is not open.
    pub fn ceiling(&self) -> Option<usize> {
        self.ceiling
    }

    /// Refusals seen in the last minute.
    pub fn refusals_last_minute(&self, now: Instant) -> usize {
        self.refusals
            .iter()
            .filter(|t| now.duration_since(**t) < MINUTE)
            .count()
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .refusals
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINUTE)
        {
            self.refusals.pop_front();
        }
    }
}

/// One gate per model a task asks for: the API's limits are per model, so refusals for one
/// model hold back only its own turns. The key is the task's model as dispatch knows it
/// (its `model`, or the server's `--model`; empty for the CLI's default).
#[derive(Debug, Default)]
pub(super) struct Gates {
    by_model: std::collections::BTreeMap<String, Gate>,
}

impl Gates {
    /// A refusal of a `model` turn with `in_flight` of its turns running.
    pub fn refused(&mut self, model: &str, now: Instant, in_flight: usize) -> bool {
        self.by_model
            .entry(model.to_owned())
            .or_default()
            .refused(now, in_flight)
    }

    /// Time passed for every gate; true when any changed.
    pub fn tick(&mut self, now: Instant, slots: usize) -> bool {
        let mut changed = false;
        for g in self.by_model.values_mut() {
            changed |= g.tick(now, slots);
        }
        changed
    }

    /// Whether another `model` turn may start with `in_flight` of them running.
    pub fn admits(&self, model: &str, in_flight: usize) -> bool {
        self.by_model.get(model).is_none_or(|g| g.admits(in_flight))
    }

    /// Whether any model is held to a ceiling.
    pub fn limited(&self) -> bool {
        self.by_model.values().any(|g| g.ceiling().is_some())
    }

    /// The soonest next step of a limited gate.
    pub fn step(&self) -> Duration {
        self.by_model
            .values()
            .filter(|g| g.ceiling().is_some())
            .map(Gate::step)
            .min()
            .unwrap_or(CALM)
    }

    /// The lowest ceiling of a limited model, if any is.
    pub fn ceiling(&self) -> Option<usize> {
        self.by_model.values().filter_map(Gate::ceiling).min()
    }

    /// Every limited model and its ceiling.
    pub fn limited_models(&self) -> Vec<(String, usize)> {
        self.by_model
            .iter()
            .filter_map(|(m, g)| g.ceiling().map(|c| (m.clone(), c)))
            .collect()
    }

    /// Refusals of every model in the last minute.
    pub fn refusals_last_minute(&self, now: Instant) -> usize {
        self.by_model
            .values()
            .map(|g| g.refusals_last_minute(now))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_halves_the_turns_in_flight_once_per_cooldown_and_calm_opens_it_again() {
        let t0 = Instant::now();
        let mut g = Gate::default();
        assert!(g.admits(100), "open at first");
        assert!(g.refused(t0, 8));
        assert_eq!(g.ceiling(), Some(4));
        assert!(!g.admits(4) && g.admits(3));
        // More refusals of the same burst: no further cut.
        assert!(!g.refused(t0 + Duration::from_millis(500), 8));
        assert_eq!(g.ceiling(), Some(4));
        // After the cooldown, another refusal halves again, never below one.
        assert!(g.refused(t0 + Duration::from_secs(3), 4));
        assert_eq!(g.ceiling(), Some(2));
        assert!(g.refused(t0 + Duration::from_secs(6), 2));
        assert!(g.refused(t0 + Duration::from_secs(9), 1));
        assert_eq!(g.ceiling(), Some(1));
        assert!(g.admits(0));
        assert_eq!(g.refusals_last_minute(t0 + Duration::from_secs(9)), 5);
        // Calm: one more turn per CALM; open again at the slot count (8).
        let mut now = t0 + Duration::from_secs(9);
        assert!(!g.tick(now + Duration::from_secs(1), 8), "not calm yet");
        let mut steps = 0;
        while g.ceiling().is_some() {
            now += CALM;
            assert!(g.tick(now, 8));
            steps += 1;
        }
        assert_eq!(steps, 7, "1 → 8 in seven calm periods");
        assert!(g.admits(100));
        assert_eq!(g.refusals_last_minute(now + MINUTE), 0);
    }

    #[test]
    fn a_models_refusals_hold_back_only_its_own_turns() {
        let t0 = Instant::now();
        let mut g = Gates::default();
        assert!(g.refused("opus", t0, 4));
        assert!(!g.admits("opus", 2) && g.admits("opus", 1));
        assert!(g.admits("haiku", 7), "another model runs as before");
        assert_eq!(g.limited_models(), vec![("opus".to_owned(), 2)]);
        assert_eq!(g.ceiling(), Some(2));
        assert!(g.refused("haiku", t0, 8));
        assert_eq!(g.ceiling(), Some(2));
        assert_eq!(g.refusals_last_minute(t0), 2);
    }

    #[test]
    fn after_a_failed_probe_the_ceiling_climbs_back_quickly_to_the_level_that_worked() {
        let t0 = Instant::now();
        let mut g = Gate::default();
        // Sixteen at once against an API that takes four: cut while converging, no level
        // known to work yet.
        assert!(g.refused(t0, 16));
        assert!(g.refused(t0 + COOLDOWN, 8));
        assert_eq!(g.ceiling(), Some(4));
        assert_eq!(g.step(), CALM);
        // Calm: a probe to five, which the API refuses.
        let mut now = t0 + COOLDOWN + CALM;
        assert!(g.tick(now, 16));
        assert_eq!(g.ceiling(), Some(5));
        now += Duration::from_millis(100);
        assert!(g.refused(now, 5));
        assert_eq!(g.ceiling(), Some(3));
        // Four worked: back to it after one quick step, then the calm pace again.
        assert_eq!(g.step(), QUICK);
        assert!(!g.tick(now + QUICK / 2, 16));
        assert!(g.tick(now + QUICK, 16));
        assert_eq!(g.ceiling(), Some(4));
        assert_eq!(g.step(), CALM);
        assert!(!g.tick(now + QUICK + QUICK, 16));
    }
}
