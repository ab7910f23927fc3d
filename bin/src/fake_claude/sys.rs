//! Process-level plumbing: stdout/stderr, the `FAKE_CLAUDE_LOG` event log, exits, signals,
//! clocks, ids and file locks. Everything that needs `libc` lives here.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

// ---------------------------------------------------------------- stdout / stderr

/// Writes `bytes` to stdout under the stdout lock (so lines from the reader thread and the
/// turn thread never interleave) and flushes: stdout is a pipe. False when stdout is gone.
pub fn write_stdout(bytes: &[u8]) -> bool {
    let mut out = io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).is_ok()
}

/// Serializes `v` as one compact JSON line on stdout. False when stdout is gone.
pub fn emit_line(v: &Value) -> bool {
    let mut line = v.to_string();
    line.push('\n');
    write_stdout(line.as_bytes())
}

/// Writes one line to stderr, ignoring failures (a closed stderr must not crash the fake).
pub fn eprint_line(msg: &str) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(msg.as_bytes());
    let _ = err.write_all(b"\n");
}

// ---------------------------------------------------------------- the event log

static LOG: OnceLock<Option<File>> = OnceLock::new();

/// Opens `$FAKE_CLAUDE_LOG` (O_APPEND|O_CREAT) once; without it logging is a no-op.
pub fn log_init() {
    LOG.get_or_init(|| {
        let path = std::env::var_os("FAKE_CLAUDE_LOG").filter(|p| !p.is_empty())?;
        OpenOptions::new().create(true).append(true).open(path).ok()
    });
}

/// Appends `ev` as one JSON line with a single write(2) on the O_APPEND descriptor, so
/// concurrent fakes sharing one log file never interleave within a line.
pub fn log(ev: &Value) {
    if let Some(Some(mut file)) = LOG.get().map(Option::as_ref) {
        let mut line = ev.to_string();
        line.push('\n');
        let _ = file.write_all(line.as_bytes());
    }
}

pub fn pid() -> u32 {
    std::process::id()
}

pub fn ppid() -> u32 {
    std::os::unix::process::parent_id()
}

/// The claude-pool slot this process serves (`CLAUDE_POOL_SLOT`), if any.
pub fn slot() -> Option<String> {
    std::env::var("CLAUDE_POOL_SLOT").ok()
}

pub fn pgid() -> i32 {
    // SAFETY: getpgid(0) only reads the calling process's group id.
    unsafe { libc::getpgid(0) }
}

/// CLOCK_MONOTONIC in nanoseconds (comparable across processes on one machine).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

// ---------------------------------------------------------------- exits

/// The normal way out: logs `{"event":"exit"}`, waits for any line being written to stdout,
/// flushes it and exits with `code`.
pub fn exit(code: i32) -> ! {
    log(&json!({"event": "exit", "pid": pid(), "code": code}));
    {
        let _ = io::stdout().lock().flush();
    }
    std::process::exit(code)
}

/// Prints `msg` on stderr and exits with `code`.
pub fn die(msg: &str, code: i32) -> ! {
    eprint_line(msg);
    exit(code)
}

// ---------------------------------------------------------------- signals

/// Write end of the SIGINT self-pipe; -1 means "SIGINT exits at once".
static INT_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_term(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(143) }
}

extern "C" fn on_hup(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(129) }
}

extern "C" fn on_int(_: libc::c_int) {
    let fd = INT_PIPE.load(Ordering::SeqCst);
    // SAFETY: only async-signal-safe calls (_exit, write) and errno save/restore.
    unsafe {
        if fd < 0 {
            libc::_exit(0);
        }
        let errno = libc::__errno_location();
        let saved = *errno;
        libc::write(fd, b"i".as_ptr().cast(), 1);
        *errno = saved;
    }
}

fn set_handler(sig: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handlers above
    // only do async-signal-safe work.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// SIGTERM -> exit 143, SIGHUP -> exit 129, SIGINT -> exit 0 (no output).
pub fn install_signal_handlers() {
    set_handler(
        libc::SIGTERM,
        on_term as extern "C" fn(libc::c_int) as libc::sighandler_t,
    );
    set_handler(
        libc::SIGHUP,
        on_hup as extern "C" fn(libc::c_int) as libc::sighandler_t,
    );
    set_handler(
        libc::SIGINT,
        on_int as extern "C" fn(libc::c_int) as libc::sighandler_t,
    );
}

/// Routes SIGINT through a self-pipe to a thread that runs `last_words` (which may take
/// locks and print) and then exits 0 without running anything else.
pub fn on_sigint(last_words: impl FnOnce() + Send + 'static) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return; // keep the plain "exit 0 at once" behaviour
    }
    let read_fd = fds[0];
    let spawned = std::thread::Builder::new()
        .name("sigint".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            loop {
                // SAFETY: reads at most one byte into our buffer from the pipe we created.
                let n = unsafe { libc::read(read_fd, byte.as_mut_ptr().cast(), 1) };
                if n == 1 {
                    break;
                }
                if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    // SAFETY: _exit ends the process without touching shared state.
                    unsafe { libc::_exit(0) }
                }
            }
            last_words();
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        });
    if spawned.is_ok() {
        INT_PIPE.store(fds[1], Ordering::SeqCst);
    }
}

/// MOCK_IGNORE_TERM: from now on SIGTERM, SIGINT and SIGHUP are ignored (SIG_IGN), so only
/// SIGKILL (or SIGQUIT & co.) can end the process.
pub fn ignore_termination_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        set_handler(sig, libc::SIG_IGN);
    }
}

// ---------------------------------------------------------------- stdin, files

/// Whether stdin has data or EOF within `wait` (false on timeout).
pub fn stdin_ready(wait: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
    loop {
        // SAFETY: polls one pollfd that we own.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return n > 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return true; // let the read decide
        }
    }
}

/// Takes an exclusive flock on `file` (released when the file is closed).
pub fn lock_exclusive(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

// ---------------------------------------------------------------- ids and time

static RNG: AtomicU64 = AtomicU64::new(0);

/// Seeds the id generator from /dev/urandom (falling back to time and pid).
pub fn seed_rng() {
    let mut b = [0u8; 8];
    let seed = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map(|()| u64::from_le_bytes(b))
        .unwrap_or_else(|_| {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            (t.as_nanos() as u64) ^ (u64::from(pid()) << 32)
        });
    RNG.store(seed, Ordering::Relaxed);
}

/// splitmix64: lock-free, good enough for ids.
pub fn rand64() -> u64 {
    let mut z = RNG
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random version-4 UUID, lowercase.
pub fn uuid4() -> String {
    let (hi, lo) = (rand64(), rand64());
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        (hi & 0x0fff) | 0x4000,
        ((lo >> 48) & 0x3fff) | 0x8000,
        lo & 0xffff_ffff_ffff
    )
}

/// `n` random bits (n <= 128) as `n/4` lowercase hex digits.
pub fn rand_hex(bits: u32) -> String {
    let v = (u128::from(rand64()) << 64) | u128::from(rand64());
    let v = if bits >= 128 {
        v
    } else {
        v & ((1u128 << bits) - 1)
    };
    format!("{:0width$x}", v, width = (bits / 4) as usize)
}

/// `YYYY-MM-DDTHH:MM:SS.000Z` (UTC), like the real CLI's event timestamps.
pub fn iso_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch as a float (session file mtime).
pub fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}
