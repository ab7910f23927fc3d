//! The pool as MCP resources, and notifications when they change.
//!
//! Listed: `pool://status`, `pool://slots`, `pool://budget`, `pool://context`,
//! `pool://projects`, `pool://approvals`. Templates:
//! `pool://slots/{id}`, `pool://results/{task_id}`, `pool://chains/{chain_id}`. Every one is
//! JSON. A client subscribed to a URI (with `resources/subscribe`, or `subscriptions/listen`
//! in protocol 2026-07-28) is sent `notifications/resources/updated` when what it names
//! changes, and `notifications/resources/list_changed` when slots come and go. The pool's
//! [`PoolEvent`]s say what changed; [`uris_of`] maps them to URIs.

use std::collections::HashSet;
use std::sync::Mutex;

use claude_pool_protocol::{ChainId, SlotId, TaskId};
use rmcp::model::{
    ReadResourceResult, Resource, ResourceContents, ResourceListChangedNotification,
    ResourceTemplate, ResourceUpdatedNotification, ResourceUpdatedNotificationParam,
    ServerNotification, SubscriptionFilter,
};
use rmcp::service::{Peer, SubscriptionContext};
use rmcp::{ErrorData, RoleServer};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::to_error_data;
use crate::events::PoolEvent;
use crate::pool::Pool;

const STATUS: &str = "pool://status";
const SLOTS: &str = "pool://slots";
const BUDGET: &str = "pool://budget";
const CONTEXT: &str = "pool://context";
const PROJECTS: &str = "pool://projects";
const APPROVALS: &str = "pool://approvals";
const TRANSCRIPT_PREFIX: &str = "pool://transcripts/";
const SLOT_PREFIX: &str = "pool://slots/";
const RESULT_PREFIX: &str = "pool://results/";
const CHAIN_PREFIX: &str = "pool://chains/";
const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

/// The listed resources.
pub(super) fn listed() -> Vec<Resource> {
    [
        (
            STATUS,
            "status",
            "Pool state: slots, task and chain counts, spend and budget",
        ),
        (SLOTS, "slots", "Every slot: status, task, pid, restarts"),
        (BUDGET, "budget", "Budget: cap, spend, remaining, in flight"),
        (CONTEXT, "context", "The shared context table"),
        (
            PROJECTS,
            "projects",
            "The job API's projects, their file, and why its last reload was refused",
        ),
        (
            APPROVALS,
            "approvals",
            "Workers' permission questions waiting for an answer (answer with pool_approve)",
        ),
    ]
    .into_iter()
    .map(|(uri, name, description)| {
        Resource::new(uri, name)
            .with_description(description)
            .with_mime_type(JSON)
    })
    .collect()
}

/// The templates.
pub(super) fn templates() -> Vec<ResourceTemplate> {
    [
        ("pool://slots/{id}", "slot", "One slot by id (slot-0, ...)"),
        (
            "pool://results/{task_id}",
            "result",
            "A task's status and result",
        ),
        (
            "pool://chains/{chain_id}",
            "chain",
            "A chain's progress and results",
        ),
        (
            "pool://transcripts/{task_id}",
            "transcript",
            "A task's transcript: its prompt and every stream-json event, as NDJSON (the first 4 MiB; pool_transcript pages)",
        ),
    ]
    .into_iter()
    .map(|(uri, name, description)| {
        let mime = if uri.starts_with(TRANSCRIPT_PREFIX) {
            NDJSON
        } else {
            JSON
        };
        ResourceTemplate::new(uri, name)
            .with_description(description)
            .with_mime_type(mime)
    })
    .collect()
}

/// What a URI names.
enum Target {
    Status,
    Slots,
    Budget,
    Context,
    Slot(SlotId),
    Result(TaskId),
    Chain(ChainId),
    Projects,
    Approvals,
    Transcript(String),
}

