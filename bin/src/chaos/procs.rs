//! What the chaos harness reads off the OS: the fake CLI's started processes, and whether any
//! of them (or of their process groups) is still alive.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The `fake-claude` installed beside this binary, else the one on `PATH`.
pub fn fake_beside_me() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("fake-claude")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("fake-claude"))
}

/// Pids the fake CLI logged as started.
pub fn started(log: &Path) -> Vec<u32> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "start")
        .filter_map(|e| e["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
        .collect()
}

/// Alive and not a zombie.
pub fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Anything of `pid`'s process group left (the group id is the slot process's pid).
pub fn group_left(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(") ")?.1.to_owned();
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}
