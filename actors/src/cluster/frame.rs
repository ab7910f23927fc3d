//! What crosses the network between a scheduler and a slot host: the slot protocol of
//! [`crate::wire`] as JSON frames, with a join handshake, a heartbeat and fencing epochs.
//!
//! Every frame a host sends after its join carries the epoch the scheduler gave it; a frame
//! of any other epoch is dropped (the host was declared lost, its work given up). A frame
//! whose JSON is longer than [`CHUNK_BYTES`] travels as [`Frame::Chunk`]s, far below the
//! node server's frame limit, and is put together again before it is read, up to
//! [`MAX_FRAME_BYTES`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::approvals::ApprovalRequest;
use claude_pool_protocol::limits::RateLimitInfo;
use claude_pool_protocol::rules::RuleSet;
use claude_pool_protocol::{SlotId, SlotStatus, TaskId, TaskStatus};
use serde::{Deserialize, Serialize};

use crate::config::ProcSettings;
use crate::task::{Assignment, TaskOutcome, TaskProgress};
use crate::wire::Answered;

/// Frames longer than this go in pieces.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// A frame put together from pieces may be at most this long; a longer one ends the link.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// The protocol's version: hosts and schedulers of other versions refuse each other.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One message between a scheduler and a host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Frame {
    /// A host asks to join.
    Hello {
        /// Its name (unique among the scheduler's hosts).
        host: String,
        /// Its version; must equal the scheduler's.
        version: String,
        /// How many slots it offers.
        slots: usize,
    },
    /// The scheduler took the host: every later frame carries `epoch`.
    Welcome {
        /// The host's epoch.
        epoch: u64,
        /// The scheduler's version.
        version: String,
        /// How often the scheduler pings.
        heartbeat_ms: u64,
        /// How long without a frame before either side gives the other up.
        deadline_ms: u64,
        /// Whether a slot holds each prompt until the scheduler has recorded its start.
        record_starts: bool,
        /// Whether the scheduler keeps transcripts (the host then sends each task's).
        transcripts: bool,
    },
    /// The scheduler refused the host.
    Refused {
        /// Why.
        reason: String,
    },
    /// Liveness, both ways; answered with `Pong`.
    Ping {
        /// The host's epoch.
        epoch: u64,
    },
    /// The answer to a `Ping`.
    Pong {
        /// The host's epoch.
        epoch: u64,
    },
    /// The scheduler to one of the host's slots.
    Command {
        /// The host's epoch.
        epoch: u64,
        /// The slot.
        slot: SlotId,
        /// What to do.
        command: Command,
    },
    /// The host to the scheduler.
    Event {
        /// The host's epoch.
        epoch: u64,
        /// What happened.
        event: Event,
    },
    /// The scheduler to the host itself.
    Host {
        /// The host's epoch.
        epoch: u64,
        /// What to do.
        command: HostCommand,
    },
    /// A piece of a longer frame's JSON.
    Chunk {
        /// Numbers the frame among this sender's.
        id: u64,
        /// Whether this is its last piece.
        last: bool,
        /// The piece.
        data: String,
    },
}

/// [`crate::wire::SlotCommand`] and [`Answered`] as they travel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "c", rename_all = "snake_case")]
pub enum Command {
    /// Run a task.
    Run(Box<RemoteAssignment>),
    /// The start of a task is recorded (or not).
    StartRecorded {
        /// The task.
        task: TaskId,
        /// `Err` with why.
        result: Result<(), String>,
    },
    /// Stop a task.
    Cancel {
        /// The task.
        task: TaskId,
        /// Its terminal status.
        status: TaskStatus,
        /// Why.
        reason: String,
    },
    /// Let the idle process go.
    Release,
    /// Warm up again.
    Wake,
    /// The answer to a permission question.
    Answered(Answered),
}

