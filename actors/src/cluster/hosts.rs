//! The scheduler's side of slot hosts: one actor that takes hosts in, keeps their
//! heartbeat, and stands in for each remote slot.
//!
//! **Place in the tree.** Started by [`crate::Pool`] when it listens for hosts, beside the
//! root; it owns the node server and one [`RemoteSlot`] stand-in per remote slot, which the
//! scheduler reaches through an ordinary [`SlotLink`]. It keeps no state the pool needs
//! after a restart: a failure of this actor loses its hosts, exactly like a lost link.
//!
//! **Owns** each joined host's epoch, the tasks handed to it (their assignments, returned
//! whole when a slot hands one back; their progress sinks), and when it was last heard.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use claude_pool_protocol::{SlotId, TaskId};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::time::Instant;

use super::frame::{Assembler, Command, Event, Frame, RemoteAssignment, VERSION};
use super::{ClusterOptions, PortMsg, SessionChange, host_group, remote_port, scheduler_group};
use crate::task::Assignment;
use crate::wire::{ApprovalNote, SlotCommand, SlotEvent, SlotLink, Spend, Uplinks};

mod remote_slot;
mod scale;

use claude_pool_protocol::tools::ScaleReport;
pub use remote_slot::{RemoteSlot, RemoteSlotMsg};

/// At most this many slots per host.
pub const MAX_HOST_SLOTS: usize = 256;

/// Behaviour of the hosts actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostsActor;

/// What the hosts actor starts with.
#[derive(Debug, Clone)]
pub struct HostsArgs {
    /// Where hosts connect.
    pub listen: SocketAddr,
    /// Cookie, heartbeat, deadline, TLS.
    pub options: ClusterOptions,
    /// The scheduler, the ledger and the approval desk.
    pub up: Uplinks,
    /// Whether slots hold each prompt until the scheduler recorded its start.
    pub record_starts: bool,
    /// Where the tasks' transcripts are kept, if they are.
    pub transcripts: Option<crate::store::transcripts::TranscriptSink>,
    /// How long a busy slot being removed may finish its task (`--scale-down-grace`).
    pub grace: Duration,
}

/// Messages the hosts actor handles.
#[derive(Debug)]
pub enum HostsMsg {
    /// A frame (or a piece of one) from a host.
    Frame(String),
    /// A node session changed.
    Session(SessionChange),
    /// The heartbeat.
    Tick,
    /// A remote slot's stand-in got this from the scheduler or the approval desk.
    FromSlot(SlotId, Box<RemoteSlotMsg>),
    /// Add (`up`) or remove `count` slots of host `host` (`any`: the least loaded one);
    /// answered once the added slots exist or the removed ones are gone.
    Scale {
        /// The host's name, or `any`.
        host: String,
        /// How many slots.
        count: u32,
        /// Add (true) or remove.
        up: bool,
        /// The report, or why not.
        reply: ractor::RpcReplyPort<Result<ScaleReport, String>>,
    },
}

impl ractor::Message for HostsMsg {}

/// A scaling of a host waiting for its slots to come or go.
struct PendingScale {
    /// Slots not added (or removed) yet; for a removal, empty until the host says which.
    waiting: HashSet<SlotId>,
    /// The host has not said yet which slots it removes.
    choosing: bool,
    /// The slots added or removed.
    ids: Vec<SlotId>,
    up: bool,
    reply: ractor::RpcReplyPort<Result<ScaleReport, String>>,
}

struct Host {
    epoch: u64,
    /// The index the next added slot gets (ids are never reused on a host).
    next_index: usize,
    /// Scalings of this host in progress, oldest first.
    scaling: Vec<PendingScale>,
    port: ActorRef<PortMsg>,
    slots: usize,
    proxies: HashMap<SlotId, ActorRef<RemoteSlotMsg>>,
    /// Tasks handed to it, until they end there: (slot, assignment).
    tasks: HashMap<TaskId, (SlotId, Assignment)>,
    heard: Instant,
}

