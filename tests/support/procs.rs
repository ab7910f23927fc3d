//! Process checks: exits awaited through pidfds (an event, not a poll), and the state of
//! a pid or a process group read from /proc.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// Whether `/proc/<pid>` exists (a zombie still exists; a reaped process does not).
pub fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The process state letter (`R`, `S`, `Z`, …) of `pid`, if it exists.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// Pids whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        // fields after the comm: state ppid pgrp ...
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

/// Live (non-zombie) members of the group.
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    group_members(pgid)
        .into_iter()
        .filter(|p| state(*p) != Some('Z'))
        .collect()
}

/// Waits until `pid` has exited (it may still be an unreaped zombie), with a deadline.
pub async fn wait_exit(pid: u32, limit: Duration, what: &str) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        return; // already gone
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the fd is owned here and stays open for as long as the AsyncFd lives.
    let Ok(afd) = (unsafe { AsyncFd::register(owned) }) else {
        panic!("cannot register a pidfd with the reactor");
    };
    crate::within(limit, what, async {
        let _ = afd.readable().await;
    })
    .await;
}

/// Asserts that `pid` is gone and reaped, waiting (by pidfd) up to `limit` for its exit.
/// Reaping is its parent's job: a zombie left behind fails the check.
pub async fn assert_gone(pid: u32, limit: Duration, what: &str) {
    wait_exit(pid, limit, what).await;
    if let Some(s) = state(pid) {
        assert_eq!(s, 'Z', "{what}: pid {pid} still exists in state {s}");
        panic!("{what}: pid {pid} exited but was never reaped (zombie)");
    }
}

/// Asserts that no live process is left in group `pgid`, waiting for each by pidfd.
pub async fn assert_group_gone(pgid: u32, limit: Duration, what: &str) {
    for pid in group_members(pgid) {
        wait_exit(
            pid,
            limit,
            &format!("{what}: exit of pid {pid} in group {pgid}"),
        )
        .await;
    }
    let live = live_group_members(pgid);
    assert!(
        live.is_empty(),
        "{what}: group {pgid} still has live processes {live:?}"
    );
}

/// Sends `signal` to `pid`.
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory effects.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Pids whose parent is `ppid` (its children now, zombies included).
pub fn children(ppid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(')')?.1.to_owned();
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(ppid)
        })
        .collect()
}
