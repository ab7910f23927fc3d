//! The context table actor: key-value notes the coordinator shares with every task.
//!
//! **Place in the tree.** Child of the root supervisor. Not restarted: a fresh one would
//! silently forget the table (fail-stop, like the scheduler).
//!
//! **Owns** the [`table::ContextTable`]. Every change publishes the rendered preamble on a
//! `watch` channel before the caller is answered; the scheduler reads the channel when it
//! hands a task to a slot, so every task handed out after a change sees the new table and a
//! deleted key never reaches a later task. How the table reaches Claude, and why, is in
//! [`table`].

pub mod table;

use std::collections::BTreeMap;
use std::sync::Arc;

use claude_pool_protocol::tools::ContextEntry;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;

use crate::error::PoolError;
use crate::events::{EventBus, PoolEvent};
use crate::store::actor::StoreWriter;
use crate::store::db::Write;
use table::ContextTable;

/// The preamble every task handed out now gets (`None` while the table is empty).
pub type Preamble = Option<Arc<str>>;

/// Behaviour of the context table.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContextActor;

/// What the context table starts with.
#[derive(Debug)]
pub struct ContextArgs {
    /// Where the current preamble is published for the scheduler.
    pub preamble: watch::Sender<Preamble>,
    /// Where changes are announced.
    pub events: EventBus,
    /// Where the table is kept durable, if anywhere.
    pub store: Option<StoreWriter>,
    /// The table as the store held it at start.
    pub restored: Vec<(String, String)>,
}

/// Messages the context table handles.
#[derive(Debug)]
pub enum ContextMsg {
    /// Set a key.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The entry as stored, or why it was refused.
        reply: RpcReplyPort<Result<ContextEntry, PoolError>>,
    },
    /// One key's value.
    Get(String, RpcReplyPort<Option<String>>),
    /// Every entry.
    List(RpcReplyPort<BTreeMap<String, String>>),
    /// Remove a key; answers whether it existed.
    Delete(String, RpcReplyPort<bool>),
}

/// The context table's state.
#[derive(Debug)]
pub struct ContextState {
    table: ContextTable,
    preamble: watch::Sender<Preamble>,
    events: EventBus,
    store: Option<StoreWriter>,
}

impl Actor for ContextActor {
    type Msg = ContextMsg;
    type State = ContextState;
    type Arguments = ContextArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ContextMsg>,
        args: ContextArgs,
    ) -> Result<ContextState, ActorProcessingErr> {
        let mut table = ContextTable::default();
        for (key, value) in &args.restored {
            if let Err(why) = table.set(key, value) {
                tracing::warn!(%key, %why, "a stored context entry was dropped");
            }
        }
        let state = ContextState {
            table,
            preamble: args.preamble,
            events: args.events,
            store: args.store,
        };
        if !args.restored.is_empty() {
            state.preamble.send_replace(state.table.preamble());
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<ContextMsg>,
        msg: ContextMsg,
        state: &mut ContextState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ContextMsg::Set { key, value, reply } => {
                let answer = match state.table.set(&key, &value) {
                    Ok(()) => {
                        state.changed();
                        if let Some(store) = &state.store {
                            store.write(Write::ContextSet {
                                key: key.clone(),
                                value: value.clone(),
                                at_ms: crate::clock::now_ms(),
                            });
                        }
                        Ok(ContextEntry { key, value })
                    }
                    Err(why) => Err(PoolError::InvalidArgument(why)),
                };
                let _ = reply.send(answer);
            }
            ContextMsg::Get(key, reply) => {
                let _ = reply.send(state.table.get(&key).map(str::to_owned));
            }
            ContextMsg::List(reply) => {
                let _ = reply.send(state.table.entries().clone());
            }
            ContextMsg::Delete(key, reply) => {
                let deleted = state.table.delete(&key);
                if deleted {
                    state.changed();
                    if let Some(store) = &state.store {
                        store.write(Write::ContextDelete { key });
                    }
                }
                let _ = reply.send(deleted);
            }
        }
        Ok(())
    }
}

impl ContextState {
    /// Publishes the new preamble (before the caller is answered) and announces the change.
    fn changed(&mut self) {
        self.preamble.send_replace(self.table.preamble());
        self.events.publish(PoolEvent::Context);
    }
}
