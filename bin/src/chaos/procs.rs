//! What the chaos harness reads off the OS: the fake CLI's log (processes started, turns,
//! grandchildren), and whether any of them (or of their process groups) is still alive.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The binary `name` installed beside this one, else `name` (found on `PATH`).
pub fn beside_me(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
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

/// Reads the fake CLI's log as it grows: each call returns the events appended since the
/// last one (whole lines only).
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    /// A reader of `path` from its start.
    pub fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// The events appended since the last call.
    pub fn read(&mut self) -> Vec<Value> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let Ok(n) = f.read_to_end(&mut buf) else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let whole: Vec<u8> = self.partial.drain(..=end).collect();
        whole
            .split(|b| *b == b'\n')
            .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
            .collect()
    }
}

/// Every event of the fake CLI's log.
pub fn events(log: &Path) -> Vec<Value> {
    Tail::new(log).read()
}

/// Pids of the grandchildren the fake CLI logged (`MOCK_CHILD`).
pub fn children(events: &[Value]) -> Vec<u32> {
    events
        .iter()
        .filter(|e| e["event"] == "child")
        .filter_map(|e| e["child_pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
        .collect()
}
