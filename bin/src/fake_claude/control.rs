//! State shared between the stdin reader thread (which answers control requests at once) and
//! the thread running turns: abort / end flags with interruptible waits, the question the turn
//! asked the host (and its answer), and the settings that control requests can change
//! mid-session.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

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
    /// Set when stdin is gone (EOF, or one-shot mode): no answer can come any more.
    closed: bool,
    /// The control request the turn thread waits on: its id and kind.
    pending: Option<(String, Asked)>,
    /// The `response` object of the control_response that answered `pending`.
    answer: Option<Value>,
}

/// What the turn thread asked its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A `can_use_tool` permission question.
    CanUseTool,
    /// An MCP `elicitation`.
    Elicitation,
}

/// How a question ended.
#[derive(Debug)]
pub enum Reply {
    /// The control_response's `response` object (`subtype` success or error).
    Answer(Value),
    /// `interrupt` or `end_session` came first.
    Aborted,
    /// stdin closed first.
    Closed,
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

    /// stdin is gone: a question waiting for an answer gives up.
    pub fn close(&self) {
        lock(&self.flags).closed = true;
        self.cv.notify_all();
    }

    /// Registers the question `id` and prints it with `print`, under the lock, so that an
    /// interrupt arriving meanwhile finds it pending (one that came before: nothing printed,
    /// and [`Shared::await_reply`] returns at once). False, with nothing printed, when stdin
    /// is already closed (the real CLI then does not ask at all).
    pub fn ask(&self, id: &str, kind: Asked, print: impl FnOnce()) -> bool {
        let mut f = lock(&self.flags);
        if f.closed {
            return false;
        }
        f.answer = None;
        if !f.abort {
            f.pending = Some((id.to_string(), kind));
            print();
        }
        true
    }

    /// Waits for the answer to the pending question (an answer that already arrived wins over
    /// a later interrupt); the question is no longer pending afterwards.
    pub fn await_reply(&self) -> Reply {
        let mut f = lock(&self.flags);
        let reply = loop {
            if let Some(a) = f.answer.take() {
                break Reply::Answer(a);
            }
            if f.abort {
                break Reply::Aborted;
            }
            if f.closed {
                break Reply::Closed;
            }
            f = self.cv.wait(f).unwrap_or_else(PoisonError::into_inner);
        };
        f.pending = None;
        reply
    }

    /// The question waiting for an answer, if any (the reader withdraws it on interrupt).
    pub fn pending(&self) -> Option<(String, Asked)> {
        lock(&self.flags).pending.clone()
    }

    /// A control_response from the host: the answer if it names the pending question (any
    /// other, e.g. a late answer to a withdrawn question, is dropped like the real CLI does).
    pub fn deliver(&self, response: &Value) {
        let mut f = lock(&self.flags);
        let id = response.get("request_id").and_then(Value::as_str);
        if f.answer.is_none() && f.pending.as_ref().map(|(p, _)| p.as_str()) == id {
            f.answer = Some(response.clone());
            drop(f);
            self.cv.notify_all();
        }
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