/// The hosts actor's state.
pub struct HostsState {
    args: HostsArgs,
    myself: ActorRef<HostsMsg>,
    node: super::Node,
    port: ActorRef<PortMsg>,
    hosts: HashMap<String, Host>,
    next_epoch: u64,
    assembler: Assembler,
    next_chunk: u64,
    /// Frames dropped because their epoch was given up.
    fenced_frames: u64,
}

impl std::fmt::Debug for HostsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostsState")
            .field("hosts", &self.hosts.len())
            .finish_non_exhaustive()
    }
}

impl Actor for HostsActor {
    type Msg = HostsMsg;
    type State = HostsState;
    type Arguments = HostsArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HostsMsg>,
        args: HostsArgs,
    ) -> Result<HostsState, ActorProcessingErr> {
        args.options.check(&args.listen)?;
        if args.listen.port() == 0 {
            return Err("hosts need a known port to dial: give the address a port".into());
        }
        let node = super::start_node(
            "claude-pool-scheduler",
            args.listen.ip(),
            args.listen.port(),
            &args.options,
        )
        .await?;
        let port = super::open_port(
            &myself,
            &node,
            scheduler_group(args.listen.port()),
            HostsMsg::Frame,
            HostsMsg::Session,
        )
        .await?;
        myself.send_interval(args.options.heartbeat, || HostsMsg::Tick);
        tracing::info!(listen = %args.listen, tls = args.options.tls.is_some(), "taking slot hosts");
        Ok(HostsState {
            args,
            myself,
            node,
            port,
            hosts: HashMap::new(),
            next_epoch: 1,
            assembler: Assembler::default(),
            next_chunk: 0,
            fenced_frames: 0,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<HostsMsg>,
        state: &mut HostsState,
    ) -> Result<(), ActorProcessingErr> {
        let names: Vec<String> = state.hosts.keys().cloned().collect();
        for name in names {
            state.lose(&name, "the scheduler stopped").await;
        }
        state.node.server.stop(None);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<HostsMsg>,
        msg: HostsMsg,
        state: &mut HostsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HostsMsg::Frame(text) => match state.assembler.take(&text) {
                Ok(Some(frame)) => state.on_frame(frame).await,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "dropped a frame from a host"),
            },
            HostsMsg::Session(SessionChange::Down {
                peer: Some(peer), ..
            }) => {
                let name = peer.split('@').next().unwrap_or_default().to_owned();
                if state.hosts.contains_key(&name) {
                    state.lose(&name, "its link closed").await;
                }
            }
            HostsMsg::Session(_) => {}
            HostsMsg::Tick => state.on_tick().await,
            HostsMsg::FromSlot(slot, msg) => state.for_slot(slot, *msg),
            HostsMsg::Scale {
                host,
                count,
                up,
                reply,
            } => state.on_scale(host, count, up, reply),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<HostsMsg>,
        evt: SupervisionEvent,
        state: &mut HostsState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, e) = &evt
            && cell.get_id() == state.port.get_id()
        {
            return Err(format!("the hosts' port failed: {e}").into());
        }
        Ok(())
    }
}

impl HostsState {
    fn send(&mut self, port: &ActorRef<PortMsg>, frame: &Frame) -> bool {
        self.next_chunk += 1;
        super::send(port, frame, self.next_chunk)
    }