/// What the scheduler asks of a host as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "h", rename_all = "snake_case")]
pub enum HostCommand {
    /// Start these new slots.
    AddSlots {
        /// Their ids (`<host>/slot-N`, never used before on this host).
        slots: Vec<SlotId>,
    },
    /// Remove this many slots, idle ones first (the host answers with `Retiring`).
    RetireSlots {
        /// How many.
        count: usize,
        /// How long a running task may still take.
        grace_ms: u64,
    },
}

/// An [`Assignment`] as it travels: the deadline as time left, the progress sink as a flag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteAssignment {
    /// The task.
    pub task: TaskId,
    /// The user message.
    pub prompt: String,
    /// The shared context.
    pub preamble: Option<String>,
    /// Its settings.
    pub settings: ProcSettings,
    /// Time left until its deadline, when sent.
    pub deadline_in_ms: u64,
    /// The timeout the deadline came from.
    pub timeout_ms: u64,
    /// Whether anyone listens to its progress.
    pub progress: bool,
    /// Continue this conversation.
    pub resume: Option<String>,
    /// Its own permission rules.
    pub rules: Option<RuleSet>,
    /// How long its permission questions wait.
    pub approval_timeout_ms: Option<u64>,
}

impl RemoteAssignment {
    /// The travelling form of `a`.
    pub fn of(a: &Assignment) -> Self {
        let now = tokio::time::Instant::now();
        RemoteAssignment {
            task: a.task.clone(),
            prompt: a.prompt.to_string(),
            preamble: a.preamble.as_deref().map(str::to_owned),
            settings: a.settings.clone(),
            deadline_in_ms: ms(a.deadline.saturating_duration_since(now)),
            timeout_ms: ms(a.timeout),
            progress: a.progress.is_some(),
            resume: a.resume.clone(),
            rules: a.rules.as_deref().cloned(),
            approval_timeout_ms: a.approval_timeout.map(ms),
        }
    }

