//! The ledger's arithmetic, pure: reservations at dispatch, live spend while turns run,
//! settlement at the end. The actor ([`super::LedgerActor`]) feeds it and carries out the
//! [`Effect`]s.
//!
//! **Spend** is the sum of every settled task's own spend (completed, failed, cancelled and
//! timed-out turns alike). **In flight** is what running tasks have spent so far: the input
//! side of every API call they already made, priced as the CLI prices it.
//!
//! **Reservation.** Before a task is handed to a slot the scheduler asks for a reservation:
//! `estimate` = the task's own `max_budget_usd`, or else the mean spend of the tasks
//! settled so far (0 before any). With a pool cap, the task may start when
//! `spend + Σ max(reserved, live) of running tasks + estimate ≤ cap`, or when nothing runs
//! and something is left; otherwise it waits in the queue. Once exhausted, it is refused.
//!
//! **Cap.** As soon as `spend + in flight ≥ cap` the budget is exhausted for good: running
//! tasks are interrupted and new work is refused. A running task can only have started the
//! API call that crossed the line, so the overshoot is at most the calls already in flight —
//! one per running slot (their output, and the input of the crossing call). A task whose
//! own live spend reaches its `max_budget_usd` is interrupted the same way.

use crate::clock::rfc3339_seconds as rfc3339;
use std::collections::HashMap;

use claude_pool_protocol::TaskId;
use claude_pool_protocol::tools::BudgetReport;

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// Start the task.
    Granted,
    /// Not now: running tasks hold what is left; try again when one settles.
    Wait,
    /// Never: the budget is exhausted. Carries the message naming spend and cap.
    Refused(String),
}

/// What the actor must do after a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The pool's budget is exhausted: stop running tasks, refuse new work.
    Exhausted(String),
    /// This task's own spend reached its `max_budget_usd`: stop it.
    TaskOverBudget(TaskId, String),
}

#[derive(Debug, Clone, Default)]
struct Running {
    reserved: f64,
    live: f64,
    reserved_tokens: u64,
    live_tokens: u64,
    max: Option<f64>,
    stopped: bool,
}

/// The period a cap covers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Period {
    /// `run`, `day`, `week` or `month`.
    pub name: &'static str,
    /// When it began (unix ms).
    pub start_ms: i64,
    /// When a calendar window ends (unix ms); `None` for a run.
    pub end_ms: Option<i64>,
}

/// Spend, reservations and the cap.
#[derive(Debug, Clone, Default)]
pub struct Book {
    cap: Option<f64>,
    /// What counts against the cap: the run's spend, or the calendar window's.
    spent: f64,
    /// This run's spend.
    run_spent: f64,
    /// Every earlier run's spend (the store's lifetime total when the server started).
    lifetime_before: f64,
    /// What the cap covers.
    period: Period,
    settled_tasks: u64,
    running: HashMap<TaskId, Running>,
    exhausted: Option<String>,
    /// The token cap (`--budget-tokens`): every token the API processed for the pool's
    /// tasks — input, output, cache reads and writes — in the same period.
    token_cap: Option<u64>,
    /// Tokens that count against `token_cap`.
    tokens: u64,
}

impl Book {
    /// A book that resumes a store's history: `window_spent` already counts against `cap`
    /// in `period`, `run_spent` was spent in this run (a run continued after a crash), and
    /// `lifetime_before` by every other run.
    pub fn with_history(
        cap: Option<f64>,
        period: Period,
        window_spent: f64,
        run_spent: f64,
        lifetime_before: f64,
    ) -> Self {
        let mut book = Book::new(cap);
        book.spent = window_spent.max(0.0);
        book.run_spent = run_spent.max(0.0);
        book.lifetime_before = lifetime_before.max(0.0);
        book.period = period;
        book
    }

    /// A calendar window ended: the next one, `[start, end)`, starts from nothing spent and
    /// an exhausted budget is open again. Returns true when it was exhausted.
    pub fn roll(&mut self, start_ms: i64, end_ms: i64) -> bool {
        self.spent = 0.0;
        self.tokens = 0;
        self.period.start_ms = start_ms;
        self.period.end_ms = Some(end_ms);
        self.exhausted.take().is_some()
    }

