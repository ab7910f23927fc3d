//! Checks on the client values that reach a Claude command line or a git command: model
//! names, session ids (`--resume`), branch names, project names and allowed-tool entries.
//!
//! Each value is checked where it enters: the tool parameter structs deserialize these fields
//! through the [`de`] functions, so a bad value is an invalid-params error naming its field
//! before anything runs; the embedding API calls the same checks for what it is given
//! directly. Each rule is conservative (a pattern of known-safe characters, never a
//! blacklist), and none lets a value begin with `-`, which a CLI would read as an option.

/// The longest model name.
pub const MAX_MODEL_LEN: usize = 128;
/// The longest branch name.
pub const MAX_BRANCH_LEN: usize = 200;
/// The longest project name (as the projects file allows).
pub const MAX_PROJECT_LEN: usize = 64;
/// The longest allowed-tool entry (`Bash(npm run test:*)` and the like).
pub const MAX_TOOL_LEN: usize = 256;

/// Largest prompt a skill renders to, and largest `prompts/get` result, in bytes (1 MiB):
/// a template that repeats its arguments would otherwise turn a small request into a huge
/// prompt (62 KB of arguments once rendered into 100 MB).
pub const MAX_RENDERED_PROMPT: usize = 1024 * 1024;

/// A model name: 1 to 128 of `A-Z a-z 0-9 . _ : [ ] -`, not starting with `-`
/// (`sonnet`, `claude-opus-4-1`, `claude-sonnet-4-5[1m]`).
pub fn model(s: &str) -> Result<(), String> {
    let ok = (1..=MAX_MODEL_LEN).contains(&s.len())
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:[]-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a model name (1 to {MAX_MODEL_LEN} of A-Z, a-z, 0-9, '.', '_', ':', '[', ']', '-', not starting with '-')",
            shown(s)
        ))
    }
}

/// A Claude session id: a UUID in its hyphenated form (`8-4-4-4-12` hex digits).
pub fn session_id(s: &str) -> Result<(), String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let ok = lens == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "unknown session {:?}: not a Claude session id (a UUID such as 0b6c3f5e-8a37-4c1e-9d39-1f0a2b3c4d5e)",
            shown(s)
        ))
    }
}

/// A branch name, stricter than `git check-ref-format --branch`: 1 to 200 of
/// `A-Z a-z 0-9 . _ / + -`; no leading `-`, `.` or `/`; no trailing `/`, `.` or `.lock`;
/// no `..`, `//`, or component starting with `.` or ending with `.lock`.
pub fn branch(s: &str) -> Result<(), String> {
    let chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._/+-".contains(&b));
    let components_ok = s
        .split('/')
        .all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"));
    let ok = (1..=MAX_BRANCH_LEN).contains(&s.len())
        && chars
        && !s.starts_with('-')
        && !s.ends_with('.')
        && !s.contains("..")
        && components_ok;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid branch name (1 to {MAX_BRANCH_LEN} of A-Z, a-z, 0-9, '.', '_', '/', '+', '-'; not starting with '-'; no '..', no empty component, no component starting with '.' or ending with '.lock')",
            shown(s)
        ))
    }
}

/// A project name, as the projects file allows it: 1 to 64 of `A-Z a-z 0-9 . _ -`, and, like
/// every checked value, not starting with `-`.
pub fn project(s: &str) -> Result<(), String> {
    let ok = (1..=MAX_PROJECT_LEN).contains(&s.len())
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "unknown project {:?}: a project name is 1 to {MAX_PROJECT_LEN} of A-Z, a-z, 0-9, '.', '_', '-', not starting with '-'",
            shown(s)
        ))
    }
}

/// One `--allowedTools` entry: a tool name (`Read`, `mcp__server__tool`: letters, digits,
/// `_`, `-`, starting with a letter), optionally followed by one parenthesised rule
/// (`Bash(git commit:*)`) without parentheses, commas or control characters inside; at
/// most 256 bytes. Entries travel joined by `,`, so a comma would smuggle in another tool.
pub fn tool(s: &str) -> Result<(), String> {
    let (name, rule) = match s.split_once('(') {
        Some((name, rest)) => (name, rest.strip_suffix(')')),
        None => (s, Some("")),
    };
    let name_ok = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let rule_ok = rule.is_some_and(|r| {
        r.chars()
            .all(|c| !c.is_control() && !matches!(c, '(' | ')' | ','))
    });
    if s.len() <= MAX_TOOL_LEN && name_ok && rule_ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a tool entry (a tool name such as Read or mcp__server__tool, optionally with one rule in parentheses such as Bash(git commit:*); no commas; at most {MAX_TOOL_LEN} bytes)",
            shown(s)
        ))
    }
}

