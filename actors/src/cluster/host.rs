//! A slot host: this machine's slots, offered to a scheduler on another.
//!
//! **Place in the tree.** [`HostAgent`] is the root of a host process. Once the scheduler
//! welcomes it, it starts a slot supervisor (one-for-one restarts with backoff, exactly as in
//! a one-machine pool) whose slots report to the agent; the agent forwards their events,
//! spend and questions as frames, and the scheduler's commands to them.
//!
//! **Failure.** A scheduler unheard for the deadline, a closed link, or a failed slot
//! supervisor: the agent stops the slot supervisor (every process group is killed, no task
//! of this epoch goes on), then joins again with backoff, as a fresh host. A refusal (another
//! version, a bad name) ends the host with the scheduler's reason.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::{SlotId, TaskId};
use ractor::{
    Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::frame::{Assembler, Event, Frame};
use super::{ClusterOptions, PortMsg, SessionChange, host_group, scheduler_group};
use crate::config::PoolConfig;
use crate::events::EventBus;
use crate::slot_supervisor::{SlotSupervisorActor, SlotSupervisorArgs, SlotSupervisorMsg};
use crate::task::TaskProgress;
use crate::wire::{Answered, ApprovalNote, SlotEvent, SlotLink, Spend, Uplinks};

mod handle;
mod relay;

pub use handle::{HostHandle, run_host};

/// Behaviour of a host's agent.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostAgent;

/// What a host starts with.
#[derive(Clone)]
pub struct HostArgs {
    /// Its name among the scheduler's hosts (its slots are `<name>/slot-N`).
    pub name: String,
    /// The scheduler's address.
    pub join: SocketAddr,
    /// How many slots it offers.
    pub slots: usize,
    /// Cookie, heartbeat, deadline, TLS.
    pub options: ClusterOptions,
    /// How its Claude processes run (binary, directory, flags, limits).
    pub config: Arc<PoolConfig>,
    /// Told the scheduler's reason when it refuses this host.
    pub refusals: Option<mpsc::UnboundedSender<String>>,
    /// The version it announces ([`super::frame::VERSION`]; another only to test the
    /// version check).
    pub version: String,
}

impl std::fmt::Debug for HostArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostArgs")
            .field("name", &self.name)
            .field("join", &self.join)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// Messages a host's agent handles.
#[derive(Debug)]
pub enum HostMsg {
    /// Dial the scheduler.
    Connect,
    /// A frame (or a piece of one) from the scheduler.
    Frame(String),
    /// A node session changed.
    Session(SessionChange),
    /// The heartbeat.
    Tick,
    /// A local slot (or the slot supervisor) reported.
    Slot(SlotEvent),
    /// A local task's spend.
    Spend(Spend),
    /// A local slot's permission note.
    Approval(ApprovalNote),
    /// A local task's progress.
    Progress(TaskId, TaskProgress),
    /// A line of a local task's transcript.
    Transcript(TaskId, String),
    /// A local task's transcript is complete.
    TranscriptClosed(TaskId),
    /// The epoch this host joined with, if it is joined now.
    Epoch(RpcReplyPort<Option<u64>>),
    /// Stop every slot and leave; answered when their processes are gone.
    Shutdown(RpcReplyPort<()>),
}

impl ractor::Message for HostMsg {}

macro_rules! into_host_msg {
    ($t:ty, $v:ident) => {
        impl From<$t> for HostMsg {
            fn from(x: $t) -> Self {
                HostMsg::$v(x)
            }
        }
        impl TryFrom<HostMsg> for $t {
            type Error = HostMsg;
            fn try_from(m: HostMsg) -> Result<Self, HostMsg> {
                match m {
                    HostMsg::$v(x) => Ok(x),
                    other => Err(other),
                }
            }
        }
    };
}
into_host_msg!(SlotEvent, Slot);
into_host_msg!(Spend, Spend);
into_host_msg!(ApprovalNote, Approval);

/// The link to the scheduler, once welcomed.
struct Joined {
    port: ActorRef<PortMsg>,
    epoch: u64,
    heard: Instant,
    deadline: Duration,
}

/// The host's lease on this machine: `<state dir>/hosts/<name>.lock`, held for its life.
/// Every process its slots start carries the lease's path (the leftovers marker), so a host
/// of the same name started after this one was killed finds what it left — a tool's shell,
/// a `sleep` in a slot's group — and kills it before its own slots start.
fn lease(name: &str) -> Result<(std::fs::File, std::path::PathBuf), String> {
    let dir = crate::config::StoreLocation::state_dir().join("hosts");
    crate::private::create_dir_all(&dir)
        .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let file = crate::private::open_rw(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok((file, path)),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "a host named {name} already runs on this machine ({} is held)",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// A host's state.
pub struct HostState {
    args: HostArgs,
    /// Held for the host's life (see [`lease`]).
    _lease: std::fs::File,
    myself: ActorRef<HostMsg>,
    node: super::Node,
    joined: Option<Joined>,
    /// Since when it waits for the scheduler's welcome.
    joining: Option<Instant>,
    /// Failed joins in a row (sets the backoff).
    attempts: u32,
    supervisor: Option<ActorRef<SlotSupervisorMsg>>,
    links: HashMap<SlotId, SlotLink>,
    /// Each slot's status as its events said (to remove idle ones first).
    statuses: HashMap<SlotId, claude_pool_protocol::SlotStatus>,
    answers: HashMap<String, DerivedActorRef<Answered>>,
    assembler: Assembler,
    next_chunk: u64,
    events: EventBus,
    /// Set when the scheduler refused this host: the agent stops with it.
    refused: Option<String>,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("name", &self.args.name)
            .field("joined", &self.joined.as_ref().map(|j| j.epoch))
            .finish_non_exhaustive()
    }
}

impl Actor for HostAgent {
    type Msg = HostMsg;
    type State = HostState;
    type Arguments = HostArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HostMsg>,
        args: HostArgs,
    ) -> Result<HostState, ActorProcessingErr> {
        let mut args = args;
        args.options.check(&args.join)?;
        if args.name.is_empty() || args.name.starts_with('.') || args.name.contains(['/', '@']) {
            return Err(format!("{:?} is not a host name (no '/' or '@')", args.name).into());
        }
        let (lease, lease_path) = lease(&args.name)?;
        let left = crate::process::leftovers::sweep(&lease_path);
        if left > 0 {
            tracing::warn!(
                processes = left,
                "killed what an earlier host of this name left running"
            );
        }
        let mut config = (*args.config).clone();
        config.process_marker = Some(crate::process::leftovers::marker(&lease_path).into());
        args.config = Arc::new(config);
        // A host only dials out; its node server's own listener stays on loopback.
        let loopback = std::net::IpAddr::from([127u8, 0, 0, 1]);
        let node = super::start_node(&args.name, loopback, 0, &args.options).await?;
        super::open_port(
            &myself,
            &node,
            host_group(&args.name),
            HostMsg::Frame,
            HostMsg::Session,
        )
        .await?;
        myself.send_interval(args.options.heartbeat, || HostMsg::Tick);
        myself.cast(HostMsg::Connect)?;
        Ok(HostState {
            args,
            _lease: lease,
            myself,
            node,
            joined: None,
            joining: None,
            attempts: 0,
            supervisor: None,
            links: HashMap::new(),
            statuses: HashMap::new(),
            answers: HashMap::new(),
            assembler: Assembler::default(),
            next_chunk: 0,
            events: EventBus::new(),
            refused: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<HostMsg>,
        state: &mut HostState,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_slots().await;
        state.node.server.stop(None);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<HostMsg>,
        msg: HostMsg,
        state: &mut HostState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HostMsg::Connect => state.connect().await,
            HostMsg::Frame(text) => match state.assembler.take(&text) {
                Ok(Some(frame)) => state.on_frame(frame).await,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "dropped a frame from the scheduler"),
            },
            HostMsg::Session(SessionChange::Ready { .. }) => state.hello(),
            HostMsg::Session(SessionChange::Down { .. }) => {
                if state.joined.is_some() || state.joining.is_some() {
                    state.leave("the link to the scheduler closed").await;
                }
            }
            HostMsg::Tick => state.on_tick().await,
            HostMsg::Slot(event) => state.on_slot(event),
            HostMsg::Spend(Spend { task, usd, tokens }) => {
                state.tell_scheduler(Event::Spend { task, usd, tokens });
            }
            HostMsg::Approval(note) => state.on_approval(note),
            HostMsg::Progress(task, progress) => {
                state.tell_scheduler(Event::Progress { task, progress });
            }
            HostMsg::Transcript(task, line) => {
                state.tell_scheduler(Event::Transcript { task, line });
            }
            HostMsg::TranscriptClosed(task) => {
                state.tell_scheduler(Event::TranscriptClosed { task });
            }
            HostMsg::Epoch(reply) => {
                let _ = reply.send(state.joined.as_ref().map(|j| j.epoch));
            }
            HostMsg::Shutdown(reply) => {
                state.stop_slots().await;
                let _ = reply.send(());
                myself.stop(None);
            }
        }
        if let Some(reason) = state.refused.take() {
            myself.stop(Some(reason));
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<HostMsg>,
        evt: SupervisionEvent,
        state: &mut HostState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, e) = &evt
            && state
                .supervisor
                .as_ref()
                .is_some_and(|s| s.get_id() == cell.get_id())
        {
            state.supervisor = None;
            let why = format!("its slot supervisor failed: {e}");
            state.leave(&why).await;
        }
        Ok(())
    }
}

impl HostState {
    async fn connect(&mut self) {
        if self.joined.is_some() || self.joining.is_some() {
            return;
        }
        self.joining = Some(Instant::now());
        let addr = self.args.join;
        let dial = async {
            match &self.args.options.tls {
                Some(files) => {
                    let connector = super::tls_connector(files).map_err(std::io::Error::other)?;
                    let name = tokio_rustls::rustls::pki_types::ServerName::from(addr.ip());
                    ractor_cluster::client_connect_enc(&self.node.server, addr, connector, name)
                        .await
                        .map_err(|e| std::io::Error::other(format!("{e:?}")))
                }
                None => ractor_cluster::client_connect(&self.node.server, addr)
                    .await
                    .map_err(|e| std::io::Error::other(format!("{e:?}"))),
            }
        };
        let result = tokio::time::timeout(self.args.options.deadline, dial).await;
        if let Err(e) = result
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(scheduler = %addr, error = %e, "cannot reach the scheduler");
            self.retry_later();
        }
    }

    fn retry_later(&mut self) {
        self.joining = None;
        self.attempts = self.attempts.saturating_add(1);
        let secs = 1u64 << self.attempts.min(4);
        let delay = Duration::from_millis(250)
            .max(Duration::from_secs(secs).min(Duration::from_secs(10)) / 4);
        self.myself.send_after(delay, || HostMsg::Connect);
    }

    /// The session is up: say hello to the scheduler's port.
    fn hello(&mut self) {
        if self.joined.is_some() {
            return;
        }
        let Some(port) = super::remote_port(&scheduler_group(self.args.join.port())) else {
            tracing::warn!("the scheduler's port is not visible");
            return;
        };
        let hello = Frame::Hello {
            host: self.args.name.clone(),
            version: self.args.version.clone(),
            slots: self.args.slots,
        };
        self.next_chunk += 1;
        super::send(&port, &hello, self.next_chunk);
    }

    async fn on_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Welcome {
                epoch,
                version,
                heartbeat_ms: _,
                deadline_ms,
                record_starts,
                transcripts,
            } => {
                let Some(port) = super::remote_port(&scheduler_group(self.args.join.port())) else {
                    return;
                };
                tracing::info!(scheduler = %self.args.join, epoch, %version, slots = self.args.slots, "joined the scheduler");
                self.joining = None;
                self.attempts = 0;
                self.joined = Some(Joined {
                    port,
                    epoch,
                    heard: Instant::now(),
                    deadline: Duration::from_millis(deadline_ms).max(self.args.options.heartbeat),
                });
                if let Err(e) = self.start_slots(record_starts, transcripts).await {
                    let why = format!("its slots could not start: {e}");
                    self.leave(&why).await;
                }
            }
            Frame::Refused { reason } => {
                tracing::error!(%reason, "the scheduler refused this host");
                if let Some(to) = &self.args.refusals {
                    let _ = to.send(reason.clone());
                }
                self.refused = Some(reason);
            }
            Frame::Ping { epoch } => {
                if self.heard(epoch) {
                    self.send(Frame::Pong { epoch });
                }
            }
            Frame::Pong { epoch } => {
                self.heard(epoch);
            }
            Frame::Command {
                epoch,
                slot,
                command,
            } => {
                if self.heard(epoch) {
                    self.on_command(slot, command);
                }
            }
            Frame::Host { epoch, command } => {
                if self.heard(epoch) {
                    self.on_host_command(command);
                }
            }
            other => tracing::warn!(frame = ?other, "the scheduler sent a frame only a host sends"),
        }
    }

    /// Whether `epoch` is this host's current one (and if so, the scheduler was heard).
    fn heard(&mut self, epoch: u64) -> bool {
        match &mut self.joined {
            Some(j) if j.epoch == epoch => {
                j.heard = Instant::now();
                true
            }
            _ => false,
        }
    }

    fn send(&mut self, frame: Frame) {
        let Some(j) = &self.joined else {
            return;
        };
        self.next_chunk += 1;
        let id = (j.epoch << 32) | (self.next_chunk & 0xffff_ffff);
        super::send(&j.port, &frame, id);
    }

    fn tell_scheduler(&mut self, event: Event) {
        let Some(epoch) = self.joined.as_ref().map(|j| j.epoch) else {
            return;
        };
        self.send(Frame::Event { epoch, event });
    }

    async fn start_slots(
        &mut self,
        record_starts: bool,
        transcripts: bool,
    ) -> Result<(), ActorProcessingErr> {
        let transcripts = transcripts.then(|| {
            let me = self.myself.clone();
            crate::store::transcripts::TranscriptSink::forwarding(move |task, line| {
                let task = TaskId(task.to_owned());
                let event = match line {
                    Some(l) => HostMsg::Transcript(task, String::from_utf8_lossy(&l).into_owned()),
                    None => HostMsg::TranscriptClosed(task),
                };
                let _ = me.cast(event);
            })
        });
        let slots: Vec<SlotId> = (0..self.args.slots)
            .map(|i| SlotId(format!("{}/slot-{i}", self.args.name)))
            .collect();
        let args = SlotSupervisorArgs {
            config: self.args.config.clone(),
            slots,
            up: Uplinks {
                events: self.myself.get_derived(),
                spend: self.myself.get_derived(),
                approvals: self.myself.get_derived(),
            },
            worktrees: None,
            events: self.events.clone(),
            transcripts,
            record_starts,
        };
        let (sup, _) =
            Actor::spawn_linked(None, SlotSupervisorActor, args, self.myself.get_cell()).await?;
        self.supervisor = Some(sup);
        Ok(())
    }

    /// Stops every slot and its processes.
    async fn stop_slots(&mut self) {
        if let Some(sup) = self.supervisor.take() {
            let _ = ractor::call!(sup, SlotSupervisorMsg::Shutdown);
            sup.stop(None);
        }
        self.links.clear();
        self.statuses.clear();
        self.answers.clear();
    }

    /// Gives up this epoch: every slot stops, the link closes, and the host joins again.
    async fn leave(&mut self, why: &str) {
        tracing::warn!(reason = %why, "leaving the scheduler; every slot stops");
        self.stop_slots().await;
        self.joined = None;
        super::close_sessions(&self.node.server, "").await;
        self.retry_later();
    }

    async fn on_tick(&mut self) {
        let deadline = self.args.options.deadline;
        if let Some(j) = &self.joined {
            if j.heard.elapsed() > j.deadline {
                let why = format!(
                    "no word from the scheduler for {}",
                    humantime::format_duration(j.deadline)
                );
                self.leave(&why).await;
                return;
            }
            let epoch = j.epoch;
            self.send(Frame::Ping { epoch });
        } else if self.joining.is_some_and(|t| t.elapsed() > deadline) {
            self.leave("no welcome from the scheduler").await;
        }
    }
}
