//! Shared test support: where the binaries are, scratch directories, a harness that drives
//! `claude-pool-server` over stdio with rmcp's own client, event-based process waits, and
//! the fake CLI's log.
//!
//! Nothing here sleeps to wait: process exits are awaited through pidfds, replies through
//! the MCP client, and every wait has a deadline and a message naming what never came.
#![allow(unsafe_code)] // pidfd_open(2) has no safe std API.
#![allow(missing_docs, clippy::unwrap_used)]

pub mod bench;
pub mod crash;
pub mod git;
pub mod http;
pub mod procs;
pub mod python;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use mock_anthropic;

/// The pinned CLI version the end-to-end tests run.
pub const CLAUDE_CLI_VERSION: &str = "2.1.329";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`, found from the running test executable (`target/<profile>/deps/…`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn built_binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// The server binary under test.
pub fn server_bin() -> PathBuf {
    built_binary("claude-pool-server")
}

/// The chaos harness binary.
pub fn chaos_bin() -> PathBuf {
    built_binary("claude-pool-chaos")
}

/// The fake `claude` fixture.
pub fn fake_claude_bin() -> PathBuf {
    std::env::var_os("CLAUDE_POOL_FAKE_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| built_binary("fake-claude"))
}

/// The pinned real CLI, if installed. With `CI=true` a missing CLI is a failure, never a skip.
pub fn real_claude_bin() -> Option<PathBuf> {
    let path = std::env::var_os("CLAUDE_POOL_REAL_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root()
                .join(".cache")
                .join(format!("claude-cli-{CLAUDE_CLI_VERSION}"))
                .join("node_modules/@anthropic-ai/claude-code-linux-x64/claude")
        });
    installed_or_skip(path, "the real Claude CLI", "scripts/install-claude.sh")
}

/// `path` if `what` is installed there. With `CI=true` a missing one is a failure, never a
/// skip; otherwise the skip is said on stderr (`None`).
pub fn installed_or_skip(path: PathBuf, what: &str, script: &str) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "CI=true but {what} is not installed at {}: run {script}",
        path.display()
    );
    eprintln!(
        "skipping: {what} is not installed at {} (run {script})",
        path.display()
    );
    None
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir()
            .join("claude-pool-tests")
            .join(format!("{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Awaits `fut` or panics naming what never came.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not happen within {limit:?}"),
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the fake CLI stamps its log with.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer it is given.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// FNV-1a 64, as the fake CLI's `MOCK_ECHO_STATS` computes it.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One line of the fake CLI's `FAKE_CLAUDE_LOG`.
pub fn read_fake_log(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