    /// The store says the window that began at `start_ms` has spent `usd` and `tokens`
    /// across every server of the project: spend in this book is never below it (this
    /// server's own settled tasks are in that figure too, once committed).
    pub fn seen_window(&mut self, start_ms: i64, usd: f64, tokens: u64) -> Vec<Effect> {
        if self.period.end_ms.is_none()
            || self.period.start_ms != start_ms
            || (usd <= self.spent && tokens <= self.tokens)
        {
            return Vec::new();
        }
        self.spent = self.spent.max(usd);
        self.tokens = self.tokens.max(tokens);
        self.check_cap()
    }

    /// Adds a token cap, and the tokens already used in the period.
    pub fn with_token_cap(mut self, cap: Option<u64>, used: u64) -> Self {
        self.token_cap = cap;
        self.tokens = used;
        self
    }

    /// The period the cap covers.
    pub fn period(&self) -> &Period {
        &self.period
    }

    /// Checks the cap against what the book resumed with: a window already spent refuses
    /// work from the start.
    pub fn check_resumed(&mut self) -> Vec<Effect> {
        self.check_cap()
    }

    /// A book with `cap` (none for no cap) and nothing spent.
    pub fn new(cap: Option<f64>) -> Self {
        Book {
            cap,
            period: Period {
                name: "run",
                start_ms: 0,
                end_ms: None,
            },
            ..Book::default()
        }
    }

    fn in_flight(&self) -> f64 {
        self.running
            .values()
            .map(|r| r.live)
            .fold(0.0, |a, b| a + b)
    }

    fn tokens_in_flight(&self) -> u64 {
        self.running.values().map(|r| r.live_tokens).sum()
    }

    fn committed_tokens(&self) -> u64 {
        self.tokens
            + self
                .running
                .values()
                .map(|r| r.reserved_tokens.max(r.live_tokens))
                .sum::<u64>()
    }

    /// Whether either cap is reached.
    fn over(&self) -> bool {
        self.cap.is_some_and(|c| self.spent + self.in_flight() >= c)
            || self
                .token_cap
                .is_some_and(|c| self.tokens + self.tokens_in_flight() >= c)
    }

    fn committed(&self) -> f64 {
        self.spent
            + self
                .running
                .values()
                .map(|r| r.reserved.max(r.live))
                .sum::<f64>()
    }

    /// The message that refuses work once a cap is reached.
    fn exhausted_message(&self) -> String {
        let tokens_over = self
            .token_cap
            .is_some_and(|c| self.tokens + self.tokens_in_flight() >= c);
        let dollars_over = self.cap.is_some_and(|c| self.spent + self.in_flight() >= c);
        match (self.cap, self.token_cap) {
            (_, Some(cap)) if tokens_over && !dollars_over => self.tokens_message(cap),
            (Some(cap), _) => self.dollars_message(cap),
            (None, Some(cap)) => self.tokens_message(cap),
            (None, None) => "the pool's budget is exhausted".into(),
        }
    }

    fn tokens_message(&self, cap: u64) -> String {
        let in_flight = self.tokens_in_flight();
        let flight = if in_flight > 0 {
            format!(" (and {in_flight} in flight)")
        } else {
            String::new()
        };
        format!(
            "the pool's token budget is exhausted: {} tokens used{flight} of the {cap} cap (--budget-tokens){}",
            self.tokens,
            self.period_note()
        )
    }

    fn period_note(&self) -> String {
        match self.period.end_ms {
            Some(end) => format!(
                " for this {} (it starts again at {})",
                self.period.name,
                rfc3339(end)
            ),
            None => String::new(),
        }
    }

    fn dollars_message(&self, cap: f64) -> String {
        let in_flight = self.in_flight();
        let flight = if in_flight > 0.0 {
            format!(" (and {} in flight)", usd(in_flight))
        } else {
            String::new()
        };
        let period = self.period_note();
        format!(
            "the pool's budget is exhausted: {} spent{flight} of the {} cap (--budget-usd){period}",
            usd(self.spent),
            usd(cap)
        )
    }

    /// Asks to start `task`, whose own cap is `max`.
    pub fn reserve(&mut self, task: &TaskId, max: Option<f64>) -> Reservation {
        if let Some(why) = &self.exhausted {
            return Reservation::Refused(why.clone());
        }
        let estimate = match max {
            Some(m) => m,
            None if self.settled_tasks > 0 => self.spent / self.settled_tasks as f64,
            None => 0.0,
        };
        let token_estimate = self.tokens.checked_div(self.settled_tasks).unwrap_or(0);
        let fits = self
            .cap
            .is_none_or(|cap| self.committed() + estimate <= cap)
            && self
                .token_cap
                .is_none_or(|cap| self.committed_tokens() + token_estimate <= cap);
        // Nothing runs and something is left: a task may try, the caps still bound it.
        let alone = self.running.is_empty() && !self.over();
        if !fits && !alone {
            return Reservation::Wait;
        }
        self.follow(task, max, estimate);
        if let Some(r) = self.running.get_mut(task) {
            r.reserved_tokens = token_estimate;
        }
        Reservation::Granted
    }

