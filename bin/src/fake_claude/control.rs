//! State shared between the stdin reader thread (which answers control requests at once) and
//! the thread running turns: abort / end flags with interruptible waits, and the settings that
//! control requests can change mid-session.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Locks `m`, ignoring poisoning (a panicking thread must not wedge the other one).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct Flags {
    /// Set by `interrupt` / `end_session`; cleared when the next turn starts.
    abort: bool,
    /// Set by `end_session`.
    ended: bool,
}

#[derive(Debug)]
pub struct Shared {
    flags: Mutex<Flags>,
    cv: Condvar,
    model: Mutex<String>,
    permission_mode: Mutex<String>,
    /// Whether `set_permission_mode` may switch to bypassPermissions.
    bypass_allowed: bool,
    session_id: Mutex<String>,
}

impl Shared {
    pub fn new(model: String, permission_mode: String, bypass_allowed: bool) -> Self {
        Self {
            flags: Mutex::new(Flags::default()),
            cv: Condvar::new(),
            model: Mutex::new(model),
            permission_mode: Mutex::new(permission_mode),
            bypass_allowed,
            session_id: Mutex::new(String::new()),
        }
    }

    pub fn model(&self) -> String {
        lock(&self.model).clone()
    }

    pub fn set_model(&self, m: String) {
        *lock(&self.model) = m;
    }

    pub fn permission_mode(&self) -> String {
        lock(&self.permission_mode).clone()
    }

    /// Sets the permission mode; true when it changed.
    pub fn set_permission_mode(&self, m: String) -> bool {
        let mut cur = lock(&self.permission_mode);
        let changed = *cur != m;
        *cur = m;
        changed
    }

    pub fn bypass_allowed(&self) -> bool {
        self.bypass_allowed
    }

    /// The current session id, for the SIGINT thread.
    pub fn session_id(&self) -> String {
        lock(&self.session_id).clone()
    }

    pub fn set_session_id(&self, s: &str) {
        s.clone_into(&mut lock(&self.session_id));
    }

    pub fn abort(&self) {
        lock(&self.flags).abort = true;
        self.cv.notify_all();
    }

    pub fn end(&self) {
        let mut f = lock(&self.flags);
        f.ended = true;
        f.abort = true;
        drop(f);
        self.cv.notify_all();
    }

    pub fn clear_abort(&self) {
        lock(&self.flags).abort = false;
    }

    pub fn ended(&self) -> bool {
        lock(&self.flags).ended
    }

    /// Sleeps `dur` unless aborted first; true when aborted.
    pub fn wait(&self, dur: Duration) -> bool {
        let mut f = lock(&self.flags);
        if f.abort || dur.is_zero() {
            return f.abort;
        }
        let deadline = Instant::now().checked_add(dur);
        while !f.abort {
            match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    f = self
                        .cv
                        .wait_timeout(f, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None => f = self.cv.wait(f).unwrap_or_else(PoisonError::into_inner),
            }
        }
        true
    }

    /// A wedged turn: ignores `interrupt`; returns once `end_session` arrived if
    /// `until_end`, otherwise never.
    pub fn hang(&self, until_end: bool) {
        let mut f = lock(&self.flags);
        while !(until_end && f.ended) {
            f = self.cv.wait(f).unwrap_or_else(PoisonError::into_inner);
        }
    }
}
