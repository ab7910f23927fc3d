//! A remote slot's stand-in on the scheduler's machine.

use claude_pool_protocol::SlotId;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr};

use super::HostsMsg;
use crate::wire::{Answered, SlotCommand};

/// What a remote slot's stand-in takes: the slot's commands and its permission answers.
#[derive(Debug)]
pub enum RemoteSlotMsg {
    /// From the scheduler.
    Command(SlotCommand),
    /// From the approval desk.
    Answered(Answered),
}

impl ractor::Message for RemoteSlotMsg {}

impl From<SlotCommand> for RemoteSlotMsg {
    fn from(c: SlotCommand) -> Self {
        RemoteSlotMsg::Command(c)
    }
}

impl TryFrom<RemoteSlotMsg> for SlotCommand {
    type Error = RemoteSlotMsg;
    fn try_from(m: RemoteSlotMsg) -> Result<Self, RemoteSlotMsg> {
        match m {
            RemoteSlotMsg::Command(c) => Ok(c),
            other => Err(other),
        }
    }
}

impl From<Answered> for RemoteSlotMsg {
    fn from(a: Answered) -> Self {
        RemoteSlotMsg::Answered(a)
    }
}

impl TryFrom<RemoteSlotMsg> for Answered {
    type Error = RemoteSlotMsg;
    fn try_from(m: RemoteSlotMsg) -> Result<Self, RemoteSlotMsg> {
        match m {
            RemoteSlotMsg::Answered(a) => Ok(a),
            other => Err(other),
        }
    }
}

/// A remote slot's stand-in: what the scheduler sends it goes to the slot's host.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteSlot;

impl Actor for RemoteSlot {
    type Msg = RemoteSlotMsg;
    type State = (SlotId, ActorRef<HostsMsg>);
    type Arguments = (SlotId, ActorRef<HostsMsg>);

    async fn pre_start(
        &self,
        _myself: ActorRef<RemoteSlotMsg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<RemoteSlotMsg>,
        msg: RemoteSlotMsg,
        (slot, hosts): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        hosts
            .cast(HostsMsg::FromSlot(slot.clone(), Box::new(msg)))
            .map_err(|e: MessagingErr<HostsMsg>| format!("the hosts actor is gone: {e}"))?;
        Ok(())
    }
}
