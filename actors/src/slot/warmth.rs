//! A slot's side of warm-when-it-pays: letting an idle process go when the scheduler says
//! so, warming up again when woken, and the memory check that replaces a process between
//! tasks.

use claude_pool_protocol::SlotStatus;
use ractor::ActorProcessingErr;

use super::phase::{Input, Phase};
use super::{AfterExit, SlotState};

impl SlotState {
    /// The idle timeout: an idle process with nothing assigned is stopped (its group
    /// killed and reaped as on any stop) and the slot stays cold. In any other phase the
    /// slot is not idle after all: what it reports next (ready, busy, down) tells the
    /// scheduler so.
    pub(super) fn on_release(&mut self) {
        let idle = self.phase == Phase::Idle
            && self.task.is_none()
            && self.unsent.is_none()
            && !self.retiring;
        if !idle {
            tracing::debug!(slot = %self.args.slot, phase = %self.phase, "not idle: not released");
            // The scheduler took it for cold: say where it really is (it announces itself
            // again once ready).
            self.visible.0 = SlotStatus::Cold;
            self.publish_status();
            return;
        }
        tracing::info!(slot = %self.args.slot, "idle past the idle timeout: releasing its process");
        self.plan_exit(AfterExit::Cool);
        self.go(Input::Release);
        self.begin_termination();
    }

    /// Warm up: a cold slot spawns a process; one still releasing respawns once the old
    /// process is gone. A warm slot has nothing to do.
    pub(super) fn on_wake(&mut self) -> Result<(), ActorProcessingErr> {
        if self.retiring {
            return Ok(());
        }
        match self.phase {
            Phase::Cold => {
                tracing::info!(slot = %self.args.slot, "waking: starting a process");
                self.on_spawn()
            }
            _ if self.after_exit == AfterExit::Cool => {
                self.after_exit = AfterExit::Respawn;
                self.publish_status();
                Ok(())
            }
            Phase::Idle if self.task.is_none() => {
                // Woken while (still) warm: announce it again in case it was taken for cold.
                self.became_idle();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether the live process group holds more memory than `--max-slot-rss` allows (read
    /// between tasks only: the check runs once the task's turn has ended).
    pub(super) fn over_memory(&self) -> bool {
        let (Some(limit), Some(pid)) = (
            self.args.config.max_slot_rss,
            self.process
                .as_ref()
                .map(crate::process::ClaudeProcess::pid),
        ) else {
            return false;
        };
        let rss = crate::process::memory::group_rss(&[pid])
            .get(&pid)
            .copied()
            .unwrap_or(0);
        if rss > limit {
            tracing::info!(slot = %self.args.slot, pid, rss, limit, "the process holds more memory than --max-slot-rss: replacing it");
            return true;
        }
        false
    }
}
