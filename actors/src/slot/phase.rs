//! The slot state machine, as a pure function.
//!
//! [`next`] is the single source of truth for which phase follows which: the slot actor asks
//! it before every change, and a test checks that the edge list in `supervision-tree.md` is
//! exactly the set of edges it allows. Shutdown is outside the machine: the actor's
//! `post_stop` kills the process group whatever the phase.

use std::fmt;

/// Where a slot's process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// A process was spawned and its warm-up `/clear` sent; waiting for its result.
    Spawning,
    /// Warm, clean conversation, announced to the scheduler.
    Idle,
    /// A task is assigned; control requests (model, permission mode) are in flight.
    Configuring,
    /// The task's prompt was written (with a store file: is written once the store has
    /// committed the start); waiting for the turn's result.
    Running,
    /// Cancel or deadline: the interrupt was sent; waiting (with a grace) for the result.
    Interrupting,
    /// The process group got SIGTERM (then SIGKILL after a grace); waiting for the exit.
    Terminating,
    /// The task ended; a `/clear` was sent; waiting for its result.
    Clearing,
    /// The process is gone and reaped.
    Stopped,
    /// Released after being idle: no process, nothing to reap; a wake spawns one.
    Cold,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    /// The warm-up `/clear` answered.
    Handshaken,
    /// The process was started to continue a conversation (`--resume`): no warm-up, the
    /// task's prompt was written at once.
    Resumed,
    /// A task arrived that the process can run as it is.
    Assigned,
    /// A task arrived that needs a model or permission-mode change first.
    AssignedNeedsControl,
    /// A task arrived that needs a process with other fixed flags (effort).
    AssignedNeedsRespawn,
    /// Every control request was answered with success.
    ControlsDone,
    /// A control request was refused; the task fails, the process is untouched.
    ControlRejected,
    /// The turn's result arrived.
    TurnEnded,
    /// The turn's result arrived and the process has served its quota of tasks.
    TurnEndedRecycle,
    /// The post-task `/clear` answered.
    ClearDone,
    /// A caller cancelled the task.
    Cancel,
    /// The task's deadline passed.
    Deadline,
    /// The warm-up did not answer within the startup timeout.
    StartupTimedOut,
    /// A grace period ran out.
    GraceExpired,
    /// The process misbehaved: a line that is not stream-json, or stdin broke.
    Broken,
    /// The process exited (it has been reaped).
    ProcessExited,
    /// A replacement process was spawned.
    Respawn,
    /// The slot is being removed (scale-down) and has no task: stop the process.
    Retire,
    /// The scheduler lets the idle process go (idle timeout).
    Release,
    /// The released process is gone and reaped: the slot is cold.
    Cooled,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 9] = [
        Phase::Spawning,
        Phase::Idle,
        Phase::Configuring,
        Phase::Running,
        Phase::Interrupting,
        Phase::Terminating,
        Phase::Clearing,
        Phase::Stopped,
        Phase::Cold,
    ];

    /// True while a process exists.
    pub fn has_process(self) -> bool {
        !matches!(self, Phase::Stopped | Phase::Cold)
    }
}

impl Input {
    /// Every input.
    pub const ALL: [Input; 20] = [
        Input::Handshaken,
        Input::Resumed,
        Input::Assigned,
        Input::AssignedNeedsControl,
        Input::AssignedNeedsRespawn,
        Input::ControlsDone,
        Input::ControlRejected,
        Input::TurnEnded,
        Input::TurnEndedRecycle,
        Input::ClearDone,
        Input::Cancel,
        Input::Deadline,
        Input::StartupTimedOut,
        Input::GraceExpired,
        Input::Broken,
        Input::ProcessExited,
        Input::Respawn,
        Input::Retire,
        Input::Release,
        Input::Cooled,
    ];
}

