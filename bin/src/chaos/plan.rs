//! The workload and its fault schedule: task `i`'s prompt, forced usage and fault are a
//! function of the seed and `i` alone, so a seed replays the same schedule at any speed.

use std::time::Duration;

/// The faults the harness injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum FaultKind {
    /// SIGKILL of the slot's process mid-turn.
    Kill,
    /// SIGSTOP of the slot's process mid-turn, past the task's 1 s deadline.
    Hang,
    /// The turn ends in an API error result.
    ApiError,
    /// The process exits mid-turn.
    Crash,
    /// A non-JSON line on the process's stdout mid-turn.
    Garbage,
    /// `cancel` of the task while it runs.
    Cancel,
    /// SIGKILL of the slot's process, whose next start is then delayed by 300 ms.
    SlowStart,
    /// SIGKILL of the whole server mid-turn, then a restart on the same store (an external
    /// server only).
    ServerKill,
    /// SIGKILL of a slot host (the task's own, when it runs on one), then a new host of the
    /// same name (`--hosts` only).
    HostKill,
    /// SIGSTOP of a slot host past the host deadline, then SIGCONT (`--hosts` only).
    HostStop,
    /// A slot host's link cut past the host deadline, then restored (`--hosts`, as root).
    HostCut,
}

impl FaultKind {
    /// Its name on the command line and in the verdict.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Hang => "hang",
            FaultKind::ApiError => "api-error",
            FaultKind::Crash => "crash",
            FaultKind::Garbage => "garbage",
            FaultKind::Cancel => "cancel",
            FaultKind::SlowStart => "slow-start",
            FaultKind::ServerKill => "server-kill",
            FaultKind::HostKill => "host-kill",
            FaultKind::HostStop => "host-stop",
            FaultKind::HostCut => "host-cut",
        }
    }

    /// Injected by the harness once the task's turn is seen starting (the others travel in
    /// the prompt).
    pub fn on_start(self) -> bool {
        matches!(
            self,
            FaultKind::Kill
                | FaultKind::Hang
                | FaultKind::Cancel
                | FaultKind::SlowStart
                | FaultKind::ServerKill
                | FaultKind::HostKill
                | FaultKind::HostStop
                | FaultKind::HostCut
        )
    }

    /// Hits a whole slot host.
    pub fn on_host(self) -> bool {
        matches!(
            self,
            FaultKind::HostKill | FaultKind::HostStop | FaultKind::HostCut
        )
    }

    /// Takes the slot's process (or the server) down, so the slot has to recover.
    pub fn takes_a_slot_down(self) -> bool {
        matches!(
            self,
            FaultKind::Kill
                | FaultKind::Hang
                | FaultKind::Crash
                | FaultKind::SlowStart
                | FaultKind::ServerKill
                | FaultKind::HostKill
                | FaultKind::HostStop
                | FaultKind::HostCut
        )
    }
}

/// The fault kinds of an embedded pool (all but `server-kill`).
pub const EMBEDDED_FAULTS: &str = "kill,hang,api-error,crash,garbage,cancel,slow-start";

/// splitmix64: a small, fixed generator, so a seed means the same schedule everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the schedule is drawn from.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The seed.
    pub seed: u64,
    /// Share of tasks that get a fault.
    pub fault_rate: f64,
    /// Kinds to draw from.
    pub faults: Vec<FaultKind>,
}

/// One planned task.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The exact output a completed run must have.
    pub token: String,
    /// Forced input tokens.
    pub input: u64,
    /// Forced output tokens.
    pub output: u64,
    /// The fault it gets, if any.
    pub fault: Option<FaultKind>,
}

impl Schedule {
    /// Task `i`'s plan.
    pub fn plan(&self, i: usize) -> Plan {
        let mut rng = Rng(self.seed ^ (i as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
        let fault = (!self.faults.is_empty() && rng.unit() < self.fault_rate)
            .then(|| self.faults[(rng.next() % self.faults.len() as u64) as usize]);
        Plan {
            token: format!("chaos-{}-{i}", self.seed),
            input: 100 + rng.next() % 900,
            output: 10 + rng.next() % 90,
            fault,
        }
    }

    /// The plan index a prompt (or the head of one, as the fake CLI logs it) belongs to.
    pub fn index_of(&self, prompt: &str) -> Option<usize> {
        let token = prompt.rsplit("MOCK_TEXT: ").next()?;
        let rest = token.strip_prefix(&format!("chaos-{}-", self.seed))?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }
}

impl Plan {
    /// The prompt: its fault's directive, its forced usage, its token last.
    pub fn prompt(&self) -> String {
        let directive = match self.fault {
            Some(FaultKind::ApiError) => "MOCK_STATUS:500",
            Some(FaultKind::Crash) => "MOCK_CRASH_MID:1",
            Some(FaultKind::Garbage) => "MOCK_GARBAGE",
            // Mid-turn for longer than its host is stopped or cut off (and done in a while
            // when the host hit is another).
            Some(f) if f.on_host() => "MOCK_CHILD:8",
            // Long enough for the fault to land mid-turn, and with a grandchild in the
            // process group, which must not outlive the slot.
            Some(f) if f.on_start() => "MOCK_CHILD:20",
            _ => "",
        };
        format!(
            "{directive} MOCK_USAGE:{},{} MOCK_TEXT: {}",
            self.input, self.output, self.token
        )
    }

    /// Its deadline: 1 s for a hang, else far beyond any turn of the workload.
    pub fn timeout(&self) -> Duration {
        match self.fault {
            Some(FaultKind::Hang) => Duration::from_secs(1),
            _ => Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_names_its_own_plan_and_no_other() {
        let s = Schedule {
            seed: 7,
            fault_rate: 0.5,
            faults: vec![FaultKind::Kill, FaultKind::Crash],
        };
        for i in [0, 1, 12, 123] {
            assert_eq!(s.index_of(&s.plan(i).prompt()), Some(i));
        }
        assert_eq!(
            s.index_of("MOCK_TEXT: chaos-8-1"),
            None,
            "another seed's task"
        );
        assert_eq!(s.index_of("/clear"), None);
    }
}