/// At most the first 80 characters of a value, for an error message: an error must not
/// echo a megabyte back.
fn shown(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// `deserialize_with` functions for the parameter structs: each reads the field and applies
/// its check, so that serde's error (and with it the invalid-params error) names the field.
pub mod de {
    use serde::Deserialize;
    use serde::de::{Deserializer, Error};

    /// Reads a string and checks it with `check`.
    fn checked<'de, D: Deserializer<'de>>(
        d: D,
        check: fn(&str) -> Result<(), String>,
    ) -> Result<String, D::Error> {
        let s = String::deserialize(d)?;
        check(&s).map_err(D::Error::custom)?;
        Ok(s)
    }

    /// Reads an optional string and checks it with `check` when present.
    fn checked_opt<'de, D: Deserializer<'de>>(
        d: D,
        check: fn(&str) -> Result<(), String>,
    ) -> Result<Option<String>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        if let Some(s) = &s {
            check(s).map_err(D::Error::custom)?;
        }
        Ok(s)
    }

    /// An optional model name ([`super::model`]).
    pub fn opt_model<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        checked_opt(d, super::model)
    }

    /// An optional session id ([`super::session_id`]).
    pub fn opt_session_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        checked_opt(d, super::session_id)
    }

    /// A branch name ([`super::branch`]).
    pub fn branch<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        checked(d, super::branch)
    }

    /// An optional branch name ([`super::branch`]).
    pub fn opt_branch<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        checked_opt(d, super::branch)
    }

    /// A project name ([`super::project`]).
    pub fn project<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        checked(d, super::project)
    }

    /// An optional list of allowed-tool entries, each checked ([`super::tool`]).
    pub fn opt_tools<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        let tools = Option::<Vec<String>>::deserialize(d)?;
        for (i, t) in tools.iter().flatten().enumerate() {
            super::tool(t).map_err(|e| D::Error::custom(format!("entry {i}: {e}")))?;
        }
        Ok(tools)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_checked() {
        let table = [
            ("sonnet", true),
            ("claude-opus-4-1", true),
            ("claude-sonnet-4-5[1m]", true),
            ("us.anthropic.claude:v2", true),
            ("", false),
            ("-rf", false),
            ("--dangerously-skip-permissions", false),
            ("a b", false),
            ("sonnet;rm", false),
            ("ünïcode", false),
            ("x\n", false),
        ];
        for (s, ok) in table {
            assert_eq!(model(s).is_ok(), ok, "{s:?}");
        }
        assert!(model(&"a".repeat(MAX_MODEL_LEN)).is_ok());
        assert!(model(&"a".repeat(MAX_MODEL_LEN + 1)).is_err());
    }

    #[test]
    fn session_ids_are_uuids() {
        let table = [
            ("0b6c3f5e-8a37-4c1e-9d39-1f0a2b3c4d5e", true),
            ("0B6C3F5E-8A37-4C1E-9D39-1F0A2B3C4D5E", true),
            ("0b6c3f5e8a374c1e9d391f0a2b3c4d5e", false),
            ("../../etc/passwd", false),
            ("--resume", false),
            ("0b6c3f5e-8a37-4c1e-9d39-1f0a2b3c4d5", false),
            ("0b6c3f5e-8a37-4c1e-9d39-1f0a2b3c4d5g", false),
            ("", false),
        ];
        for (s, ok) in table {
            assert_eq!(session_id(s).is_ok(), ok, "{s:?}");
        }
    }

    #[test]
    fn branch_names_follow_a_conservative_check_ref_format() {
        let table = [
            ("feature/login", true),
            ("fix_42", true),
            ("release-1.2", true),
            ("a+b", true),
            ("-b", false),
            ("--force", false),
            ("a..b", false),
            ("a//b", false),
            ("/a", false),
            ("a/", false),
            ("a.", false),
            (".hidden", false),
            ("a/.hidden", false),
            ("a.lock", false),
            ("a.lock/b", false),
            ("a b", false),
            ("a~1", false),
            ("a^", false),
            ("a:b", false),
            ("@{-1}", false),
            ("a\\b", false),
            ("", false),
        ];
        for (s, ok) in table {
            assert_eq!(branch(s).is_ok(), ok, "{s:?}");
        }
        assert!(branch(&"b".repeat(MAX_BRANCH_LEN + 1)).is_err());
    }

    #[test]
    fn project_names_are_what_the_projects_file_allows() {
        for (s, ok) in [
            ("app", true),
            ("my.app_2-x", true),
            ("", false),
            ("a/b", false),
            ("../x", false),
            ("-app", false),
        ] {
            assert_eq!(project(s).is_ok(), ok, "{s:?}");
        }
        assert!(project(&"p".repeat(MAX_PROJECT_LEN + 1)).is_err());
    }

    #[test]
    fn tool_entries_are_a_name_and_at_most_one_rule() {
        let table = [
            ("Read", true),
            ("mcp__pool__pool_run", true),
            ("Bash(git commit:*)", true),
            ("Bash(npm run test:*)", true),
            ("WebFetch(domain:example.com)", true),
            ("Read,Bash", false),
            ("Bash(git diff, git log)", false),
            ("Bash(a)(b)", false),
            ("Bash(unclosed", false),
            ("-Read", false),
            ("--dangerously-skip-permissions", false),
            ("Bash(x\ny)", false),
            ("", false),
            ("1Read", false),
        ];
        for (s, ok) in table {
            assert_eq!(tool(s).is_ok(), ok, "{s:?}");
        }
        assert!(tool(&format!("Bash({})", "x".repeat(MAX_TOOL_LEN))).is_err());
    }

    #[test]
    fn an_error_quotes_at_most_the_start_of_a_huge_value() {
        let e = model(&"x".repeat(1_000_000)).expect_err("too long");
        assert!(e.len() < 400, "{} bytes", e.len());
    }
}
