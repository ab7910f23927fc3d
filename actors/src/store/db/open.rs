//! Opening a store file: the checks that refuse a wrong file without touching it, and the
//! lock that keeps a second server away.
//!
//! The order is what keeps the file untouched on every refusal:
//!
//! 1. the path: not a directory; its parent directory is created if missing;
//! 2. an existing non-empty file is read through a **read-only** connection (SQLite cannot
//!    write through it): it must be SQLite, pass `PRAGMA quick_check`, and be ours (or
//!    empty) at a schema version we understand;
//! 3. `<path>.lock` is locked (exclusive, non-blocking) and our pid written into it;
//! 4. only then the read-write connection: inspected once more (another process may have
//!    changed the file between 2 and 3), configured, migrated, and the crash rule applied.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::schema::{Found, SCHEMA_VERSION, inspect, quick_check};

/// Why a store could not be opened. Every message names the file and says what to do; in
/// every case the store file was left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The path cannot hold a store: its directory cannot be created, it is a directory, or
    /// it cannot be read or written.
    #[error(
        "cannot use {} as the claude-pool store: {reason}; fix the path or its permissions, \
         or give this server another --db",
        .path.display()
    )]
    Unusable {
        /// The store path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Another server holds the store's lock file.
    #[error(
        "the store {} is in use by another claude-pool server ({}); stop it, or give this \
         server another --db",
        .path.display(),
        pid_text(*.pid)
    )]
    InUse {
        /// The store path.
        path: PathBuf,
        /// The pid written in the lock file, when it could be read.
        pid: Option<u32>,
    },
    /// The file is not a sound SQLite database.
    #[error(
        "{} is not a claude-pool store ({reason}); it was left untouched: move it aside, or \
         give this server another --db",
        .path.display()
    )]
    Corrupt {
        /// The store path.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// The file is another program's SQLite database.
    #[error(
        "{} is not a claude-pool store but another program's SQLite database (application_id \
         {application_id:#x}, tables: {}); it was left untouched: give this server another --db",
        .path.display(),
        table_text(.tables)
    )]
    Foreign {
        /// The store path.
        path: PathBuf,
        /// Its `PRAGMA application_id`.
        application_id: i32,
        /// Its tables.
        tables: Vec<String>,
    },
    /// The store was written by a newer claude-pool.
    #[error(
        "the store {} has schema version {version}, newer than this claude-pool understands \
         ({SCHEMA_VERSION}); it was left untouched: upgrade claude-pool, or give this server \
         another --db",
        .path.display()
    )]
    TooNew {
        /// The store path.
        path: PathBuf,
        /// Its `PRAGMA user_version`.
        version: i32,
    },
}

fn pid_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_owned(),
    }
}

fn table_text(tables: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = tables
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if tables.len() > SHOWN {
        text.push_str(&format!(" and {} more", tables.len() - SHOWN));
    }
    if text.is_empty() {
        text.push_str("none");
    }
    text
}

/// An open, locked, validated (not yet configured) read-write connection to `path`, and the
/// version found there.
pub(crate) struct Opened {
    pub(crate) conn: Connection,
    pub(crate) lock: File,
    pub(crate) version: i32,
}

/// How a server holds a store file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// One server alone (an explicit `--db`): a second one is refused, naming the first.
    Exclusive,
    /// Any number of servers of one project at once, each with a lease of its own.
    Shared,
}

/// Steps 1–4 of the module doc, up to a validated read-write connection.
pub(crate) fn open_checked(path: &Path, pid: u32, sharing: Sharing) -> Result<Opened, OpenError> {
    let unusable = |reason: String| OpenError::Unusable {
        path: path.to_owned(),
        reason,
    };
    if path.is_dir() {
        return Err(unusable("it is a directory".into()));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::private::create_dir_all(parent).map_err(|e| {
            unusable(format!(
                "cannot create its directory {}: {e}",
                parent.display()
            ))
        })?;
    }
    let existing = match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(unusable("it is not a regular file".into())),
        Ok(meta) => meta.len() > 0,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => return Err(unusable(e.to_string())),
    };
    if existing {
        validate_read_only(path)?;
    }
    let lock = match sharing {
        Sharing::Exclusive => lock(path, pid)?,
        Sharing::Shared => lock_shared(path)?,
    };
    // SQLite gives the WAL and shared-memory files the mode of the database file: a store
    // created private keeps every file of it private.
    crate::private::create_file(path).map_err(|e| unusable(e.to_string()))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        crate::private::tighten_existing(Path::new(&side)).map_err(|e| unusable(e.to_string()))?;
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, &e))?;
    let found = inspect(&conn).map_err(|e| classify(path, &e))?;
    let version = accept(path, found)?;
    Ok(Opened {
        conn,
        lock,
        version,
    })
}

/// Reads an existing file without any way to write it.
fn validate_read_only(path: &Path) -> Result<(), OpenError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, &e))?;
    conn.busy_timeout(std::time::Duration::from_millis(5000))
        .map_err(|e| classify(path, &e))?;
    // The first read: a file that is not SQLite fails here with SQLITE_NOTADB.
    let found = inspect(&conn).map_err(|e| classify(path, &e))?;
    accept(path, found)?;
    let problems = quick_check(&conn).map_err(|e| classify(path, &e))?;
    if !problems.is_empty() {
        let shown = problems
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        return Err(OpenError::Corrupt {
            path: path.to_owned(),
            reason: format!("a damaged SQLite database: quick_check found {shown}"),
        });
    }
    Ok(())
}

