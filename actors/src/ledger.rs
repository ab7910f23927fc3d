//! The budget ledger actor: the pool's spend, its cap, and the reservations of running tasks.
//!
//! **Place in the tree.** Child of the root supervisor, started first. Not restarted: it
//! holds the spend, and a fresh one would forget it (fail-stop, like the scheduler).
//!
//! **Owns** the [`book::Book`]: every settled task's spend, what running tasks have spent so
//! far, their reservations, and the cap (`--budget-usd`). The scheduler asks it before
//! handing a task to a slot ([`LedgerMsg::Reserve`]) and settles every task once it is
//! terminal; slots report what each running turn has spent so far from the CLI's per-call
//! usage ([`LedgerMsg::Live`]). When the cap is reached the ledger tells the scheduler,
//! which interrupts the running turns and refuses new work; a task over its own
//! `max_budget_usd` is interrupted the same way. The arithmetic and the overshoot bound are
//! in [`book`].

pub mod book;

use std::fmt;

use claude_pool_protocol::TaskId;
use claude_pool_protocol::tools::BudgetReport;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort};

use crate::events::{EventBus, PoolEvent};
use crate::wire::{BudgetNote, Spend};
use book::{Book, Effect, Reservation};

/// Behaviour of the ledger.
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerActor;

/// What the ledger starts with.
#[derive(Debug, Clone)]
pub struct LedgerArgs {
    /// The pool's cap, if any.
    pub cap: Option<f64>,
    /// Where budget changes are published.
    pub events: EventBus,
    /// What the cap covers, and when it began.
    pub period: book::Period,
    /// The calendar period behind `period` (to find the next window when one ends).
    pub budget_period: crate::config::BudgetPeriod,
    /// What already counts against the cap: the run's spend (a run continued after a
    /// crash), or the window's (every task of the store that finished in it).
    pub window_spent: f64,
    /// What this run spent before this server started (a run continued after a crash).
    pub run_spent: f64,
    /// The token cap (`--budget-tokens`), over the same period as `cap`.
    pub token_cap: Option<u64>,
    /// Tokens that already count against it (as `window_spent`).
    pub window_tokens: u64,
    /// What every other run spent.
    pub lifetime_before: f64,
    /// The store, read again every [`WINDOW_SYNC`] for a calendar window's spend: the
    /// project's other servers spend in the same window.
    pub store: Option<crate::store::actor::StoreWriter>,
}

/// How often a calendar window's spend is read again from the store.
pub const WINDOW_SYNC: std::time::Duration = std::time::Duration::from_secs(15);

/// Messages the ledger handles.
pub enum LedgerMsg {
    /// The scheduler to tell when the cap or a task's own cap is reached.
    Attach(DerivedActorRef<BudgetNote>),
    /// May this task start now?
    Reserve {
        /// The task.
        task: TaskId,
        /// Its own cap.
        max: Option<f64>,
        /// The answer.
        reply: RpcReplyPort<Reservation>,
    },
    /// A task starts in a pool without a cap: follow its spend (its own cap still applies).
    Start {
        /// The task.
        task: TaskId,
        /// Its own cap.
        max: Option<f64>,
    },
    /// A running task has spent this much so far (its live figure only grows).
    Live(Spend),
    /// A task is terminal and cost this much.
    Settle {
        /// The task.
        task: TaskId,
        /// Dollars.
        usd: f64,
        /// Tokens.
        tokens: u64,
        /// Whether it ran at all (counts towards the mean that sizes reservations).
        started: bool,
    },
    /// A task went back to the queue: forget its reservation.
    Release(TaskId),
    /// The budget now.
    Report(RpcReplyPort<BudgetReport>),
    /// A calendar window may have ended: start the next one.
    Roll,
    /// Read the window's spend from the store again; `again`: and every [`WINDOW_SYNC`]
    /// after (the timer's own message; a one-off read passes false).
    Sync {
        /// Whether to schedule the next read.
        again: bool,
    },
    /// The store's figure for the window that began at `start_ms`.
    WindowSeen {
        /// The window's start (unix ms).
        start_ms: i64,
        /// Dollars every server of the project spent in it.
        usd: f64,
        /// Tokens every server of the project used in it.
        tokens: u64,
    },
}

impl fmt::Debug for LedgerMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            LedgerMsg::Attach(_) => "Attach",
            LedgerMsg::Reserve { .. } => "Reserve",
            LedgerMsg::Start { .. } => "Start",
            LedgerMsg::Live(_) => "Live",
            LedgerMsg::Settle { .. } => "Settle",
            LedgerMsg::Release(_) => "Release",
            LedgerMsg::Report(_) => "Report",
            LedgerMsg::Roll => "Roll",
            LedgerMsg::Sync { .. } => "Sync",
            LedgerMsg::WindowSeen { .. } => "WindowSeen",
        };
        f.write_str(name)
    }
}

/// The ledger's state.
#[derive(Debug)]
pub struct LedgerState {
    book: Book,
    scheduler: Option<DerivedActorRef<BudgetNote>>,
    events: EventBus,
    budget_period: crate::config::BudgetPeriod,
    store: Option<crate::store::actor::StoreWriter>,
}

