//! Approvals through the embedding API: the questions workers wait on, and answering them.

use claude_pool_protocol::TaskId;
use claude_pool_protocol::approvals::{Answer, ApprovalRequest, ApproveReport};
use tokio::sync::broadcast;

use super::Pool;
use crate::approvals::{ApprovalStats, ApprovalsMsg};
use crate::error::PoolError;

impl Pool {
    /// Every approval request asked from now on, as it is asked (a rule never asks). A
    /// reader that falls behind is told it lagged; [`Pool::pending_approvals`] has the
    /// current set.
    pub fn approvals(&self) -> broadcast::Receiver<ApprovalRequest> {
        self.events.approval_requests()
    }

    /// The requests waiting for an answer, oldest first; of one task when given.
    pub async fn pending_approvals(
        &self,
        task: Option<&TaskId>,
    ) -> Result<Vec<ApprovalRequest>, PoolError> {
        let task = task.cloned();
        self.ask(&self.refs.approvals, |reply| ApprovalsMsg::List {
            task,
            reply,
        })
        .await
    }

    /// The pending requests (of one task, when given); with none, waits up to `limit` for
    /// one to be asked, and answers with what is pending then (possibly nothing).
    pub async fn wait_approvals(
        &self,
        task: Option<&TaskId>,
        limit: std::time::Duration,
    ) -> Result<Vec<ApprovalRequest>, PoolError> {
        let mut asked = self.approvals();
        let now = self.pending_approvals(task).await?;
        if !now.is_empty() {
            return Ok(now);
        }
        let wanted = |r: &ApprovalRequest| task.is_none_or(|t| &r.task_id == t);
        let _ = tokio::time::timeout(limit, async {
            loop {
                match asked.recv().await {
                    Ok(r) if wanted(&r) => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
        .await;
        self.pending_approvals(task).await
    }

    /// Answers request `request_id`; the audit trail says `api`.
    pub async fn approve(
        &self,
        request_id: &str,
        answer: Answer,
    ) -> Result<ApproveReport, PoolError> {
        self.approve_as(request_id, answer, "api").await
    }

    /// Answers request `request_id`, recording `by` as who answered (`client:<session>`,
    /// `page`, `tool:pool_approve`, …). The first answer wins; a later one, or one for a
    /// request that timed out or whose task ended, is refused.
    pub async fn approve_as(
        &self,
        request_id: &str,
        answer: Answer,
        by: &str,
    ) -> Result<ApproveReport, PoolError> {
        let request_id = request_id.to_owned();
        let by = by.to_owned();
        self.ask(&self.refs.approvals, |reply| ApprovalsMsg::Answer {
            request_id,
            answer,
            by,
            reply: Some(reply),
        })
        .await?
        .map_err(PoolError::InvalidArgument)
    }

    /// Counts of pending and decided requests.
    pub async fn approval_stats(&self) -> Result<ApprovalStats, PoolError> {
        self.ask(&self.refs.approvals, ApprovalsMsg::Stats).await
    }
}
