//! The Claude process driver: spawns one persistent
//! `claude -p --input-format stream-json --output-format stream-json --verbose` process in its
//! own process group and turns its pipes into [`ProcessEvent`]s.
//!
//! Ownership of the OS resources:
//! - a writer task owns stdin; lines are queued on a channel so the owning actor never blocks
//!   on a full pipe; dropping the [`ClaudeProcess`] closes stdin (EOF);
//! - a reader task owns stdout and parses one stream-json event per line;
//! - a stderr task keeps the last few KiB for error messages;
//! - a waiter task owns the `Child`: it always reaps it, then kills whatever is left in the
//!   process group (tool subprocesses), and only then reports [`ProcessEvent::Exited`] — so
//!   when the owner hears of an exit, nothing of that process is left.
//!
//! `Drop` kills the whole group with SIGKILL unless it was already reaped: ractor does not
//! run `post_stop` when an actor fails or is killed, so the process cannot outlive its owner.
#![allow(unsafe_code)] // kill(2) on a process group has no safe std API.

/// The environment variable naming a process's slot (set in every slot's process).
pub const SLOT_ENV: &str = "CLAUDE_POOL_SLOT";

pub mod leftovers;
pub mod memory;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use claude_pool_protocol::stream::{ClaudeEvent, ParseError, parse_line};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStderr, ChildStdout, Command};

use tokio::sync::{mpsc, watch};

/// The longest stdout line accepted (a result carrying a very long answer fits easily).
const MAX_LINE_BYTES: u64 = 256 * 1024 * 1024;
/// After the process exited, how long its stdout may stay open (held by an escaped
/// descendant) before the exit is reported anyway.
const STDOUT_DRAIN: Duration = Duration::from_secs(2);
/// How much of stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 4096;

/// Everything needed to start one process.
#[derive(Clone)]
pub struct SpawnSpec {
    /// The `claude` executable.
    pub program: PathBuf,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// The complete environment of the child (nothing else is inherited).
    pub env: Vec<(OsString, OsString)>,
    /// Working directory, if not the server's.
    pub cwd: Option<PathBuf>,
    /// Whether each event comes with its stdout line as printed (for transcripts).
    pub keep_lines: bool,
}

impl fmt::Debug for SpawnSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The environment carries API keys: show names only.
        let names: Vec<_> = self.env.iter().map(|(k, _)| k.to_string_lossy()).collect();
        f.debug_struct("SpawnSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env_names", &names)
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
    /// The end of what it wrote on stderr.
    pub stderr_tail: String,
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}")?,
            (None, Some(sig)) => write!(f, "was killed by {}", signal_name(sig))?,
            (None, None) => write!(f, "ended")?,
        }
        let tail = self.stderr_tail.trim();
        if !tail.is_empty() {
            let last: Vec<&str> = tail.lines().rev().take(3).collect();
            let last: Vec<&str> = last.into_iter().rev().collect();
            write!(f, "; stderr: {}", last.join(" | "))?;
        }
        Ok(())
    }
}

/// The conventional name of a signal number.
pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGPIPE => "SIGPIPE".into(),
        libc::SIGTERM => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

/// What a process reports to its owner.
#[derive(Debug)]
pub enum ProcessEvent {
    /// One stdout line, parsed, and the line itself when the spawn asked to keep lines.
    Event(ClaudeEvent, Option<Vec<u8>>),
    /// A stdout line that is not stream-json.
    BadLine {
        /// The start of the line, lossily decoded.
        line: String,
        /// Why it was rejected.
        error: ParseError,
    },
    /// Writing to stdin failed (the process closed it or died).
    WriteFailed(String),
    /// The process exited, was reaped, and its group was swept.
    Exited(ExitInfo),
}

/// A running Claude process. Dropping it closes stdin and kills the process group.
#[derive(Debug)]
pub struct ClaudeProcess {
    pid: u32,
    stdin: Option<mpsc::UnboundedSender<String>>,
    reaped: Arc<AtomicBool>,
    exited: watch::Receiver<bool>,
}