    /// The assignment on the host, with `progress` as its sink.
    pub fn into_assignment(self, progress: Option<crate::task::ProgressSink>) -> Assignment {
        Assignment {
            task: self.task,
            prompt: Arc::from(self.prompt),
            preamble: self.preamble.map(Arc::from),
            settings: self.settings,
            deadline: tokio::time::Instant::now() + Duration::from_millis(self.deadline_in_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            progress,
            resume: self.resume,
            rules: self.rules.map(Arc::new),
            approval_timeout: self.approval_timeout_ms.map(Duration::from_millis),
            retry_if_lost: false,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// [`crate::wire::SlotEvent`], spend, progress and approval notes as they travel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    /// A slot exists.
    Added {
        /// The slot.
        slot: SlotId,
    },
    /// A slot is warm and free.
    Ready {
        /// The slot.
        slot: SlotId,
        /// Its process.
        pid: u32,
        /// Tasks its process served.
        turns: u64,
        /// Its worktree.
        worktree: Option<PathBuf>,
        /// Its directory, when a task asked for one.
        cwd: Option<PathBuf>,
    },
    /// A slot's status changed.
    Changed {
        /// The slot.
        slot: SlotId,
        /// Its status.
        status: SlotStatus,
        /// Its process.
        pid: Option<u32>,
        /// Tasks its process served.
        turns: u64,
    },
    /// A slot was removed.
    Removed {
        /// The slot.
        slot: SlotId,
    },
    /// A slot's actor failed.
    Down {
        /// The slot.
        slot: SlotId,
        /// Why.
        reason: String,
        /// Restarts so far.
        restarts: u32,
        /// Whether it is restarted.
        restarting: bool,
    },
    /// A slot wrote (or holds) a task's prompt.
    Started {
        /// The task.
        task: TaskId,
        /// The slot.
        slot: SlotId,
        /// Whether it waits for `StartRecorded`.
        ack: bool,
    },
    /// A slot handed a task back.
    Rejected {
        /// The slot.
        slot: SlotId,
        /// The task.
        task: TaskId,
        /// Set when its process died before the turn began.
        died_before_turn: Option<String>,
    },
    /// The API refused a task's turn before it did anything.
    RateLimited {
        /// The slot.
        slot: SlotId,
        /// The task.
        task: TaskId,
        /// What the CLI said.
        error: String,
    },
    /// A rate or load refusal.
    ApiPressure {
        /// The slot.
        slot: SlotId,
        /// The HTTP status.
        status: u64,
    },
    /// The API's usage windows.
    ApiWindows(RateLimitInfo),
    /// A task ended on a slot.
    Finished {
        /// The task.
        task: TaskId,
        /// The slot.
        slot: SlotId,
        /// How.
        outcome: Box<TaskOutcome>,
        /// How long before the end its prompt was written (the host's clock).
        started_ms_ago: Option<u64>,
    },
    /// A running task's spend so far.
    Spend {
        /// The task.
        task: TaskId,
        /// Dollars.
        usd: f64,
        /// Tokens.
        tokens: u64,
    },
    /// A running task's progress.
    Progress {
        /// The task.
        task: TaskId,
        /// What it did.
        progress: TaskProgress,
    },
    /// A slot's Claude asks, and no rule answered.
    Ask {
        /// The question (it names its task and slot).
        request: Box<ApprovalRequest>,
        /// How long it waits.
        timeout_ms: u64,
    },
    /// A rule answered a question.
    Decided {
        /// allow or deny.
        outcome: String,
        /// Which rule or grant.
        by: String,
    },
    /// A line of a task's transcript (one stream-json event, or its prompt).
    Transcript {
        /// The task.
        task: TaskId,
        /// The line, without its newline.
        line: String,
    },
    /// A task's transcript is complete.
    TranscriptClosed {
        /// The task.
        task: TaskId,
    },
    /// The slots a `RetireSlots` chose (each is `Removed` once its process group is gone).
    Retiring {
        /// The slots.
        slots: Vec<SlotId>,
    },
    /// A task ended: its open questions are gone.
    TaskEnded {
        /// The task.
        task: TaskId,
    },
    /// The CLI withdrew a question.
    Withdrawn {
        /// The question.
        request_id: String,
    },
}

impl Frame {
    /// The frame's JSON, in pieces of at most [`CHUNK_BYTES`] when longer (`id` numbers
    /// them).
    pub fn encode(&self, id: u64) -> Vec<String> {
        let text = match serde_json::to_string(self) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "a cluster frame could not be written");
                return Vec::new();
            }
        };
        if text.len() <= CHUNK_BYTES {
            return vec![text];
        }
        let mut pieces = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let mut end = rest.len().min(CHUNK_BYTES);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            let (piece, tail) = rest.split_at(end);
            rest = tail;
            let chunk = Frame::Chunk {
                id,
                last: rest.is_empty(),
                data: piece.to_owned(),
            };
            if let Ok(t) = serde_json::to_string(&chunk) {
                pieces.push(t);
            }
        }
        pieces
    }
}

/// Puts chunked frames together, per sender.
#[derive(Debug, Default)]
pub struct Assembler {
    partial: HashMap<u64, String>,
}

impl Assembler {
    /// Reads one received text: `Ok(Some)` a whole frame, `Ok(None)` a piece kept for later,
    /// `Err` a frame that cannot be read (or is too long).
    pub fn take(&mut self, text: &str) -> Result<Option<Frame>, String> {
        let frame: Frame =
            serde_json::from_str(text).map_err(|e| format!("an unreadable cluster frame: {e}"))?;
        let Frame::Chunk { id, last, data } = frame else {
            return Ok(Some(frame));
        };
        let buf = self.partial.entry(id).or_default();
        if buf.len() + data.len() > MAX_FRAME_BYTES {
            self.partial.remove(&id);
            return Err(format!(
                "a cluster frame longer than {MAX_FRAME_BYTES} bytes"
            ));
        }
        buf.push_str(&data);
        if !last {
            return Ok(None);
        }
        let whole = self.partial.remove(&id).unwrap_or_default();
        serde_json::from_str(&whole)
            .map(Some)
            .map_err(|e| format!("an unreadable cluster frame: {e}"))
    }
}

#[cfg(test)]
mod tests;
