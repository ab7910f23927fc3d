//! Bash specifiers and the reading of a shell command for them: which parts an allow rule
//! must cover ([`allow_parts`]), and every string a deny rule is tried against
//! ([`deny_candidates`]).
//!
//! Nothing here parses shell properly, and both directions err on the safe side: an allow
//! sees a command as more pieces than the shell would (so more must match) and refuses what
//! it cannot see through; a deny sees even more pieces, quotes included, so it may refuse a
//! harmless command that merely mentions a denied one.

use super::RuleProblem;
use super::glob::{self, Tok};

/// A parsed `Bash(..)` specifier: the patterns one command part may match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct BashPattern {
    /// One pattern for an exact or wildcard specifier; two for `prefix:*` (the prefix
    /// alone, and the prefix followed by whitespace and anything).
    alts: Vec<Vec<Tok>>,
}

impl BashPattern {
    /// Parses the text between the parentheses (already trimmed, not empty).
    pub(super) fn parse(spec: &str) -> Result<Self, RuleProblem> {
        let alts = match spec.strip_suffix(":*") {
            Some(prefix) => {
                let prefix = glob::bash(prefix.trim_end());
                if prefix.is_empty() {
                    return Err(RuleProblem::EmptyPrefix);
                }
                let mut more = prefix.clone();
                more.extend([Tok::Space, Tok::Star]);
                vec![prefix, more]
            }
            None => vec![glob::bash(spec)],
        };
        Ok(BashPattern { alts })
    }

    /// Whether one command part (trimmed) matches.
    pub(super) fn matches(&self, part: &str) -> bool {
        self.alts.iter().any(|alt| glob::matches(alt, part))
    }

    /// Whether every part this pattern matches is matched by `wider`.
    pub(super) fn covered_by(&self, wider: &BashPattern) -> bool {
        self.alts
            .iter()
            .all(|narrow| wider.alts.iter().any(|wide| glob::covers(wide, narrow)))
    }
}

/// The parts of `command` that an allow rule must each cover, or `None` when no allow rule
/// with a specifier may cover the command at all: it substitutes a command (`$(`, a
/// backtick), substitutes a process (`<(`, `>(`), writes through a redirection (any `>`
/// except in `2>&1`), or has no command in it.
pub(super) fn allow_parts(command: &str) -> Option<Vec<&str>> {
    let substitutes = command.contains("$(") || command.contains('`') || command.contains("<(");
    let redirects = command.replace("2>&1", "").contains('>');
    let parts = split(command, Split::Operators);
    (!substitutes && !redirects && !parts.is_empty()).then_some(parts)
}

/// Every string a deny rule is tried against: the whole command, each piece between the
/// operators and also between parentheses, braces and backticks (so the command inside
/// `$(..)` or a subshell is a piece of its own), and each of these again with what commonly
/// stands in front of a command taken away (see [`unwrapped`]). A command continued over
/// lines with `\` is read both as written and joined, as the shell joins it.
pub(super) fn deny_candidates(command: &str) -> Vec<String> {
    let joined = command.replace("\\\n", "");
    let texts = if joined == command {
        vec![command]
    } else {
        vec![command, joined.as_str()]
    };
    let mut candidates = Vec::new();
    for text in texts {
        candidates.push(text.trim().to_owned());
        candidates.extend(
            split(text, Split::OperatorsAndGroups)
                .into_iter()
                .map(str::to_owned),
        );
    }
    let unwrapped: Vec<String> = candidates
        .iter()
        .filter_map(|c| Some(unwrapped(c)).filter(|u| u != c))
        .collect();
    candidates.extend(unwrapped);
    candidates
}

/// Where [`split`] cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// At `&&`, `||`, `;`, `|`, `|&`, `&` and line ends, not at the `&` of a redirection
    /// (`2>&1`, `>&2`, `<&3`, `&>file`).
    Operators,
    /// As [`Split::Operators`], and at `(`, `)`, `{`, `}` and backticks too.
    OperatorsAndGroups,
}

/// The trimmed, non-empty pieces of `command` between the places `how` cuts. Quotes are not
/// read: an operator inside quotes cuts as well.
fn split(command: &str, how: Split) -> Vec<&str> {
    let bytes = command.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let next = bytes.get(i + 1).copied();
        let after_redirect = i > 0 && matches!(bytes[i - 1], b'>' | b'<');
        let width = match bytes[i] {
            b'\n' | b'\r' | b';' => 1,
            b'|' if matches!(next, Some(b'|' | b'&')) => 2,
            b'|' => 1,
            b'&' if next == Some(b'&') => 2,
            b'&' if after_redirect || next == Some(b'>') => 0,
            b'&' => 1,
            b'(' | b')' | b'{' | b'}' | b'`' if how == Split::OperatorsAndGroups => 1,
            _ => 0,
        };
        if width == 0 {
            i += 1;
        } else {
            // Every cut is at an ASCII byte, so both slices fall on character boundaries.
            push_trimmed(&mut parts, &command[start..i]);
            i += width;
            start = i;
        }
    }
    push_trimmed(&mut parts, &command[start..]);
    parts
}

/// Appends `part` without surrounding ASCII whitespace (what the shell skips), unless
/// nothing is left of it.
fn push_trimmed<'a>(parts: &mut Vec<&'a str>, part: &'a str) {
    let part = part.trim_matches(|c: char| c.is_ascii_whitespace());
    if !part.is_empty() {
        parts.push(part);
    }
}

/// Words that may stand before a command without changing which program runs: shell
/// keywords, and wrappers that take the command as their next word when given no options.
const LEADING_WORDS: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "time", "sudo", "env", "command",
    "builtin", "exec", "nohup", "nice",
];

/// `part` with what commonly stands before the program taken away — opening `(`, `{`, `!`,
/// the [`LEADING_WORDS`], variable assignments (`FOO=1`) — its program name unquoted and
/// without directories (`'rm'`, `\rm`, `/bin/rm` → `rm`), and closing `)`, `}` dropped from
/// the end. Best effort for deny rules: wrappers with options (`sudo -u x rm`), `bash -c`,
/// `eval`, `xargs` and programs named through variables are not seen through.
fn unwrapped(part: &str) -> String {
    let mut rest = part;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '(' | '{' | '!'));
        let (word, after) = first_word(rest);
        if word.is_empty() || !(LEADING_WORDS.contains(&word) || is_assignment(word)) {
            break;
        }
        rest = after;
    }
    let (word, after) = first_word(rest);
    let unquoted: String = word
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
        .collect();
    let program = match unquoted.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => name,
        _ => &unquoted,
    };
    format!("{program}{after}")
        .trim_end_matches(|c: char| c.is_whitespace() || matches!(c, ')' | '}'))
        .to_owned()
}

/// The first word of `s` (which starts with no whitespace) and the rest after it. A word
/// ends at whitespace outside quotes; a backslash protects the next character.
fn first_word(s: &str) -> (&str, &str) {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            _ if escaped => escaped = false,
            (Some('\''), '\'') => quote = None,
            (Some('\''), _) => {}
            (_, '\\') => escaped = true,
            (Some('"'), '"') => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if c.is_whitespace() => return (&s[..i], &s[i..]),
            _ => {}
        }
    }
    (s, "")
}

/// `NAME=value` or `NAME+=value`, NAME being a shell variable name.
fn is_assignment(word: &str) -> bool {
    let Some((name, _)) = word.split_once('=') else {
        return false;
    };
    let name = name.strip_suffix('+').unwrap_or(name);
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
