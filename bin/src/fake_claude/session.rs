//! Conversation state and its persistence: one JSON file per session under
//! `$FAKE_CLAUDE_STATE` (default `$HOME/.fake-claude`), the format of `fake_claude.py`
//! (`{"cwd","history","model_usage","cost","api_ms","mtime"}`) plus `api_messages` (see
//! [`ApiMsg`]; derived from `history` when absent), so `--resume`, `--continue` and
//! `--fork-session` work across processes.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::cli::Opts;
use crate::pricing::{ModelUsage, Usage, cost_of};
use crate::sys::{self, die};

/// One message of the API request the real CLI would send next (what `MOCK_COUNT` counts).
///
/// Measured on the real CLI 2.1.329: a turn adds its user message, then per tool call an
/// assistant `tool_use` and a user `tool_result` message, then the final assistant message. A
/// turn that ends without an answer (API error, interrupt) adds only its user message, and the
/// next prompt is merged into it (one user message with several text blocks); a prompt after a
/// turn that ended on a tool call (max turns, `--json-schema`) is merged into that turn's
/// `tool_result` message. Every request also carries a `role: "system"` environment message
/// right after the first user message (not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiMsg {
    /// A user message with text (a prompt).
    User,
    /// A user message holding only a `tool_result` block (no text: the mock does not count it
    /// as a user message).
    ToolResult,
    Assistant,
}