/// The schema version to migrate from, or why this database is not to be opened.
fn accept(path: &Path, found: Found) -> Result<i32, OpenError> {
    match found {
        Found::New => Ok(0),
        Found::Ours { version } if version > SCHEMA_VERSION => Err(OpenError::TooNew {
            path: path.to_owned(),
            version,
        }),
        Found::Ours { version } => Ok(version),
        Found::Foreign {
            application_id,
            tables,
        } => Err(OpenError::Foreign {
            path: path.to_owned(),
            application_id,
            tables,
        }),
    }
}

/// Maps a SQLite failure while opening to the error the operator needs.
fn classify(path: &Path, err: &rusqlite::Error) -> OpenError {
    let path = path.to_owned();
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => OpenError::Corrupt {
            path,
            reason: format!("not a SQLite database: {err}"),
        },
        Some(ErrorCode::DatabaseCorrupt) => OpenError::Corrupt {
            path,
            reason: format!("a damaged SQLite database: {err}"),
        },
        _ => OpenError::Unusable {
            path,
            reason: err.to_string(),
        },
    }
}

/// `<path>.lock`.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the store's lock file and writes `pid` into it; the lock lasts as long as the
/// returned handle (the OS drops it when the process dies, however it dies).
fn lock(path: &Path, pid: u32) -> Result<File, OpenError> {
    let lock_path = lock_path(path);
    let unusable = |e: std::io::Error| OpenError::Unusable {
        path: path.to_owned(),
        reason: format!("cannot use its lock file {}: {e}", lock_path.display()),
    };
    let mut file = crate::private::open_rw(&lock_path).map_err(unusable)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            // An exclusive holder writes its pid here; servers sharing the store each write
            // theirs in a lease file.
            // (The pid a past exclusive holder wrote may be stale while shared servers
            // hold the lock: their leases come first.)
            let pid = lease_pid(path).or_else(|| {
                file.read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok())
            });
            return Err(OpenError::InUse {
                path: path.to_owned(),
                pid,
            });
        }
        Err(TryLockError::Error(e)) => return Err(unusable(e)),
    }
    file.set_len(0).map_err(unusable)?;
    file.seek(SeekFrom::Start(0)).map_err(unusable)?;
    writeln!(file, "{pid}").map_err(unusable)?;
    Ok(file)
}

/// Takes the store's lock file shared: servers of one project hold it together, and an
/// exclusive holder (a server given this file as `--db`) keeps them all away, and they it.
fn lock_shared(path: &Path) -> Result<File, OpenError> {
    let lock_path = lock_path(path);
    let unusable = |e: std::io::Error| OpenError::Unusable {
        path: path.to_owned(),
        reason: format!("cannot use its lock file {}: {e}", lock_path.display()),
    };
    let file = crate::private::open_rw(&lock_path).map_err(unusable)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = (&file)
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            Err(OpenError::InUse {
                path: path.to_owned(),
                pid,
            })
        }
        Err(TryLockError::Error(e)) => Err(unusable(e)),
    }
}

/// `<path>.servers`: one lease file per live server of a shared store.
pub(crate) fn leases_dir(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".servers");
    PathBuf::from(name)
}

/// A server's lease on a shared store: `<path>.servers/<id>.lock`, locked for the server's
/// life. The OS releases it however the server dies, which is how others tell it is dead.
#[derive(Debug)]
pub struct Lease {
    /// The lease file.
    pub path: PathBuf,
    _file: File,
}

impl Lease {
    /// Takes a new lease for `server_id`, writing `pid` into it.
    pub(crate) fn take(store: &Path, server_id: &str, pid: u32) -> std::io::Result<Lease> {
        crate::private::create_dir_all(&leases_dir(store))?;
        let path = Self::path_of(store, server_id);
        let mut file = crate::private::open_rw(&path)?;
        file.try_lock().map_err(std::io::Error::other)?;
        file.set_len(0)?;
        writeln!(file, "{pid}")?;
        Ok(Lease { path, _file: file })
    }

    /// Whether the server with this id still holds its lease. A missing lease file means
    /// dead; a free one is taken and removed, so the server is known dead for good. Any
    /// other answer (a file that cannot be opened for now, a lock that errs) counts as
    /// alive: taking over a live server's work would run it twice and kill its processes.
    pub(crate) fn alive(store: &Path, server_id: &str) -> bool {
        let path = Self::path_of(store, server_id);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) => return e.kind() != ErrorKind::NotFound,
        };
        match file.try_lock() {
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
                false
            }
            Err(TryLockError::WouldBlock | TryLockError::Error(_)) => true,
        }
    }

    /// The lease file of a server, live or dead, under the leases directory's canonical
    /// path: the marker its processes carry, the same whether or not the file still exists
    /// (a symlink in the store's path must not hide a dead server's leftovers).
    pub(crate) fn path_of(store: &Path, server_id: &str) -> PathBuf {
        let dir = leases_dir(store);
        std::fs::canonicalize(&dir)
            .unwrap_or(dir)
            .join(format!("{server_id}.lock"))
    }
}

/// Serializes the opening of a shared store: while one server runs the crash rule, the
/// next waits (a blocking lock, held for milliseconds), so two never adopt the same work.
pub(crate) fn opening_lock(store: &Path) -> std::io::Result<File> {
    let dir = leases_dir(store);
    crate::private::create_dir_all(&dir)?;
    let file = crate::private::open_rw(&dir.join(".open"))?;
    file.lock()?;
    Ok(file)
}

/// The pid in one of a shared store's lease files, if any can be read.
fn lease_pid(store: &Path) -> Option<u32> {
    std::fs::read_dir(leases_dir(store))
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".lock"))
        .find_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
}