fn parse(uri: &str) -> Result<Target, ErrorData> {
    let nonempty = |rest: &str| (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_owned());
    let target = match uri {
        STATUS => Some(Target::Status),
        SLOTS => Some(Target::Slots),
        BUDGET => Some(Target::Budget),
        CONTEXT => Some(Target::Context),
        PROJECTS => Some(Target::Projects),
        APPROVALS => Some(Target::Approvals),
        _ => uri
            .strip_prefix(SLOT_PREFIX)
            .and_then(nonempty)
            .map(|s| Target::Slot(SlotId(s)))
            .or_else(|| {
                uri.strip_prefix(RESULT_PREFIX)
                    .and_then(nonempty)
                    .map(|t| Target::Result(TaskId(t)))
            })
            .or_else(|| {
                uri.strip_prefix(CHAIN_PREFIX)
                    .and_then(nonempty)
                    .map(|c| Target::Chain(ChainId(c)))
            })
            .or_else(|| {
                uri.strip_prefix(TRANSCRIPT_PREFIX)
                    .and_then(nonempty)
                    .map(Target::Transcript)
            }),
    };
    target.ok_or_else(|| {
        ErrorData::resource_not_found(
            format!(
                "unknown resource {uri:?}: the pool serves pool://status, pool://slots, pool://budget, pool://context, pool://projects, pool://approvals, pool://slots/{{id}}, pool://results/{{task_id}}, pool://chains/{{chain_id}} and pool://transcripts/{{task_id}}"
            ),
            Some(serde_json::json!({ "uri": uri })),
        )
    })
}

fn json<T: serde::Serialize>(uri: &str, value: &T) -> Result<ReadResourceResult, ErrorData> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    // The pool changes all the time: a client must not serve a read from its cache.
    Ok(
        ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type(JSON)])
            .with_ttl_ms(0),
    )
}

/// Reads `uri`; an unknown URI, or an id nothing has, is a resource-not-found error.
pub(super) async fn read(pool: &Pool, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let not_found = |e: crate::PoolError| match e {
        crate::PoolError::Stopped(_) => to_error_data(e),
        other => ErrorData::resource_not_found(
            other.to_string(),
            Some(serde_json::json!({ "uri": uri })),
        ),
    };
    match parse(uri)? {
        Target::Status => json(uri, &pool.status().await.map_err(to_error_data)?),
        Target::Slots => json(uri, &pool.status().await.map_err(to_error_data)?.slots),
        Target::Budget => json(uri, &pool.budget().await.map_err(to_error_data)?),
        Target::Context => json(uri, &pool.context_list().await.map_err(to_error_data)?),
        Target::Slot(id) => json(uri, &pool.slot(&id).await.map_err(not_found)?),
        Target::Result(id) => json(uri, &pool.result(&id).await.map_err(not_found)?),
        Target::Chain(id) => json(uri, &pool.chain_result(&id).await.map_err(not_found)?),
        Target::Projects => json(uri, &pool.projects_report()),
        Target::Approvals => json(
            uri,
            &claude_pool_protocol::approvals::ApprovalsReport {
                pending: pool.pending_approvals(None).await.map_err(to_error_data)?,
            },
        ),
        Target::Transcript(id) => {
            let page = pool
                .transcript(&id, 0, Some(4 * 1024 * 1024))
                .await
                .map_err(not_found)?;
            Ok(ReadResourceResult::new(vec![
                ResourceContents::text(page.ndjson, uri).with_mime_type(NDJSON),
            ])
            .with_ttl_ms(0))
        }
    }
}

/// The URIs whose content an event changes.
pub(super) fn uris_of(event: &PoolEvent) -> Vec<String> {
    match event {
        PoolEvent::Task { id, .. } => vec![format!("{RESULT_PREFIX}{id}"), STATUS.into()],
        PoolEvent::Slot { id, .. } | PoolEvent::SlotFailed { id, .. } => {
            vec![format!("{SLOT_PREFIX}{id}"), SLOTS.into(), STATUS.into()]
        }
        PoolEvent::SlotsChanged => vec![SLOTS.into(), STATUS.into()],
        PoolEvent::Chain { id, .. } => vec![format!("{CHAIN_PREFIX}{id}"), STATUS.into()],
        PoolEvent::Budget => vec![BUDGET.into(), STATUS.into()],
        PoolEvent::Context => vec![CONTEXT.into()],
        PoolEvent::Projects => vec![PROJECTS.into()],
        PoolEvent::Api => vec![STATUS.into()],
        PoolEvent::Approvals { task } => {
            vec![
                APPROVALS.into(),
                format!("{RESULT_PREFIX}{task}"),
                STATUS.into(),
            ]
        }
    }
}

fn updated(uri: String) -> ServerNotification {
    ServerNotification::ResourceUpdatedNotification(ResourceUpdatedNotification::new(
        ResourceUpdatedNotificationParam::new(uri),
    ))
}