/// The phase that follows `phase` on `input`, or `None` when the input means nothing there
/// (a late event from a turn already given up, for example), which the actor ignores.
pub fn next(phase: Phase, input: Input) -> Option<Phase> {
    use Input as I;
    use Phase as P;
    let to = match (phase, input) {
        (P::Spawning, I::Handshaken) => P::Idle,
        (P::Spawning, I::Resumed) => P::Running,
        // A task held for a respawn is finished on the spot; the warm-up goes on.
        (P::Spawning, I::Cancel | I::Deadline) => P::Spawning,
        (P::Spawning, I::StartupTimedOut) => P::Terminating,

        (P::Idle, I::Assigned) => P::Running,
        (P::Idle, I::AssignedNeedsControl) => P::Configuring,
        (P::Idle, I::AssignedNeedsRespawn) => P::Terminating,

        (P::Configuring, I::ControlsDone) => P::Running,
        (P::Configuring, I::ControlRejected) => P::Idle,
        (P::Configuring, I::Cancel | I::Deadline) => P::Terminating,

        (P::Running, I::TurnEnded) => P::Clearing,
        (P::Running, I::TurnEndedRecycle) => P::Terminating,
        (P::Running, I::Cancel | I::Deadline) => P::Interrupting,

        (P::Interrupting, I::TurnEnded | I::GraceExpired) => P::Terminating,

        // SIGTERM's grace ran out: SIGKILL, keep waiting for the exit.
        (P::Terminating, I::GraceExpired) => P::Terminating,

        (P::Clearing, I::ClearDone) => P::Idle,

        (P::Spawning | P::Idle | P::Clearing, I::Retire) => P::Terminating,

        (
            P::Spawning | P::Idle | P::Configuring | P::Running | P::Interrupting | P::Clearing,
            I::Broken,
        ) => P::Terminating,

        (
            P::Spawning
            | P::Idle
            | P::Configuring
            | P::Running
            | P::Interrupting
            | P::Terminating
            | P::Clearing,
            I::ProcessExited,
        ) => P::Stopped,

        (P::Stopped, I::Respawn) => P::Spawning,

        // Idle release: only an idle process is let go; a wake spawns a new one.
        (P::Idle, I::Release) => P::Terminating,
        (P::Stopped, I::Cooled) => P::Cold,
        (P::Cold, I::Respawn) => P::Spawning,
        (P::Cold, I::Retire) => P::Stopped,
        _ => return None,
    };
    Some(to)
}

/// Every allowed edge, in a stable order.
pub fn edges() -> Vec<(Phase, Input, Phase)> {
    let mut out = Vec::new();
    for from in Phase::ALL {
        for input in Input::ALL {
            if let Some(to) = next(from, input) {
                out.push((from, input, to));
            }
        }
    }
    out
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_round_trip_returns_the_slot_to_idle() {
        let path = [
            (Phase::Spawning, Input::Handshaken, Phase::Idle),
            (Phase::Idle, Input::Assigned, Phase::Running),
            (Phase::Running, Input::TurnEnded, Phase::Clearing),
            (Phase::Clearing, Input::ClearDone, Phase::Idle),
        ];
        for (from, input, to) in path {
            assert_eq!(next(from, input), Some(to), "{from} --{input}-->");
        }
    }

    #[test]
    fn cancel_and_deadline_always_end_in_a_dead_process() {
        for from in [Phase::Configuring, Phase::Running] {
            for input in [Input::Cancel, Input::Deadline] {
                let mut p = next(from, input).expect("handled");
                if p == Phase::Interrupting {
                    p = next(p, Input::GraceExpired).expect("grace");
                }
                assert_eq!(p, Phase::Terminating);
                assert_eq!(next(p, Input::ProcessExited), Some(Phase::Stopped));
            }
        }
    }

    #[test]
    fn every_live_phase_survives_an_unexpected_exit() {
        for from in Phase::ALL {
            let want = if from.has_process() {
                Some(Phase::Stopped)
            } else {
                None
            };
            assert_eq!(next(from, Input::ProcessExited), want, "{from}");
        }
    }

    #[test]
    fn only_an_idle_process_is_released_and_a_cold_slot_wakes_or_leaves() {
        for from in Phase::ALL {
            let want = (from == Phase::Idle).then_some(Phase::Terminating);
            assert_eq!(next(from, Input::Release), want, "{from}");
        }
        assert_eq!(next(Phase::Stopped, Input::Cooled), Some(Phase::Cold));
        assert_eq!(next(Phase::Cold, Input::Respawn), Some(Phase::Spawning));
        assert_eq!(next(Phase::Cold, Input::Retire), Some(Phase::Stopped));
        for input in [
            Input::Assigned,
            Input::Cancel,
            Input::Broken,
            Input::ProcessExited,
        ] {
            assert_eq!(next(Phase::Cold, input), None, "{input}");
        }
    }

    #[test]
    fn late_events_are_ignored() {
        assert_eq!(next(Phase::Idle, Input::TurnEnded), None);
        assert_eq!(next(Phase::Terminating, Input::TurnEnded), None);
        assert_eq!(next(Phase::Clearing, Input::Cancel), None);
        assert_eq!(next(Phase::Stopped, Input::Broken), None);
    }
}
