//! Scaling a host: new slots get ids never used on it; removals are the host's choice,
//! idle ones first; each answered once the slots came or went.

use std::collections::HashSet;

use claude_pool_protocol::SlotId;
use claude_pool_protocol::tools::ScaleReport;

use super::{Host, HostsState, MAX_HOST_SLOTS, PendingScale, ms};
use crate::cluster::frame::{Frame, HostCommand};

impl HostsState {
    pub(super) fn on_scale(
        &mut self,
        host: String,
        count: u32,
        up: bool,
        reply: ractor::RpcReplyPort<Result<ScaleReport, String>>,
    ) {
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let name = if host == "any" {
            // The least loaded: fewest tasks per slot, then fewest slots, then by name.
            let mut all: Vec<(&String, &Host)> = self.hosts.iter().collect();
            all.sort_by(|(an, a), (bn, b)| {
                let load = |h: &Host| h.tasks.len() as f64 / h.slots.max(1) as f64;
                load(a)
                    .total_cmp(&load(b))
                    .then(a.slots.cmp(&b.slots))
                    .then(an.cmp(bn))
            });
            match all.first() {
                Some((n, _)) => (*n).clone(),
                None => {
                    let _ = reply.send(Err("no slot host has joined".into()));
                    return;
                }
            }
        } else {
            host
        };
        let grace = ms(self.args.grace);
        let Some(h) = self.hosts.get_mut(&name) else {
            let mut known: Vec<&String> = self.hosts.keys().collect();
            known.sort();
            let _ = reply.send(Err(format!("no slot host {name:?} (joined: {known:?})")));
            return;
        };
        if count == 0 {
            let _ = reply.send(Err("count must be at least 1".into()));
            return;
        }
        let (command, pending) = if up {
            if h.slots + count > MAX_HOST_SLOTS {
                let _ = reply.send(Err(format!(
                    "host {name} has {} slots; a host has at most {MAX_HOST_SLOTS}",
                    h.slots
                )));
                return;
            }
            let slots: Vec<SlotId> = (h.next_index..h.next_index + count)
                .map(|i| SlotId(format!("{name}/slot-{i}")))
                .collect();
            h.next_index += count;
            h.slots += count;
            let waiting = slots.iter().cloned().collect();
            (
                HostCommand::AddSlots {
                    slots: slots.clone(),
                },
                PendingScale {
                    waiting,
                    ids: slots,
                    choosing: false,
                    up,
                    reply,
                },
            )
        } else {
            if count >= h.slots {
                let _ = reply.send(Err(format!(
                    "host {name} has {} slots; at least one stays",
                    h.slots
                )));
                return;
            }
            (
                HostCommand::RetireSlots {
                    count,
                    grace_ms: grace,
                },
                PendingScale {
                    waiting: HashSet::new(),
                    ids: Vec::new(),
                    choosing: true,
                    up,
                    reply,
                },
            )
        };
        h.scaling.push(pending);
        let frame = Frame::Host {
            epoch: h.epoch,
            command,
        };
        let port = h.port.clone();
        self.send(&port, &frame);
    }

    /// The host of `epoch` chose these slots to remove.
    pub(super) fn retiring(&mut self, epoch: u64, slots: Vec<SlotId>) {
        let Some(h) = self.hosts.values_mut().find(|h| h.epoch == epoch) else {
            return;
        };
        if let Some(p) = h.scaling.iter_mut().find(|p| p.choosing) {
            p.choosing = false;
            p.waiting = slots.iter().cloned().collect();
            p.ids = slots;
        }
        self.settle_all(epoch);
    }

    /// A slot of the host of `epoch` was removed.
    pub(super) fn slot_gone(&mut self, epoch: u64, slot: &SlotId) {
        let Some(h) = self.hosts.values_mut().find(|h| h.epoch == epoch) else {
            return;
        };
        if let Some(p) = h.proxies.remove(slot) {
            p.stop(None);
        }
        h.slots = h.slots.saturating_sub(1);
        self.settle(epoch, slot);
    }

    /// `slot` came or went: scalings waiting only for it are answered.
    pub(super) fn settle(&mut self, epoch: u64, slot: &SlotId) {
        if let Some(h) = self.hosts.values_mut().find(|h| h.epoch == epoch) {
            for p in &mut h.scaling {
                p.waiting.remove(slot);
            }
        }
        self.settle_all(epoch);
    }

    fn settle_all(&mut self, epoch: u64) {
        let Some((name, h)) = self.hosts.iter_mut().find(|(_, h)| h.epoch == epoch) else {
            return;
        };
        let slots = h.slots;
        let (done, open): (Vec<PendingScale>, Vec<PendingScale>) = std::mem::take(&mut h.scaling)
            .into_iter()
            .partition(|p| !p.choosing && p.waiting.is_empty());
        h.scaling = open;
        for p in done {
            let _ = p.reply.send(Ok(ScaleReport {
                success: true,
                new_slot_count: u32::try_from(slots).unwrap_or(u32::MAX),
                details: format!(
                    "Scaled host {name} {} (it has {slots} slots)",
                    if p.up { "up" } else { "down" }
                ),
                target: None,
                slots: p.ids,
            }));
        }
    }
}