fn list_changed() -> ServerNotification {
    ServerNotification::ResourceListChangedNotification(ResourceListChangedNotification {
        method: Default::default(),
        extensions: Default::default(),
    })
}

/// One connection's `resources/subscribe` subscriptions, and the task that forwards the
/// pool's events to it.
#[derive(Debug)]
pub(super) struct Subscriptions {
    pool: Pool,
    uris: std::sync::Arc<Mutex<HashSet<String>>>,
    forwarder: Mutex<Option<JoinHandle<()>>>,
}

impl Subscriptions {
    pub(super) fn new(pool: Pool) -> Self {
        Subscriptions {
            pool,
            uris: Default::default(),
            forwarder: Mutex::new(None),
        }
    }

    /// Subscribes to `uri`, which must name something that exists.
    pub(super) async fn subscribe(
        &self,
        uri: &str,
        peer: Peer<RoleServer>,
    ) -> Result<(), ErrorData> {
        read(&self.pool, uri).await?;
        self.uris
            .lock()
            .map_err(|_| ErrorData::internal_error("subscriptions poisoned", None))?
            .insert(uri.to_owned());
        let mut forwarder = self
            .forwarder
            .lock()
            .map_err(|_| ErrorData::internal_error("subscriptions poisoned", None))?;
        if forwarder.as_ref().is_none_or(JoinHandle::is_finished) {
            let mut events = self.pool.events();
            let uris = self.uris.clone();
            *forwarder = Some(tokio::spawn(async move {
                loop {
                    let changed = match events.recv().await {
                        Ok(event) => {
                            if event == PoolEvent::SlotsChanged
                                && peer.send_notification(list_changed()).await.is_err()
                            {
                                return;
                            }
                            uris_of(&event)
                        }
                        // Fell behind: tell every subscriber to read again.
                        Err(RecvError::Lagged(_)) => uris
                            .lock()
                            .map(|u| u.iter().cloned().collect())
                            .unwrap_or_default(),
                        Err(RecvError::Closed) => return,
                    };
                    let wanted: Vec<String> = match uris.lock() {
                        Ok(u) => changed.into_iter().filter(|c| u.contains(c)).collect(),
                        Err(_) => return,
                    };
                    for uri in wanted {
                        if peer.send_notification(updated(uri)).await.is_err() {
                            return; // the client is gone
                        }
                    }
                }
            }));
        }
        Ok(())
    }

    pub(super) fn unsubscribe(&self, uri: &str) {
        if let Ok(mut u) = self.uris.lock() {
            u.remove(uri);
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        if let Ok(mut f) = self.forwarder.lock()
            && let Some(h) = f.take()
        {
            h.abort();
        }
    }
}

/// The part of a `subscriptions/listen` filter this server serves: resource list changes,
/// and updates of URIs it knows.
pub(super) fn accepted(requested: &SubscriptionFilter) -> SubscriptionFilter {
    let mut f = SubscriptionFilter::new();
    if requested.resources_list_changed == Some(true) {
        f.resources_list_changed = Some(true);
    }
    f.resource_subscriptions = requested
        .resource_subscriptions
        .as_ref()
        .map(|uris| uris.iter().filter(|u| parse(u).is_ok()).cloned().collect());
    f
}

/// Serves one `subscriptions/listen` subscription until the client ends it.
pub(super) async fn listen(pool: Pool, context: SubscriptionContext) {
    let mut events = pool.events();
    let sink = context.sink().clone();
    let wanted: HashSet<String> = context
        .accepted()
        .resource_subscriptions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let lists = context.accepted().resources_list_changed == Some(true);
    loop {
        let event = tokio::select! {
            () = context.cancelled() => return,
            e = events.recv() => e,
        };
        let uris = match event {
            Ok(event) => {
                if lists
                    && event == PoolEvent::SlotsChanged
                    && sink.send(list_changed()).await.is_err()
                {
                    return;
                }
                uris_of(&event)
            }
            Err(RecvError::Lagged(_)) => wanted.iter().cloned().collect(),
            Err(RecvError::Closed) => return,
        };
        for uri in uris.into_iter().filter(|u| wanted.contains(u)) {
            if sink.send(updated(uri)).await.is_err() {
                return;
            }
        }
    }
}
