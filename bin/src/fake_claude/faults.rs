//! Faults armed from outside for this process's slot: `$FAKE_CLAUDE_FAULTS/<slot>.<what>`,
//! with `<slot>` from `CLAUDE_POOL_SLOT` (claude-pool sets it). A file is claimed by
//! renaming it, so each armed fault is taken once, by one process.

use std::path::Path;

use serde_json::json;

use crate::sys;

/// The content of the fault armed as `what` (`turn`, `start`), if any; claims it.
pub fn claim(what: &str) -> Option<String> {
    let dir = std::env::var_os("FAKE_CLAUDE_FAULTS")?;
    let slot = std::env::var("CLAUDE_POOL_SLOT").ok()?;
    let dir = Path::new(&dir);
    let armed = dir.join(format!("{slot}.{what}"));
    let mine = dir.join(format!(".{slot}.{what}.claimed-{}", sys::pid()));
    std::fs::rename(&armed, &mine).ok()?;
    let content = std::fs::read_to_string(&mine).ok();
    let _ = std::fs::remove_file(&mine);
    let content = content?.trim().to_owned();
    sys::log(&json!({ "event": "fault", "pid": sys::pid(), "what": what, "fault": content }));
    Some(content)
}