impl ApiMsg {
    fn name(self) -> &'static str {
        match self {
            ApiMsg::User => "user",
            ApiMsg::ToolResult => "tool_result",
            ApiMsg::Assistant => "assistant",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "user" => ApiMsg::User,
            "tool_result" => ApiMsg::ToolResult,
            "assistant" => ApiMsg::Assistant,
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub struct State {
    pub dir: PathBuf,
    pub cwd: String,
    /// `{"role": "user"|"assistant", "content": <text>}` entries.
    pub history: Vec<Value>,
    /// The conversation as the real CLI sends it to the API (see [`ApiMsg`]).
    pub api: Vec<ApiMsg>,
    /// Cumulative per-model usage of this session.
    pub model_usage: BTreeMap<String, ModelUsage>,
    /// Cumulative cost of this session (`total_cost_usd`).
    pub cost: f64,
    pub api_ms: u64,
    /// Index of the next result printed by this process.
    pub result_index: u64,
    /// Per-model usage since the previous result (`model_usage_since_last_result`).
    pub since_last: BTreeMap<String, ModelUsage>,
    pub session_id: String,
    persist: bool,
}

pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FAKE_CLAUDE_STATE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    home.unwrap_or_else(std::env::temp_dir).join(".fake-claude")
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl State {
    pub fn new(persist: bool) -> Self {
        let cwd = std::env::current_dir()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            dir: state_dir(),
            cwd,
            history: Vec::new(),
            api: Vec::new(),
            model_usage: BTreeMap::new(),
            cost: 0.0,
            api_ms: 0,
            result_index: 0,
            since_last: BTreeMap::new(),
            session_id: String::new(),
            persist,
        }
    }

    fn path(&self, sid: &str) -> PathBuf {
        self.dir.join(format!("{sid}.json"))
    }

    fn read_json(path: &Path) -> Option<Map<String, Value>> {
        match serde_json::from_slice(&fs::read(path).ok()?).ok()? {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    fn load(&mut self, sid: &str) -> bool {
        let Some(d) = Self::read_json(&self.path(sid)) else {
            return false;
        };
        let (Some(Value::Array(history)), Some(Value::Object(mu)), Some(cost)) = (
            d.get("history"),
            d.get("model_usage"),
            d.get("cost").and_then(Value::as_f64),
        ) else {
            return false;
        };
        self.history = history.clone();
        let api: Option<Vec<ApiMsg>> =
            d.get("api_messages")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .map(|m| m.as_str().and_then(ApiMsg::parse))
                        .collect()
                });
        self.api = api.unwrap_or_else(|| {
            // A session written by fake_claude.py (or an older fake): user / assistant texts.
            let mut api = Vec::new();
            for h in &self.history {
                match h.get("role").and_then(Value::as_str) {
                    Some("user") => push_user(&mut api),
                    Some("assistant") => api.push(ApiMsg::Assistant),
                    _ => {}
                }
            }
            api
        });
        self.model_usage = mu
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), ModelUsage::from_json(v)?)))
            .collect();
        self.cost = cost;
        self.api_ms = d.get("api_ms").and_then(Value::as_u64).unwrap_or(0);
        true
    }

    /// Writes the session file (unless `--no-session-persistence`); failures only warn.
    pub fn save(&self) {
        if !self.persist {
            return;
        }
        let doc = json!({
            "cwd": self.cwd, "history": self.history, "model_usage": self.model_usage_json(),
            "api_messages": self.api.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "cost": self.cost, "api_ms": self.api_ms, "mtime": sys::unix_time(),
        });
        let written = fs::create_dir_all(&self.dir)
            .and_then(|()| fs::write(self.path(&self.session_id), doc.to_string()));
        if let Err(e) = written {
            sys::eprint_line(&format!("fake-claude: cannot save session: {e}"));
        }
    }

    /// The most recently saved session whose cwd is ours (`--continue`).
    fn latest_in_cwd(&self) -> Option<String> {
        let mut best: Option<(f64, String)> = None;
        for entry in fs::read_dir(&self.dir).ok()?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(sid) = name.strip_suffix(".json") else {
                continue;
            };
            let Some(d) = Self::read_json(&entry.path()) else {
                continue;
            };
            let mtime = d.get("mtime").and_then(Value::as_f64).unwrap_or(0.0);
            if d.get("cwd").and_then(Value::as_str) == Some(&self.cwd)
                && best.as_ref().is_none_or(|(t, _)| mtime > *t)
            {
                best = Some((mtime, sid.to_string()));
            }
        }
        best.map(|(_, sid)| sid)
    }

    /// Picks the session id (new, `--session-id`, `--resume`, `--continue`, forked) and loads
    /// history. Usage errors exit; an unknown `--resume` id is returned as the error text.
    pub fn open_session(&mut self, o: &Opts) -> Result<(), String> {
        if let Some(sid) = &o.session_id {
            if !is_uuid(sid) {
                die("Error: Invalid session ID. Must be a valid UUID.", 1);
            }
            if (o.resume.is_some() || o.cont) && !o.fork {
                die(
                    "Error: --session-id with --continue or --resume also needs --fork-session.",
                    1,
                );
            }
        }
        let src = o
            .resume
            .clone()
            .or_else(|| if o.cont { self.latest_in_cwd() } else { None });
        if let Some(r) = &o.resume
            && !self.load(r)
        {
            return Err(format!("No conversation found with session ID: {r}"));
        }
        if let (true, Some(s)) = (o.cont, &src) {
            self.load(s);
        }
        match src {
            Some(s) if !o.fork => self.session_id = s,
            _ => {
                self.session_id = o.session_id.clone().unwrap_or_else(sys::uuid4);
                if o.session_id.is_some() && self.path(&self.session_id).exists() {
                    die(
                        &format!("Error: Session ID {} is already in use.", self.session_id),
                        1,
                    );
                }
            }
        }
        Ok(())
    }

    /// Bills one API call to the session and to `since_last`.
    pub fn account(&mut self, model: &str, u: &Usage) {
        let (cost, known) = cost_of(model, u);
        self.model_usage
            .entry(model.to_string())
            .or_insert_with(|| ModelUsage::new(known))
            .add(u, cost);
        self.since_last
            .entry(model.to_string())
            .or_insert_with(|| ModelUsage::new(known))
            .add(u, cost);
        self.cost += cost;
    }

    pub fn model_usage_json(&self) -> Value {
        usage_map_json(&self.model_usage)
    }

    /// `/clear`: a new conversation with a new id, zero cost and zero API time.
    pub fn reset(&mut self) {
        self.history.clear();
        self.api.clear();
        self.api_ms = 0;
        self.model_usage.clear();
        self.since_last.clear();
        self.cost = 0.0;
        self.session_id = sys::uuid4();
    }

    /// A prompt enters the conversation (merged into a trailing user message, see [`ApiMsg`]).
    pub fn api_user(&mut self) {
        push_user(&mut self.api);
    }

    /// `MOCK_COUNT`'s numbers for the request the real CLI would send now: messages (the
    /// environment `system` message included) and user messages with text.
    pub fn api_counts(&self) -> (usize, usize) {
        let users = self.api.iter().filter(|m| **m == ApiMsg::User).count();
        let system = usize::from(!self.api.is_empty());
        (self.api.len() + system, users)
    }

    pub fn user_prompts(&self) -> usize {
        self.history
            .iter()
            .filter(|h| h.get("role").and_then(Value::as_str) == Some("user"))
            .count()
    }
}

/// Appends a prompt to `api`: a trailing user or tool_result message absorbs it.
fn push_user(api: &mut Vec<ApiMsg>) {
    match api.last_mut() {
        Some(last @ (ApiMsg::User | ApiMsg::ToolResult)) => *last = ApiMsg::User,
        _ => api.push(ApiMsg::User),
    }
}

pub fn usage_map_json(m: &BTreeMap<String, ModelUsage>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json(k))).collect())
}

/// MOCK_FAIL_FIRST:<n>:<key>: true for the first `n` calls carrying `key`, counted across
/// processes in `<state dir>/failfirst-<key>` under an exclusive flock.
pub fn fail_first(dir: &Path, n: u64, key: &str) -> bool {
    let counted = || -> std::io::Result<bool> {
        fs::create_dir_all(dir)?;
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(dir.join(format!("failfirst-{key}")))?;
        sys::lock_exclusive(&f)?;
        let mut seen = Vec::new();
        f.read_to_end(&mut seen)?;
        if (seen.len() as u64) < n {
            f.write_all(b"x")?;
            return Ok(true);
        }
        Ok(false)
    };
    counted().unwrap_or(false)
}