    async fn on_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Hello {
                host,
                version,
                slots,
            } => self.on_hello(host, version, slots).await,
            Frame::Ping { epoch } => {
                if let Some(port) = self.heard(epoch).map(|h| h.port.clone()) {
                    self.send(&port, &Frame::Pong { epoch });
                }
            }
            Frame::Pong { epoch } => {
                self.heard(epoch);
            }
            Frame::Event { epoch, event } => {
                if self.heard(epoch).is_none() {
                    self.fenced_frames += 1;
                    tracing::warn!(epoch, "dropped a frame of a host that was given up");
                    return;
                }
                self.on_event(epoch, event).await;
            }
            other => tracing::warn!(frame = ?other, "a host sent a frame only a scheduler sends"),
        }
    }

    /// The host of `epoch`, marked heard now; `None` when that epoch was given up.
    fn heard(&mut self, epoch: u64) -> Option<&mut Host> {
        let h = self.hosts.values_mut().find(|h| h.epoch == epoch)?;
        h.heard = Instant::now();
        Some(h)
    }

    async fn on_hello(&mut self, name: String, version: String, slots: usize) {
        let Some(port) = remote_port(&host_group(&name)) else {
            tracing::warn!(host = %name, "a host said hello but its port is not visible");
            return;
        };
        let refusal = if version != VERSION {
            Some(format!(
                "version mismatch: this scheduler runs claude-pool {VERSION}, host {name} runs {version}"
            ))
        } else if slots == 0 || slots > MAX_HOST_SLOTS {
            Some(format!(
                "host {name} offers {slots} slots; a host offers 1 to {MAX_HOST_SLOTS}"
            ))
        } else if name.is_empty() || name.contains(['/', '@']) {
            Some(format!("{name:?} is not a host name (no '/' or '@')"))
        } else {
            None
        };
        if let Some(reason) = refusal {
            tracing::warn!(host = %name, %reason, "refused a host");
            self.send(&port, &Frame::Refused { reason });
            return;
        }
        if self.hosts.contains_key(&name) {
            self.lose(&name, "it joined again").await;
        }
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.hosts.insert(
            name.clone(),
            Host {
                epoch,
                next_index: slots,
                scaling: Vec::new(),
                port: port.clone(),
                slots,
                proxies: HashMap::new(),
                tasks: HashMap::new(),
                heard: Instant::now(),
            },
        );
        tracing::info!(host = %name, epoch, slots, "a slot host joined");
        let welcome = Frame::Welcome {
            epoch,
            version: VERSION.to_owned(),
            heartbeat_ms: ms(self.args.options.heartbeat),
            deadline_ms: ms(self.args.options.deadline),
            record_starts: self.args.record_starts,
            transcripts: self.args.transcripts.is_some(),
        };
        self.send(&port, &welcome);
    }

    async fn on_tick(&mut self) {
        let deadline = self.args.options.deadline;
        let late: Vec<String> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.heard.elapsed() > deadline)
            .map(|(n, _)| n.clone())
            .collect();
        for name in late {
            let why = format!(
                "no word from it for {}",
                humantime::format_duration(deadline)
            );
            self.lose(&name, &why).await;
        }
        let pings: Vec<(ActorRef<PortMsg>, u64)> = self
            .hosts
            .values()
            .map(|h| (h.port.clone(), h.epoch))
            .collect();
        for (port, epoch) in pings {
            self.send(&port, &Frame::Ping { epoch });
        }
    }

    /// Gives a host up: its slots are lost (the scheduler ends or requeues their tasks),
    /// its epoch is no longer accepted, and its link is closed.
    async fn lose(&mut self, name: &str, why: &str) {
        let Some(host) = self.hosts.remove(name) else {
            return;
        };
        tracing::warn!(host = %name, epoch = host.epoch, reason = %why, "slot host lost");
        let reason = format!("host {name} was lost: {why}");
        // Tasks that said they may run again go back to the queue, whole, before their
        // slots are given up.
        for (task, (slot, assignment)) in host.tasks {
            if assignment.retry_if_lost {
                tracing::info!(%task, %slot, "a task lost with its host runs again (it asked to)");
                let _ = self.args.up.events.send_message(SlotEvent::Rejected {
                    slot,
                    assignment,
                    died_before_turn: None,
                });
            }
        }
        let mut slots: Vec<&SlotId> = host.proxies.keys().collect();
        slots.sort();
        for slot in slots {
            let _ = self.args.up.events.send_message(SlotEvent::Lost {
                slot: slot.clone(),
                reason: reason.clone(),
            });
        }
        for proxy in host.proxies.values() {
            proxy.stop(None);
        }
        for p in host.scaling {
            let _ = p.reply.send(Err(reason.clone()));
        }
        super::close_sessions(&self.node.server, &format!("{name}@")).await;
    }

    /// The stand-in of `slot` of the host of `epoch` (started on first use).
    async fn stand_in(&mut self, epoch: u64, slot: &SlotId) -> Option<ActorRef<RemoteSlotMsg>> {
        let (name, host) = self.hosts.iter_mut().find(|(_, h)| h.epoch == epoch)?;
        if !slot.0.starts_with(&format!("{name}/")) {
            tracing::warn!(host = %name, %slot, "a host spoke for a slot that is not its own");
            return None;
        }
        if let Some(p) = host.proxies.get(slot) {
            return Some(p.clone());
        }
        let args = (slot.clone(), self.myself.clone());
        let (proxy, _) = Actor::spawn_linked(None, RemoteSlot, args, self.myself.get_cell())
            .await
            .ok()?;
        host.proxies.insert(slot.clone(), proxy.clone());
        Some(proxy)
    }

    fn host_of_task(&mut self, epoch: u64, task: &TaskId) -> Option<(SlotId, Assignment)> {
        self.hosts
            .values_mut()
            .find(|h| h.epoch == epoch)?
            .tasks
            .remove(task)
    }

    async fn on_event(&mut self, epoch: u64, event: Event) {
        let up = self.args.up.clone();
        let to_scheduler = |e: SlotEvent| {
            let _ = up.events.send_message(e);
        };
        match event {
            Event::Added { slot } => {
                if self.stand_in(epoch, &slot).await.is_some() {
                    to_scheduler(SlotEvent::Added { slot: slot.clone() });
                    tracing::info!(%slot, epoch, "a host's slot joined the pool");
                    self.settle(epoch, &slot);
                }
            }
            Event::Ready {
                slot,
                pid,
                turns,
                worktree,
                cwd,
            } => {
                if let Some(p) = self.stand_in(epoch, &slot).await {
                    to_scheduler(SlotEvent::Ready {
                        slot,
                        link: SlotLink::new(p.get_derived()),
                        pid,
                        turns,
                        worktree,
                        cwd,
                    });
                }
            }
            Event::Changed {
                slot,
                status,
                pid,
                turns,
            } => to_scheduler(SlotEvent::Changed {
                slot,
                status,
                pid,
                turns,
            }),
            Event::Removed { slot } => {
                self.slot_gone(epoch, &slot);
                to_scheduler(SlotEvent::Removed { slot });
            }
            Event::Retiring { slots } => self.retiring(epoch, slots),
            Event::Down {
                slot,
                reason,
                restarts,
                restarting,
            } => to_scheduler(SlotEvent::Down {
                slot,
                reason,
                restarts,
                restarting,
            }),
            Event::Started { task, slot, ack } => {
                let ack = if ack {
                    self.stand_in(epoch, &slot)
                        .await
                        .map(|p| SlotLink::new(p.get_derived()))
                } else {
                    None
                };
                to_scheduler(SlotEvent::Started {
                    task,
                    slot,
                    started_at: Instant::now(),
                    ack,
                });
            }
            Event::Rejected {
                slot,
                task,
                died_before_turn,
            } => match self.host_of_task(epoch, &task) {
                Some((_, assignment)) => to_scheduler(SlotEvent::Rejected {
                    slot,
                    assignment,
                    died_before_turn,
                }),
                None => tracing::warn!(%task, "a host handed back a task it did not have"),
            },
            Event::RateLimited { slot, task, error } => match self.host_of_task(epoch, &task) {
                Some((_, assignment)) => to_scheduler(SlotEvent::RateLimited {
                    slot,
                    assignment,
                    error,
                }),
                None => tracing::warn!(%task, "a host handed back a task it did not have"),
            },
            Event::ApiPressure { slot, status } => {
                to_scheduler(SlotEvent::ApiPressure { slot, status });
            }
            Event::ApiWindows(info) => to_scheduler(SlotEvent::ApiWindows(info)),
            Event::Finished {
                task,
                slot,
                mut outcome,
                started_ms_ago,
            } => {
                self.host_of_task(epoch, &task);
                outcome.started_at = started_ms_ago
                    .and_then(|ago| Instant::now().checked_sub(Duration::from_millis(ago)));
                to_scheduler(SlotEvent::Finished {
                    task,
                    slot,
                    outcome: *outcome,
                });
            }
            Event::Spend { task, usd, tokens } => {
                let _ = up.spend.send_message(Spend { task, usd, tokens });
            }
            Event::Progress { task, progress } => {
                if let Some(sink) = self.progress_of(epoch, &task) {
                    let _ = sink.send(progress);
                }
            }
            Event::Ask {
                request,
                timeout_ms,
            } => {
                let listener = self.progress_of(epoch, &request.task_id);
                let Some(proxy) = self.stand_in(epoch, &request.slot_id).await else {
                    return;
                };
                let _ = up.approvals.send_message(ApprovalNote::Ask {
                    request: *request,
                    slot: proxy.get_derived(),
                    listener,
                    timeout: Duration::from_millis(timeout_ms),
                });
            }
            Event::Decided { outcome, by } => {
                let _ = up
                    .approvals
                    .send_message(ApprovalNote::Decided { outcome, by });
            }
            Event::Transcript { task, line } => {
                if let Some(sink) = &self.args.transcripts {
                    sink.line(&task.0, line.into_bytes());
                }
            }
            Event::TranscriptClosed { task } => {
                if let Some(sink) = &self.args.transcripts {
                    sink.close(&task.0);
                }
            }
            Event::TaskEnded { task } => {
                let _ = up.approvals.send_message(ApprovalNote::TaskEnded(task));
            }
            Event::Withdrawn { request_id } => {
                let _ = up
                    .approvals
                    .send_message(ApprovalNote::Withdrawn(request_id));
            }
        }
    }

    fn progress_of(&self, epoch: u64, task: &TaskId) -> Option<crate::task::ProgressSink> {
        self.hosts
            .values()
            .find(|h| h.epoch == epoch)?
            .tasks
            .get(task)?
            .1
            .progress
            .clone()
    }

    /// The scheduler (or the approval desk) to a remote slot.
    fn for_slot(&mut self, slot: SlotId, msg: RemoteSlotMsg) {
        let Some((_, host)) = self
            .hosts
            .iter_mut()
            .find(|(name, _)| slot.0.starts_with(&format!("{name}/")))
        else {
            return;
        };
        let command = match msg {
            RemoteSlotMsg::Command(SlotCommand::Run(a)) => {
                let command = Command::Run(Box::new(RemoteAssignment::of(&a)));
                host.tasks.insert(a.task.clone(), (slot.clone(), a));
                command
            }
            RemoteSlotMsg::Command(SlotCommand::StartRecorded { task, result }) => {
                Command::StartRecorded { task, result }
            }
            RemoteSlotMsg::Command(SlotCommand::Cancel {
                task,
                status,
                reason,
            }) => Command::Cancel {
                task,
                status,
                reason,
            },
            RemoteSlotMsg::Command(SlotCommand::Release) => Command::Release,
            RemoteSlotMsg::Command(SlotCommand::Wake) => Command::Wake,
            RemoteSlotMsg::Answered(a) => Command::Answered(a),
        };
        let frame = Frame::Command {
            epoch: host.epoch,
            slot,
            command,
        };
        let port = host.port.clone();
        self.send(&port, &frame);
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
