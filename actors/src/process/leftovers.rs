//! Processes a killed server left behind on its store.
//!
//! When a server is SIGKILLed nothing in it runs: the kernel kills each slot's CLI
//! (`PR_SET_PDEATHSIG`), but not what that CLI started (a tool's shell, a `sleep`), which
//! lives on in the slot's process group with no one to kill it. Every process a slot starts
//! carries [`STORE_ENV`] naming the store file its server holds, and children inherit it.
//! The next server on that store holds its lock, so no live server owns such a process: it
//! kills them, group and all, before its first slot starts.
//!
//! The marker, not a recorded pid, decides: a pid number the kernel hands out again never
//! carries it. A descendant that drops its environment escapes the sweep.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;

/// Set on every process a slot starts when the pool has a store file: that file's path.
pub const STORE_ENV: &str = "CLAUDE_POOL_STORE";

/// The marker's value for a store file: its canonical path (as given if that fails).
pub fn marker(store: &Path) -> OsString {
    std::fs::canonicalize(store)
        .unwrap_or_else(|_| store.to_path_buf())
        .into_os_string()
}

/// Kills every process whose environment marks it as started for `store`, and its process
/// group; returns how many processes were found. This process and its ancestors are spared.
pub fn sweep(store: &Path) -> usize {
    let mut wanted = Vec::from(STORE_ENV.as_bytes());
    wanted.push(b'=');
    wanted.extend_from_slice(marker(store).as_encoded_bytes());
    let spared = ancestors();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut found = 0;
    let mut groups = BTreeSet::new();
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if spared.contains(&pid) {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|kv| kv == wanted.as_slice()) {
            continue;
        }
        found += 1;
        if let Some(pgid) = stat_field(pid, 2).filter(|g| *g > 1 && !spared.contains(g)) {
            groups.insert(pgid);
        }
        let _ = super::signal_process(pid, libc::SIGKILL);
    }
    for pgid in groups {
        super::kill_group(pgid, libc::SIGKILL);
    }
    found
}

/// Field `n` (0 = state) after the command name of `/proc/<pid>/stat`, as a number.
fn stat_field(pid: u32, n: usize) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(n)?
        .parse()
        .ok()
}

/// This process, its ancestors, and its own process group.
fn ancestors() -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    let mut pid = std::process::id();
    while pid > 1 && set.insert(pid) {
        match stat_field(pid, 1) {
            Some(ppid) => pid = ppid,
            None => break,
        }
    }
    if let Some(own_group) = stat_field(std::process::id(), 2) {
        set.insert(own_group);
    }
    set
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn a_marked_process_and_its_group_are_killed_and_the_sweeper_is_spared() {
        let dir = std::env::temp_dir().join(format!("leftovers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch");
        let store = dir.join("pool.db");
        std::fs::write(&store, b"").expect("store file");
        // A marked process leading its own group, with an unmarked child in that group.
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "env -u CLAUDE_POOL_STORE sleep 30 & wait"])
            .env(STORE_ENV, marker(&store))
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let other = std::process::Command::new("sleep")
            .arg("30")
            .env(STORE_ENV, "/some/other/pool.db")
            .spawn();
        let mut other = other.expect("spawn sleep");
        let pgid = leader.id();
        // Wait (bounded) until the child runs `sleep`: until then it is the shell's fork, or
        // `env`, and still carries the marker it was started with.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !group_runs(pgid, "sleep") {
            assert!(
                std::time::Instant::now() < deadline,
                "the shell's child never ran sleep in its group"
            );
            std::thread::yield_now();
        }
        assert_eq!(sweep(&store), 1, "one process carries this store's marker");
        let status = leader.wait().expect("wait the shell");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while members(pgid) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the unmarked child in the marked group outlived the sweep"
            );
            std::thread::yield_now();
        }
        assert!(
            other.try_wait().expect("try_wait").is_none(),
            "a process of another store was killed"
        );
        let _ = other.kill();
        let _ = other.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Whether a process of group `pgid` runs the program `comm`.
    fn group_runs(pgid: u32, comm: &str) -> bool {
        group_pids(pgid).into_iter().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
    }

    /// Live (non-zombie) processes in group `pgid`.
    fn members(pgid: u32) -> usize {
        group_pids(pgid).len()
    }

    fn group_pids(pgid: u32) -> Vec<u32> {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let rest = stat.rsplit_once(") ").map_or("", |r| r.1);
                !rest.starts_with('Z')
                    && rest.split_whitespace().nth(2).and_then(|g| g.parse().ok()) == Some(pgid)
            })
            .collect()
    }
}