impl Actor for LedgerActor {
    type Msg = LedgerMsg;
    type State = LedgerState;
    type Arguments = LedgerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<LedgerMsg>,
        args: LedgerArgs,
    ) -> Result<LedgerState, ActorProcessingErr> {
        let book = Book::with_history(
            args.cap,
            args.period,
            args.window_spent,
            args.run_spent,
            args.lifetime_before,
        )
        .with_token_cap(args.token_cap, args.window_tokens);
        let state = LedgerState {
            book,
            scheduler: None,
            events: args.events,
            budget_period: args.budget_period,
            store: args.store,
        };
        state.schedule_roll(&myself);
        if state.book.period().end_ms.is_some() && state.store.is_some() {
            myself.send_after(WINDOW_SYNC, || LedgerMsg::Sync { again: true });
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<LedgerMsg>,
        msg: LedgerMsg,
        state: &mut LedgerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LedgerMsg::Attach(scheduler) => {
                state.scheduler = Some(scheduler);
                // A window already spent when the server started refuses work at once.
                let effects = state.book.check_resumed();
                state.apply(effects);
            }
            LedgerMsg::Roll => {
                let now = crate::store::db::now_ms();
                if let Some((start, end)) = state.budget_period.window(now)
                    && state.book.period().end_ms.is_some_and(|e| now >= e)
                {
                    let renewed = state.book.roll(start, end);
                    tracing::info!(
                        period = state.budget_period.name(),
                        "a new budget window began"
                    );
                    state.events.publish(PoolEvent::Budget);
                    if renewed && let Some(s) = &state.scheduler {
                        let _ = s.send_message(BudgetNote::Renewed);
                    }
                }
                state.schedule_roll(&myself);
                let _ = myself.cast(LedgerMsg::Sync { again: false });
            }
            LedgerMsg::Sync { again } => {
                if let Some(store) = state.store.clone() {
                    let start_ms = state.book.period().start_ms;
                    let me = myself.clone();
                    tokio::spawn(async move {
                        if let Ok(Ok((usd, tokens))) =
                            store.read(move |db| db.used_since(start_ms)).await
                        {
                            let _ = me.cast(LedgerMsg::WindowSeen {
                                start_ms,
                                usd,
                                tokens,
                            });
                        }
                    });
                    if again {
                        myself.send_after(WINDOW_SYNC, || LedgerMsg::Sync { again: true });
                    }
                }
            }
            LedgerMsg::WindowSeen {
                start_ms,
                usd,
                tokens,
            } => {
                let effects = state.book.seen_window(start_ms, usd, tokens);
                state.apply(effects);
            }
            LedgerMsg::Reserve { task, max, reply } => {
                let _ = reply.send(state.book.reserve(&task, max));
            }
            LedgerMsg::Start { task, max } => state.book.start(&task, max),
            LedgerMsg::Live(Spend { task, usd, tokens }) => {
                let effects = state.book.live(&task, usd, tokens);
                state.apply(effects);
            }
            LedgerMsg::Settle {
                task,
                usd,
                tokens,
                started,
            } => {
                let effects = state.book.settle(&task, usd, tokens, started);
                state.events.publish(PoolEvent::Budget);
                state.apply(effects);
            }
            LedgerMsg::Release(task) => state.book.release(&task),
            LedgerMsg::Report(reply) => {
                let _ = reply.send(state.book.report());
            }
        }
        Ok(())
    }
}

impl LedgerState {
    /// With a calendar window: a [`LedgerMsg::Roll`] when it ends (checked again then, so
    /// a clock that jumps only delays the roll to the next check).
    fn schedule_roll(&self, myself: &ActorRef<LedgerMsg>) {
        let Some(end) = self.book.period().end_ms else {
            return;
        };
        let now = crate::store::db::now_ms();
        let wait = u64::try_from(end.saturating_sub(now))
            .unwrap_or(0)
            .clamp(1_000, 3_600_000);
        myself.send_after(std::time::Duration::from_millis(wait), || LedgerMsg::Roll);
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            let msg = match effect {
                Effect::Exhausted(reason) => {
                    tracing::warn!(%reason, "budget exhausted");
                    self.events.publish(PoolEvent::Budget);
                    BudgetNote::Exhausted { reason }
                }
                Effect::TaskOverBudget(task, reason) => {
                    tracing::info!(%task, %reason, "task over its own budget");
                    BudgetNote::TaskOver { task, reason }
                }
            };
            if let Some(s) = &self.scheduler {
                let _ = s.send_message(msg);
            }
        }
    }
}

impl From<Spend> for LedgerMsg {
    fn from(n: Spend) -> Self {
        LedgerMsg::Live(n)
    }
}

impl TryFrom<LedgerMsg> for Spend {
    type Error = LedgerMsg;
    fn try_from(m: LedgerMsg) -> Result<Self, LedgerMsg> {
        match m {
            LedgerMsg::Live(n) => Ok(n),
            other => Err(other),
        }
    }
}
