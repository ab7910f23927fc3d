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
mod tests {
    use super::*;

    #[test]
    fn a_long_frame_travels_in_pieces_and_comes_back_whole() {
        let output = "é".repeat(CHUNK_BYTES); // two bytes each: pieces must split at chars
        let frame = Frame::Event {
            epoch: 7,
            event: Event::Progress {
                task: TaskId("task-1".into()),
                progress: TaskProgress::Held(output.clone()),
            },
        };
        let pieces = frame.encode(3);
        assert!(pieces.len() >= 2, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.len() <= CHUNK_BYTES + 64));
        let mut a = Assembler::default();
        let mut whole = None;
        for p in &pieces {
            whole = a.take(p).expect("readable");
        }
        let Some(Frame::Event {
            epoch: 7,
            event:
                Event::Progress {
                    progress: TaskProgress::Held(text),
                    ..
                },
        }) = whole
        else {
            panic!("not the frame sent");
        };
        assert_eq!(text, output);
    }

    /// Every kind of frame is written and read back (serde refuses some enum shapes only
    /// when one is written).
    #[test]
    fn every_frame_is_written_and_read_back() {
        let task = TaskId("task-1".into());
        let slot = SlotId("h1/slot-0".into());
        let request: ApprovalRequest = serde_json::from_value(serde_json::json!({
            "request_id": "apr-1", "task_id": "task-1", "slot_id": "h1/slot-0", "kind": "tool",
            "tool": "Bash", "summary": "ls", "input": {}, "requested_at": "t", "expires_at": "t"
        }))
        .expect("a request");
        let events = vec![
            Event::Added { slot: slot.clone() },
            Event::Ready {
                slot: slot.clone(),
                pid: 1,
                turns: 2,
                worktree: None,
                cwd: None,
            },
            Event::Changed {
                slot: slot.clone(),
                status: SlotStatus::Busy,
                pid: Some(1),
                turns: 0,
            },
            Event::Removed { slot: slot.clone() },
            Event::Down {
                slot: slot.clone(),
                reason: "r".into(),
                restarts: 1,
                restarting: true,
            },
            Event::Started {
                task: task.clone(),
                slot: slot.clone(),
                ack: true,
            },
            Event::Rejected {
                slot: slot.clone(),
                task: task.clone(),
                died_before_turn: None,
            },
            Event::RateLimited {
                slot: slot.clone(),
                task: task.clone(),
                error: "429".into(),
            },
            Event::ApiPressure {
                slot: slot.clone(),
                status: 429,
            },
            Event::ApiWindows(RateLimitInfo::default()),
            Event::Finished {
                task: task.clone(),
                slot: slot.clone(),
                outcome: Box::new(TaskOutcome::unbilled(TaskStatus::Failed, "x")),
                started_ms_ago: Some(3),
            },
            Event::Spend {
                task: task.clone(),
                usd: 0.5,
                tokens: 10,
            },
            Event::Progress {
                task: task.clone(),
                progress: TaskProgress::Held("h".into()),
            },
            Event::Ask {
                request: Box::new(request),
                timeout_ms: 5,
            },
            Event::Decided {
                outcome: "allow".into(),
                by: "rule:x".into(),
            },
            Event::Transcript {
                task: task.clone(),
                line: "{}".into(),
            },
            Event::TranscriptClosed { task: task.clone() },
            Event::Retiring {
                slots: vec![slot.clone()],
            },
            Event::TaskEnded { task: task.clone() },
            Event::Withdrawn {
                request_id: "apr-1".into(),
            },
        ];
        let commands = vec![
            Command::Run(Box::new(RemoteAssignment {
                task: task.clone(),
                prompt: "p".into(),
                preamble: Some("c".into()),
                settings: ProcSettings::default(),
                deadline_in_ms: 5,
                timeout_ms: 6,
                progress: true,
                resume: None,
                rules: Some(RuleSet::parse(&["Bash(ls:*)"], &["Read"]).expect("rules")),
                approval_timeout_ms: Some(7),
            })),
            Command::StartRecorded {
                task: task.clone(),
                result: Err("no".into()),
            },
            Command::Cancel {
                task: task.clone(),
                status: TaskStatus::Cancelled,
                reason: "r".into(),
            },
            Command::Release,
            Command::Wake,
            Command::Answered(Answered {
                task: task.clone(),
                request_id: "apr-1".into(),
                answer: claude_pool_protocol::approvals::Answer::cancel("c"),
                by: "b".into(),
            }),
        ];
        let mut frames = vec![
            Frame::Hello {
                host: "h1".into(),
                version: VERSION.into(),
                slots: 2,
            },
            Frame::Welcome {
                epoch: 1,
                version: VERSION.into(),
                heartbeat_ms: 1,
                deadline_ms: 2,
                record_starts: true,
                transcripts: true,
            },
            Frame::Refused { reason: "r".into() },
            Frame::Ping { epoch: 1 },
            Frame::Pong { epoch: 1 },
            Frame::Host {
                epoch: 1,
                command: HostCommand::AddSlots {
                    slots: vec![slot.clone()],
                },
            },
            Frame::Host {
                epoch: 1,
                command: HostCommand::RetireSlots {
                    count: 1,
                    grace_ms: 5,
                },
            },
        ];
        frames.extend(
            events
                .into_iter()
                .map(|event| Frame::Event { epoch: 1, event }),
        );
        frames.extend(commands.into_iter().map(|command| Frame::Command {
            epoch: 1,
            slot: slot.clone(),
            command,
        }));
        for frame in frames {
            let text = serde_json::to_string(&frame)
                .unwrap_or_else(|e| panic!("{frame:?} cannot be written: {e}"));
            let back: Frame = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{text} cannot be read: {e}"));
            assert_eq!(serde_json::to_string(&back).expect("again"), text);
        }
    }

    #[test]
    fn an_unreadable_or_endless_frame_is_an_error() {
        let mut a = Assembler::default();
        assert!(a.take("{not json").is_err());
        let big = "x".repeat(CHUNK_BYTES);
        let piece = serde_json::to_string(&Frame::Chunk {
            id: 1,
            last: false,
            data: big,
        })
        .expect("json");
        let mut err = None;
        for _ in 0..=(MAX_FRAME_BYTES / CHUNK_BYTES) {
            if let Err(e) = a.take(&piece) {
                err = Some(e);
                break;
            }
        }
        assert!(err.expect("refused").contains("longer than"));
    }
}