    /// Follows `task` without a reservation (a pool without a cap).
    pub fn start(&mut self, task: &TaskId, max: Option<f64>) {
        self.follow(task, max, 0.0);
    }

    fn follow(&mut self, task: &TaskId, max: Option<f64>, reserved: f64) {
        let entry = Running {
            reserved,
            max,
            ..Running::default()
        };
        self.running.insert(task.clone(), entry);
    }

    /// What `task` has spent so far in its running turn, in dollars and tokens.
    pub fn live(&mut self, task: &TaskId, usd: f64, tokens: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let Some(r) = self.running.get_mut(task) else {
            return effects;
        };
        r.live = r.live.max(usd);
        r.live_tokens = r.live_tokens.max(tokens);
        if let Some(max) = r.max
            && r.live >= max
            && !r.stopped
        {
            r.stopped = true;
            effects.push(Effect::TaskOverBudget(
                task.clone(),
                format!(
                    "the task reached its max_budget_usd of ${max:.6} (${:.6} spent so far); it was stopped",
                    r.live
                ),
            ));
        }
        if self.exhausted.is_none() {
            effects.extend(self.check_cap());
        }
        effects
    }

    /// `task` ended having spent `usd` (0 for a task that never ran, which only releases
    /// its reservation). Call once per task, or once more for a cost reported late.
    pub fn settle(&mut self, task: &TaskId, usd: f64, tokens: u64, started: bool) -> Vec<Effect> {
        self.running.remove(task);
        self.spent += usd;
        self.tokens += tokens;
        self.run_spent += usd;
        if started {
            self.settled_tasks += 1;
        }
        self.check_cap()
    }

    /// Forgets a reservation of a task that went back to the queue.
    pub fn release(&mut self, task: &TaskId) {
        self.running.remove(task);
    }

    fn check_cap(&mut self) -> Vec<Effect> {
        if self.cap.is_none() && self.token_cap.is_none() {
            return Vec::new();
        }
        if self.exhausted.is_some() {
            // Keep the refusal's figures current as the stopped turns settle.
            let why = self.exhausted_message();
            if self.exhausted.as_deref() != Some(why.as_str()) {
                self.exhausted = Some(why.clone());
                return vec![Effect::Exhausted(why)];
            }
            return Vec::new();
        }
        if !self.over() {
            return Vec::new();
        }
        let why = self.exhausted_message();
        self.exhausted = Some(why.clone());
        vec![Effect::Exhausted(why)]
    }

    /// Why work is refused, once the cap is reached.
    pub fn exhausted(&self) -> Option<&str> {
        self.exhausted.as_deref()
    }

    /// The budget as `pool://budget` shows it.
    pub fn report(&self) -> BudgetReport {
        let in_flight = self.in_flight();
        BudgetReport {
            budget_usd: self.cap,
            spend_usd: self.spent,
            budget_remaining: self.cap.map(|c| (c - self.spent - in_flight).max(0.0)),
            in_flight_usd: in_flight,
            reserved_usd: self
                .running
                .values()
                .map(|r| r.reserved)
                .fold(0.0, |a, b| a + b),
            exhausted: self.exhausted.is_some(),
            period: self.period.name.to_owned(),
            window_started_at: (self.period.start_ms > 0).then(|| rfc3339(self.period.start_ms)),
            window_ends_at: self.period.end_ms.map(rfc3339),
            run_spend_usd: self.run_spent,
            lifetime_spend_usd: self.lifetime_before + self.run_spent,
            budget_tokens: self.token_cap,
            tokens_used: self.tokens,
            tokens_in_flight: self.tokens_in_flight(),
        }
    }
}

/// Dollars for messages: up to six decimals, trailing zeros dropped (`$0.012`, `$10.00`).
pub fn usd(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0');
    let s = match s.split_once('.') {
        Some((int, frac)) if frac.len() < 2 => format!("{int}.{frac:0<2}"),
        _ => s.to_owned(),
    };
    format!("${s}")
}

#[cfg(test)]
mod tests;
