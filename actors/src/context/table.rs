//! The context table's rules, pure: key and value limits, and how the table reaches Claude.
//!
//! **Delivery.** The table is written at the top of each task's user message, as a
//! `<pool_context>` block before the prompt — never through `--system-prompt`, which would
//! replace Claude Code's own system prompt, and not through `--append-system-prompt`, which
//! is fixed per process: every change would then need a fresh process in every slot (a cold
//! start, ~0.4 s of the real CLI's time per slot, and the warm-slot advantage gone). The
//! preamble costs its tokens on every task instead (measured in `benches/latency.rs`), and a
//! change reaches the very next task with no process touched.

use std::collections::BTreeMap;
use std::sync::Arc;

use claude_pool_protocol::tools::{
    MAX_CONTEXT_KEY_BYTES, MAX_CONTEXT_KEYS, MAX_CONTEXT_TOTAL_BYTES, MAX_CONTEXT_VALUE_BYTES,
};

/// The table, with the preamble rendered from it.
#[derive(Debug, Clone, Default)]
pub struct ContextTable {
    entries: BTreeMap<String, String>,
}

/// Why a change was refused.
pub type Refusal = String;

impl ContextTable {
    /// Every entry, by key.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Sets `key` to `value` within the limits; nothing changes when refused.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), Refusal> {
        check_key(key)?;
        if value.len() > MAX_CONTEXT_VALUE_BYTES {
            return Err(format!(
                "the value of context key {key:?} is {} bytes; the limit is {MAX_CONTEXT_VALUE_BYTES}",
                value.len()
            ));
        }
        let existing = self.entries.get(key).map(|v| key.len() + v.len());
        if existing.is_none() && self.entries.len() >= MAX_CONTEXT_KEYS {
            return Err(format!(
                "the context table is full ({MAX_CONTEXT_KEYS} keys); delete a key first"
            ));
        }
        let total = self.total_bytes() - existing.unwrap_or(0) + key.len() + value.len();
        if total > MAX_CONTEXT_TOTAL_BYTES {
            return Err(format!(
                "the context table would hold {total} bytes; the limit is {MAX_CONTEXT_TOTAL_BYTES}"
            ));
        }
        self.entries.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    /// Removes `key`; true when it existed.
    pub fn delete(&mut self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    fn total_bytes(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// The block written before every task's prompt, `None` while the table is empty.
    pub fn preamble(&self) -> Option<Arc<str>> {
        if self.entries.is_empty() {
            return None;
        }
        let mut out = String::from(
            "<pool_context>\nShared context from the coordinator, for every task (key: value):\n",
        );
        for (k, v) in &self.entries {
            out.push_str("- ");
            out.push_str(k);
            out.push_str(": ");
            let mut lines = v.lines();
            out.push_str(lines.next().unwrap_or(""));
            for more in lines {
                out.push_str("\n  ");
                out.push_str(more);
            }
            out.push('\n');
        }
        out.push_str("</pool_context>\n\n");
        Some(Arc::from(out))
    }
}

/// A key is 1–128 bytes of letters, digits, `_`, `-` and `.`.
pub fn check_key(key: &str) -> Result<(), Refusal> {
    if key.is_empty() {
        return Err("a context key must not be empty".into());
    }
    if key.len() > MAX_CONTEXT_KEY_BYTES {
        return Err(format!(
            "context key is {} bytes; the limit is {MAX_CONTEXT_KEY_BYTES}",
            key.len()
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "context key {key:?} contains {c:?}; use letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_without_changing_anything() {
        let mut t = ContextTable::default();
        t.set("language", "rust").expect("set");
        let cases: Vec<(String, String, &str)> = vec![
            (String::new(), "v".into(), "empty"),
            ("a b".into(), "v".into(), "contains ' '"),
            ("k".repeat(129), "v".into(), "limit is 128"),
            ("big".into(), "x".repeat(16 * 1024 + 1), "limit is 16384"),
        ];
        for (k, v, want) in cases {
            let e = t.set(&k, &v).expect_err("refused");
            assert!(e.contains(want), "{e}");
        }
        assert_eq!(t.entries().len(), 1);
        for i in 0..63 {
            t.set(&format!("k{i}"), "v").expect("fits");
        }
        assert!(t.set("one-more", "v").expect_err("full").contains("full"));
        t.set("language", "go")
            .expect("replacing a key is not a new key");
    }

    #[test]
    fn the_total_size_is_bounded() {
        let mut t = ContextTable::default();
        let v = "x".repeat(16 * 1024);
        for i in 0..3 {
            t.set(&format!("k{i}"), &v).expect("fits");
        }
        assert!(t.set("k3", &v).expect_err("too big").contains("65536"));
    }

    #[test]
    fn the_preamble_lists_every_entry_and_is_absent_when_empty() {
        let mut t = ContextTable::default();
        assert_eq!(t.preamble(), None);
        t.set("style", "idiomatic\nno unsafe").expect("set");
        t.set("language", "rust").expect("set");
        let p = t.preamble().expect("preamble");
        assert_eq!(
            &*p,
            "<pool_context>\nShared context from the coordinator, for every task (key: value):\n- language: rust\n- style: idiomatic\n  no unsafe\n</pool_context>\n\n"
        );
        assert!(t.delete("style"));
        assert!(!t.delete("style"));
        assert!(!t.preamble().expect("still one").contains("style"));
    }
}
