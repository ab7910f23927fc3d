//! The resident memory of process groups, read from `/proc`: one walk of `/proc` sums the
//! RSS of every process by its process group. A slot's Claude process leads its own group,
//! so its group's figure is the CLI with everything it started. Pages shared between
//! members count once per member, as `ps` counts them.

use std::collections::HashMap;

/// Bytes per page for `/proc/<pid>/stat`'s rss field.
fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the running system and touches no memory of ours.
    #[allow(unsafe_code)]
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|n| *n > 0).unwrap_or(4096)
}

/// The resident bytes of each group in `groups` (a group with no live member is absent).
pub fn group_rss(groups: &[u32]) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    if groups.is_empty() {
        return out;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    let page = page_size();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        // After the command: state (0), ppid (1), pgrp (2), …, rss in pages (21).
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(pgrp), Some(rss)) = (
            fields.get(2).and_then(|f| f.parse::<u32>().ok()),
            fields.get(21).and_then(|f| f.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if groups.contains(&pgrp) {
            *out.entry(pgrp).or_insert(0) += rss * page;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn a_group_counts_its_leader_and_its_children() {
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let pgid = leader.id();
        // Both sleeps are in the group once `sh` has forked them; their RSS is not zero.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let alone = loop {
            let members = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.to_owned()))
                        .and_then(|r| r.split_whitespace().nth(2).map(str::to_owned))
                        == Some(pgid.to_string())
                })
                .count();
            if members == 3 || std::time::Instant::now() > deadline {
                break members;
            }
            std::thread::yield_now();
        };
        assert_eq!(alone, 3, "sh and its two sleeps");
        let rss = group_rss(&[pgid]);
        // The leader alone, read from another file: the group holds at least that much.
        let leader_kib: u64 = std::fs::read_to_string(format!("/proc/{pgid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS");
        assert!(
            rss[&pgid] >= leader_kib * 1024 && leader_kib > 0,
            "{rss:?} vs {leader_kib} KiB"
        );
        assert!(!rss.contains_key(&1), "only the groups asked for");
        let _ = leader.kill();
        crate::process::kill_group(pgid, libc::SIGKILL);
        let _ = leader.wait();
    }
}