impl ClaudeProcess {
    /// Spawns the process in a new process group and starts its I/O tasks. `on_event` is
    /// called from those tasks for every [`ProcessEvent`]; [`ProcessEvent::Exited`] is last.
    pub fn spawn<F>(spec: &SpawnSpec, on_event: F) -> io::Result<ClaudeProcess>
    where
        F: Fn(ProcessEvent) + Send + Sync + 'static,
    {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent. With
        // it the kernel SIGKILLs the child if the server dies without stopping it (kill -9),
        // so a crashed server leaves no Claude process working behind it.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start {}: {e}", spec.program.display()),
            )
        })?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("child has no pid"))?;
        let on_event = Arc::new(on_event);
        let reaped = Arc::new(AtomicBool::new(false));

        let (tx, rx) = mpsc::unbounded_channel::<String>();
        if let Some(stdin) = child.stdin.take() {
            tokio::spawn(write_stdin(stdin, rx, on_event.clone()));
        }
        let stdout_task = child
            .stdout
            .take()
            .map(|out| tokio::spawn(read_stdout(out, spec.keep_lines, on_event.clone())));
        let stderr_task = child
            .stderr
            .take()
            .map(|err| tokio::spawn(read_stderr_tail(err)));

        let reaped_flag = reaped.clone();
        let (exit_tx, exited) = watch::channel(false);
        tokio::spawn(async move {
            let status = child.wait().await;
            reaped_flag.store(true, Ordering::SeqCst);
            // The leader is gone; take any tool subprocess left in its group with it.
            kill_group(pid, libc::SIGKILL);
            // Every stdout event is delivered before the exit is. A descendant that left the
            // group (setsid) could hold stdout open forever: wait only briefly for EOF.
            if let Some(mut t) = stdout_task
                && tokio::time::timeout(STDOUT_DRAIN, &mut t).await.is_err()
            {
                t.abort();
            }
            let stderr_tail = match stderr_task {
                Some(mut t) => match tokio::time::timeout(STDOUT_DRAIN, &mut t).await {
                    Ok(tail) => tail.unwrap_or_default(),
                    Err(_) => {
                        t.abort();
                        String::new()
                    }
                },
                None => String::new(),
            };
            let (code, signal) = match status {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    (s.code(), s.signal())
                }
                Err(_) => (None, None),
            };
            let _ = exit_tx.send(true);
            on_event(ProcessEvent::Exited(ExitInfo {
                code,
                signal,
                stderr_tail,
            }));
        });

        Ok(ClaudeProcess {
            pid,
            stdin: Some(tx),
            reaped,
            exited,
        })
    }

    /// The process id, which is also its process-group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Queues one line (which must end in `\n`) for stdin. Returns false once stdin is closed.
    pub fn send_line(&self, line: String) -> bool {
        self.stdin.as_ref().is_some_and(|tx| tx.send(line).is_ok())
    }

    /// Closes stdin: the CLI finishes what it has and exits 0.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `signal` to the whole process group (no-op once reaped).
    pub fn signal_group(&self, signal: i32) {
        if !self.reaped.load(Ordering::SeqCst) {
            kill_group(self.pid, signal);
        }
    }

    /// True once the process has been reaped.
    pub fn is_reaped(&self) -> bool {
        self.reaped.load(Ordering::SeqCst)
    }

    /// Waits until the process has been reaped and its group swept.
    pub async fn wait_exit(&mut self) {
        let _ = self.exited.wait_for(|gone| *gone).await;
    }

    /// Stops the process for good: EOF on stdin, SIGTERM to the group, SIGKILL after
    /// `grace`, and waits (bounded) for the reaper. Used on shutdown, where no actor
    /// mailbox is left to deliver the exit event.
    pub async fn terminate(&mut self, grace: Duration) {
        self.close_stdin();
        if self.is_reaped() {
            return;
        }
        self.signal_group(libc::SIGTERM);
        if tokio::time::timeout(grace, self.wait_exit()).await.is_err() {
            self.signal_group(libc::SIGKILL);
            let _ = tokio::time::timeout(grace, self.wait_exit()).await;
        }
    }
}

impl Drop for ClaudeProcess {
    fn drop(&mut self) {
        self.stdin = None;
        self.signal_group(libc::SIGKILL);
    }
}

/// Sends `signal` to process group `pgid`, ignoring "no such process".
pub fn kill_group(pgid: u32, signal: i32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return; // never signal "every process" or init's group by accident
    }
    // SAFETY: kill(2) with a negative pid signals that process group; it has no memory
    // effects, and the pid is checked to be a real group id above.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Sends `signal` to the one process `pid`.
pub fn signal_process(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("pid {pid}")))?;
    // SAFETY: kill(2) with a positive pid signals that one process; it has no memory effects.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

async fn write_stdin<F>(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::UnboundedReceiver<String>,
    on_event: Arc<F>,
) where
    F: Fn(ProcessEvent) + Send + Sync + 'static,
{
    while let Some(line) = rx.recv().await {
        let res = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        }
        .await;
        if let Err(e) = res {
            on_event(ProcessEvent::WriteFailed(e.to_string()));
            return;
        }
    }
    // Channel closed: dropping stdin sends EOF.
}

async fn read_stdout<F>(out: ChildStdout, keep_lines: bool, on_event: Arc<F>)
where
    F: Fn(ProcessEvent) + Send + Sync + 'static,
{
    let mut reader = BufReader::with_capacity(64 * 1024, out);
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        buf.clear();
        let n = match (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return; // EOF
        }
        let complete = buf.last() == Some(&b'\n');
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if !complete && n as u64 >= MAX_LINE_BYTES {
            on_event(ProcessEvent::BadLine {
                line: preview(line),
                error: ParseError::NotJson(format!("line longer than {MAX_LINE_BYTES} bytes")),
            });
            return;
        }
        match parse_line(line) {
            Ok(ev) => on_event(ProcessEvent::Event(ev, keep_lines.then(|| line.to_vec()))),
            Err(error) => on_event(ProcessEvent::BadLine {
                line: preview(line),
                error,
            }),
        }
    }
}

fn preview(line: &[u8]) -> String {
    let cut = &line[..line.len().min(200)];
    String::from_utf8_lossy(cut).into_owned()
}

async fn read_stderr_tail(err: ChildStderr) -> String {
    let mut reader = BufReader::new(err);
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL_BYTES);
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                for &b in &chunk[..n] {
                    if tail.len() == STDERR_TAIL_BYTES {
                        tail.pop_front();
                    }
                    tail.push_back(b);
                }
                tracing::trace!(target: "claude_pool::stderr", "{}", String::from_utf8_lossy(&chunk[..n]).trim_end());
            }
        }
    }
    let bytes: Vec<u8> = tail.into_iter().collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Asks the allocator to return free memory to the system, off the caller's thread. glibc
/// keeps what a burst freed in its arenas (one per thread that allocated) until asked; a
/// server whose queue held ten thousand tasks would otherwise stay that large.
pub(crate) fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free pages of the allocator's own arenas.
        let trim = || unsafe { libc::malloc_trim(0) };
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(tokio::task::spawn_blocking(trim));
        } else {
            trim();
        }
    }
}
