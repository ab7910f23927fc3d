//! A chain's status and its report, derived from its steps' state.

use claude_pool_protocol::tools::{ChainReport, CurrentStep, StepReport};
use claude_pool_protocol::{ChainStatus, StepStatus};

use super::{ChainState, Stop};

impl ChainState {
    pub(super) fn status(&self) -> (ChainStatus, Option<String>) {
        if self.steps.iter().any(|s| s.status == StepStatus::Running) {
            return (ChainStatus::InProgress, None);
        }
        match &self.stop {
            Some(Stop::Abort(why)) => (ChainStatus::Failed, Some(why.clone())),
            Some(Stop::Cancel(why)) => (ChainStatus::Cancelled, Some(why.clone())),
            Some(Stop::Drain) if self.steps.iter().all(|s| s.status.is_done()) => {
                (ChainStatus::Completed, None)
            }
            Some(Stop::Drain) => (
                ChainStatus::Cancelled,
                Some("stopped by pool_drain: the remaining steps never ran".into()),
            ),
            None if self.steps.iter().all(|s| s.status.is_terminal()) => {
                (ChainStatus::Completed, None)
            }
            None => (ChainStatus::InProgress, None),
        }
    }

    pub(super) fn report(&mut self) -> ChainReport {
        let (status, error) = self.status();
        if status.is_terminal() {
            let reason = error.clone().unwrap_or_else(|| "not run".into());
            self.cancel_pending(&reason);
        }
        let plan = &self.args.plan;
        let steps: Vec<StepReport> = self
            .steps
            .iter()
            .zip(&plan.steps)
            .map(|(s, p)| StepReport {
                name: p.name.clone(),
                status: s.status,
                output: s
                    .output
                    .clone()
                    .filter(|_| s.status == StepStatus::Completed),
                spend_usd: s.attempts.iter().map(|a| a.spend_usd).sum(),
                error: s
                    .error
                    .clone()
                    .filter(|_| s.status != StepStatus::Completed),
                task_id: s.attempts.last().map(|a| a.task_id.clone()),
                attempts: s.attempts.clone(),
                depends_on: p.deps.iter().map(|&d| plan.steps[d].name.clone()).collect(),
            })
            .collect();
        let running_steps: Vec<String> = steps
            .iter()
            .filter(|s| s.status == StepStatus::Running)
            .map(|s| s.name.clone())
            .collect();
        let current_step = steps
            .iter()
            .find(|s| s.status == StepStatus::Running)
            .or_else(|| steps.iter().find(|s| s.status == StepStatus::Failed))
            .or_else(|| steps.iter().find(|s| s.status == StepStatus::Pending))
            .map(|s| CurrentStep {
                name: s.name.clone(),
                status: s.status,
            });
        let final_output = (status == ChainStatus::Completed)
            .then(|| {
                steps
                    .iter()
                    .rev()
                    .find(|s| s.status == StepStatus::Completed)
                    .and_then(|s| s.output.clone())
            })
            .flatten();
        ChainReport {
            chain_id: self.args.id.clone(),
            status,
            completed_steps: steps.iter().filter(|s| s.status.is_done()).count(),
            total_steps: steps.len(),
            current_step,
            running_steps,
            total_spend: steps.iter().map(|s| s.spend_usd).sum(),
            steps,
            final_output,
            error,
        }
    }
}
