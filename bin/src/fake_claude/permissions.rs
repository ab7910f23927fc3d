//! Whether a `MOCK_TOOL` Bash command runs, is refused or is asked about when the fake runs
//! with `--permission-prompt-tool stdio`: a small model of the real CLI 2.1.329's permission
//! check, fitted to what it was measured to do (not its implementation). Pure: no I/O.
//!
//! | check, in order | outcome |
//! |---|---|
//! | `--disallowedTools Bash` | the tool does not exist |
//! | a subcommand matches a `Bash(..)` deny rule | refused (`subcommandResults`) |
//! | mode `bypassPermissions` | runs |
//! | an allow rule `Bash` | runs, even outside the working directories |
//! | read-only (`echo`, `printf`, `true`, `ls`, `pwd`, ... no `>`, no `$(`) | runs, in every mode |
//! | writes nothing outside the working directories, and allow rules cover every subcommand | runs |
//! | same, only file commands (`touch`, `mkdir`, `rm`, ...) and mode `acceptEdits` or `auto` | runs |
//! | mode `dontAsk` | refused (`mode`) |
//! | mode `plan` or `auto` | refused (the auto-mode classifier does not run offline) |
//! | otherwise (`default`) | asked |

use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

/// Commands the real CLI runs without asking, in any mode.
const READ_ONLY: &[&str] = &[
    "echo", "printf", "true", "false", "pwd", "ls", "cat", "head", "tail", "wc",
];

/// Commands that change files: acceptEdits runs them inside the working directories, and
/// their arguments are the paths they write.
const FILE_COMMANDS: &[&str] = &["touch", "mkdir", "rm", "rmdir", "mv", "cp"];

/// Where a rule came from; it decides the `source` the tool_result's meta reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--allowedTools` / `--disallowedTools`.
    Flag,
    /// An `updatedPermissions` entry for the session (or `cliArg`).
    Session,
    /// An `updatedPermissions` entry for a settings file (kept in memory only).
    Settings,
}

impl Origin {
    fn source(self) -> &'static str {
        match self {
            Origin::Flag => "config",
            Origin::Session => "user_temporary",
            Origin::Settings => "user_permanent",
        }
    }
}

/// What a `Bash` rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `Bash`: every command.
    Tool,
    /// `Bash(npm run:*)` or `Bash(npm run *)`: the prefix, then a word boundary.
    Prefix(String),
    /// `Bash(git status)`: exactly this command.
    Exact(String),
}

impl Pattern {
    /// A `Bash` rule's content (`None`: the whole tool).
    fn from_content(content: Option<&str>) -> Self {
        match content.map(str::trim) {
            None | Some("" | "*") => Pattern::Tool,
            Some(c) => match c.strip_suffix(":*").or_else(|| c.strip_suffix(" *")) {
                Some(prefix) => Pattern::Prefix(prefix.trim_end().to_string()),
                None => Pattern::Exact(c.to_string()),
            },
        }
    }

    /// A `--allowedTools` entry (`Bash`, `Bash(..)`); other tools' entries give `None`.
    fn from_entry(entry: &str) -> Option<Self> {
        if entry == "Bash" {
            return Some(Pattern::Tool);
        }
        let inner = entry.strip_prefix("Bash(")?.strip_suffix(')')?;
        Some(Self::from_content(Some(inner)))
    }

    fn matches(&self, command: &str) -> bool {
        match self {
            Pattern::Tool => true,
            Pattern::Exact(c) => command == c,
            Pattern::Prefix(p) => command
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace)),
        }
    }
}

/// Splits `--allowedTools` values into entries: commas and whitespace separate them, except
/// inside parentheses (`Bash(git log:*),Read` is two entries).
fn entries(values: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for v in values {
        let (mut depth, mut cur) = (0usize, String::new());
        for c in v.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth == 0 && (c == ',' || c.is_whitespace()) {
                out.extend((!cur.is_empty()).then(|| std::mem::take(&mut cur)));
            } else {
                cur.push(c);
            }
        }
        out.extend((!cur.is_empty()).then_some(cur));
    }
    out
}

/// Why a command was accepted without a question (the tool_result meta's
/// `permission_decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    pub source: &'static str,
    pub reason_type: Option<&'static str>,
}

/// Why a command was refused without a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A deny rule matched this (sub)command.
    Rule(String),
    /// dontAsk mode.
    Mode,
    /// plan or auto mode: the auto-mode classifier, which does not run offline.
    Classifier,
}

/// The can_use_tool question's variable part.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// The first path the command writes, absolute; `None` for a command that writes no path.
    pub blocked_path: Option<String>,
    pub suggestions: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// `--disallowedTools Bash`: the tool does not exist in this session.
    Unavailable,
    Run(Accept),
    Refuse(Refusal),
    Ask(Question),
}

/// What an answer's `updatedPermissions` changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Updated {
    /// The mode a `setMode` entry asks for.
    pub mode: Option<String>,
    /// A working directory was added (the real CLI then appends a reminder to the
    /// tool_result it sends, and the mock no longer sees a tool_result last).
    pub new_dirs: bool,
}

/// The permission rules and working directories of one process: from the flags, plus what
/// `updatedPermissions` answers added (they outlive `/clear`, as the real CLI's do).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow: Vec<(Pattern, Origin)>,
    deny: Vec<Pattern>,
    /// Working directories besides the cwd (`addDirectories`).
    dirs: Vec<PathBuf>,
}

impl Policy {
    pub fn new(allowed: &[String], disallowed: &[String]) -> Self {
        let parse = |v: &[String]| -> Vec<Pattern> {
            entries(v)
                .iter()
                .filter_map(|e| Pattern::from_entry(e))
                .collect()
        };
        Self {
            allow: parse(allowed)
                .into_iter()
                .map(|p| (p, Origin::Flag))
                .collect(),
            deny: parse(disallowed),
            dirs: Vec::new(),
        }
    }

    /// Applies an allow answer's `updatedPermissions` (addRules, addDirectories, setMode;
    /// other kinds are ignored).
    pub fn update(&mut self, updates: &Value, cwd: &Path) -> Updated {
        let mut out = Updated::default();
        for u in updates.as_array().into_iter().flatten() {
            let destination = u.get("destination").and_then(Value::as_str);
            let origin = match destination {
                Some("session" | "cliArg") => Origin::Session,
                _ => Origin::Settings,
            };
            match u.get("type").and_then(Value::as_str) {
                Some("addRules") => {
                    let rules = u.get("rules").and_then(Value::as_array);
                    for r in rules.into_iter().flatten() {
                        if r.get("toolName").and_then(Value::as_str) != Some("Bash") {
                            continue;
                        }
                        let p = Pattern::from_content(r.get("ruleContent").and_then(Value::as_str));
                        match u.get("behavior").and_then(Value::as_str) {
                            Some("allow") => self.allow.push((p, origin)),
                            Some("deny") => self.deny.push(p),
                            _ => {}
                        }
                    }
                }
                Some("addDirectories") => {
                    let dirs = u.get("directories").and_then(Value::as_array);
                    for d in dirs.into_iter().flatten().filter_map(Value::as_str) {
                        let d = resolve(cwd, d);
                        if !self.dirs.contains(&d) {
                            self.dirs.push(d);
                            out.new_dirs = true;
                        }
                    }
                }
                Some("setMode") => {
                    out.mode = u.get("mode").and_then(Value::as_str).map(String::from);
                }
                _ => {}
            }
        }
        out
    }

    fn inside(&self, path: &Path, cwd: &Path) -> bool {
        std::iter::once(cwd)
            .chain(self.dirs.iter().map(PathBuf::as_path))
            .any(|d| path.starts_with(d))
    }

    /// What happens to `command` in permission mode `mode` (see the module's table).
    pub fn decide(&self, mode: &str, command: &str, cwd: &Path) -> Decision {
        if self.deny.contains(&Pattern::Tool) {
            return Decision::Unavailable;
        }
        let shape = Shape::of(command);
        let denied = std::iter::once(command)
            .chain(shape.segments.iter().copied())
            .find(|s| self.deny.iter().any(|p| p.matches(s)));
        if let Some(seg) = denied {
            return Decision::Refuse(Refusal::Rule(seg.to_string()));
        }
        let config = |reason_type| {
            Decision::Run(Accept {
                source: "config",
                reason_type: Some(reason_type),
            })
        };
        if mode == "bypassPermissions" {
            return config("mode");
        }
        if let Some((_, origin)) = self.allow.iter().find(|(p, _)| *p == Pattern::Tool) {
            return Decision::Run(Accept {
                source: origin.source(),
                reason_type: Some("rule"),
            });
        }
        if shape.read_only() {
            return config("subcommandResults");
        }
        let cwd = normalize(cwd);
        let inside = shape
            .writes
            .iter()
            .all(|w| self.inside(&resolve(&cwd, w), &cwd));
        if inside && !shape.opaque {
            if let Some(origin) = self.allowed_by_content(command, &shape) {
                let reason_type = match origin {
                    Origin::Flag => "subcommandResults",
                    _ => "rule",
                };
                return Decision::Run(Accept {
                    source: origin.source(),
                    reason_type: Some(reason_type),
                });
            }
            if shape.edits_only() {
                match mode {
                    "acceptEdits" => return config("subcommandResults"),
                    "auto" => return config("mode"),
                    _ => {}
                }
            }
        }
        match mode {
            "dontAsk" => Decision::Refuse(Refusal::Mode),
            "plan" | "auto" => Decision::Refuse(Refusal::Classifier),
            _ => Decision::Ask(self.question(mode, command, &shape, &cwd)),
        }
    }

    /// The origin of the rules that allow `command`: an exact rule for all of it, or rules
    /// covering every subcommand that is not read-only (a prefix rule never covers `&&`).
    fn allowed_by_content(&self, command: &str, shape: &Shape<'_>) -> Option<Origin> {
        let rule_for = |s: &str| {
            self.allow
                .iter()
                .find(|(p, _)| p.matches(s))
                .map(|(_, o)| *o)
        };
        let exact = self
            .allow
            .iter()
            .find(|(p, _)| matches!(p, Pattern::Exact(e) if e == command));
        if let Some((_, o)) = exact {
            return Some(*o);
        }
        let mut origin = None;
        for seg in &shape.segments {
            match rule_for(seg) {
                Some(o) => origin = origin.or(Some(o)),
                None if shape.segment_read_only(seg) => {}
                None => return None,
            }
        }
        origin
    }

    /// The can_use_tool question for `command`, with the real CLI's suggestions: a rule (the
    /// first two words and ` *` when the written path is inside the cwd, the whole command
    /// otherwise), the written path's directory, and acceptEdits (default mode,
    /// a file command). A command writing no path gets one exact rule and a reason instead.
    fn question(&self, mode: &str, command: &str, shape: &Shape<'_>, cwd: &Path) -> Question {
        let rule = |content: &str| {
            json!({"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": content}],
                   "behavior": "allow", "destination": "localSettings"})
        };
        let Some(first) = shape.writes.first() else {
            return Question {
                blocked_path: None,
                suggestions: json!([rule(command)]),
            };
        };
        let path = resolve(cwd, first);
        // Measured: the cwd, not a directory added later, earns the wildcard rule.
        let content = if path.starts_with(cwd) {
            let words: Vec<&str> = shape
                .segments
                .first()
                .map(|s| words(s).into_iter().take(2).collect())
                .unwrap_or_default();
            format!("{} *", words.join(" "))
        } else {
            command.to_string()
        };
        let dir = path
            .parent()
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let mut suggestions = vec![
            rule(&content),
            json!({"type": "addDirectories", "directories": [dir], "destination": "session"}),
        ];
        if mode == "default" && shape.file_command {
            suggestions
                .push(json!({"type": "setMode", "mode": "acceptEdits", "destination": "session"}));
        }
        Question {
            blocked_path: Some(path.to_string_lossy().into_owned()),
            suggestions: Value::Array(suggestions),
        }
    }
}

/// Whether the real CLI reports `noOutputExpected` for `command` (a file command first).
pub fn no_output_expected(command: &str) -> bool {
    let shape = Shape::of(command);
    shape
        .segments
        .first()
        .and_then(|s| words(s).first().copied())
        .is_some_and(|w| FILE_COMMANDS.contains(&w))
}

/// The words of a simple command (whitespace-separated; quotes around a word removed).
fn words(segment: &str) -> Vec<&str> {
    segment
        .split_whitespace()
        .map(|w| {
            w.strip_prefix('\'')
                .and_then(|w| w.strip_suffix('\''))
                .or_else(|| w.strip_prefix('"').and_then(|w| w.strip_suffix('"')))
                .unwrap_or(w)
        })
        .collect()
}

/// A shell command as far as the permission check looks at it.
#[derive(Debug)]
struct Shape<'a> {
    /// The simple commands between `&&`, `||`, `;`, `|`, `&` and newlines (quotes respected).
    segments: Vec<&'a str>,
    /// Paths written: `>` / `>>` targets and the arguments of file commands, as written.
    writes: Vec<&'a str>,
    /// A command substitution (`$(..)`, backticks): nothing is known about it.
    opaque: bool,
    /// Some segment is a file command.
    file_command: bool,
}

impl<'a> Shape<'a> {
    fn of(command: &'a str) -> Self {
        let mut segments = Vec::new();
        let (mut start, mut quote, mut prev) = (0, None, ' ');
        for (i, c) in command.char_indices() {
            match (quote, c) {
                (Some(q), _) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                // `>&` (as in `2>&1`) duplicates a descriptor: no separator.
                (None, ';' | '|' | '&' | '\n') if prev != '>' => {
                    segments.push(&command[start..i]);
                    start = i + c.len_utf8();
                }
                _ => {}
            }
            prev = c;
        }
        segments.push(&command[start..]);
        let segments: Vec<&str> = segments
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let mut writes = Vec::new();
        let mut file_command = false;
        for seg in &segments {
            let ws = words(seg);
            let is_file = ws.first().is_some_and(|w| FILE_COMMANDS.contains(w));
            file_command |= is_file;
            let mut it = ws.iter().skip(1).peekable();
            while let Some(w) = it.next() {
                if let Some((_, after)) = w.split_once('>') {
                    let after = after.trim_start_matches('>');
                    if after.starts_with('&') {
                        continue;
                    }
                    let target = if after.is_empty() {
                        it.next().copied()
                    } else {
                        Some(after)
                    };
                    writes.extend(target.filter(|t| *t != "/dev/null"));
                } else if is_file && !w.starts_with('-') {
                    writes.push(w);
                }
            }
        }
        Shape {
            segments,
            writes,
            opaque: command.contains("$(") || command.contains('`'),
            file_command,
        }
    }

    fn segment_read_only(&self, seg: &str) -> bool {
        !seg.contains('>') && words(seg).first().is_some_and(|w| READ_ONLY.contains(w))
    }

    fn read_only(&self) -> bool {
        !self.opaque
            && self.writes.is_empty()
            && !self.segments.is_empty()
            && self.segments.iter().all(|s| self.segment_read_only(s))
    }

    /// Only file commands and read-only ones, writing something.
    fn edits_only(&self) -> bool {
        !self.writes.is_empty()
            && self.segments.iter().all(|s| {
                words(s)
                    .first()
                    .is_some_and(|w| FILE_COMMANDS.contains(w) || READ_ONLY.contains(w))
            })
    }
}

/// `path` made absolute against `cwd` and normalized lexically (`.` and `..` resolved).
fn resolve(cwd: &Path, path: &str) -> PathBuf {
    normalize(&cwd.join(path))
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str], disallowed: &[&str]) -> Policy {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Policy::new(&own(allowed), &own(disallowed))
    }

    /// A short name for a decision: run / ask / refuse:<why> / unavailable.
    fn outcome(d: &Decision) -> String {
        match d {
            Decision::Unavailable => "unavailable".into(),
            Decision::Run(_) => "run".into(),
            Decision::Ask(_) => "ask".into(),
            Decision::Refuse(Refusal::Rule(s)) => format!("refuse:rule:{s}"),
            Decision::Refuse(Refusal::Mode) => "refuse:mode".into(),
            Decision::Refuse(Refusal::Classifier) => "refuse:classifier".into(),
        }
    }

    #[test]
    fn decisions_follow_the_measured_cli() {
        let cwd = Path::new("/w");
        let none = policy(&[], &[]);
        #[rustfmt::skip]
        let table: &[(&Policy, &str, &str, &str)] = &[
            (&none, "default", "echo hi", "run"),
            (&none, "default", "printf x", "run"),
            (&none, "default", "true", "run"),
            (&none, "default", "echo hi | cat", "run"),
            (&none, "default", "echo hi > y", "ask"),
            (&none, "default", "echo hi && touch y", "ask"),
            (&none, "default", "echo $(rm -rf x)", "ask"),
            (&none, "default", "touch y", "ask"),
            (&none, "default", "touch /tmp/x", "ask"),
            (&none, "default", "curl -s http://h/", "ask"),
            (&none, "acceptEdits", "touch y", "run"),
            (&none, "acceptEdits", "touch a && touch b", "run"),
            (&none, "acceptEdits", "mkdir d", "run"),
            (&none, "acceptEdits", "touch /tmp/x", "ask"),
            (&none, "acceptEdits", "touch ../x", "ask"),
            (&none, "acceptEdits", "curl -s http://h/", "ask"),
            (&none, "auto", "touch y", "run"),
            (&none, "auto", "touch /tmp/x", "refuse:classifier"),
            (&none, "auto", "curl -s http://h/", "refuse:classifier"),
            (&none, "plan", "touch y", "refuse:classifier"),
            (&none, "plan", "echo hi", "run"),
            (&none, "dontAsk", "touch y", "refuse:mode"),
            (&none, "dontAsk", "echo hi", "run"),
            (&none, "bypassPermissions", "touch /tmp/x", "run"),
            (&policy(&["Bash"], &[]), "default", "touch /tmp/x", "run"),
            (&policy(&["Bash(touch:*)"], &[]), "default", "touch y", "run"),
            (&policy(&["Bash(touch:*)"], &[]), "default", "touchy y", "ask"),
            (&policy(&["Bash(touch:*)"], &[]), "default", "touch /tmp/x", "ask"),
            (&policy(&["Bash(touch:*)"], &[]), "default", "touch y && rm z", "ask"),
            (&policy(&["Bash(touch:*)"], &[]), "default", "echo a && touch y", "run"),
            (&policy(&["Read,Bash(mkdir:*)"], &[]), "default", "touch y", "ask"),
            (&policy(&["Bash(mkdir:*) Bash(touch y)"], &[]), "default", "touch y", "run"),
            (&policy(&["Bash(touch y *)"], &[]), "dontAsk", "touch y", "run"),
            (&policy(&[], &["Bash(touch:*)"]), "default", "touch y", "refuse:rule:touch y"),
            (&policy(&[], &["Bash(touch:*)"]), "bypassPermissions", "echo a; touch y", "refuse:rule:touch y"),
            (&policy(&[], &["Bash"]), "default", "echo hi", "unavailable"),
        ];
        for (p, mode, cmd, want) in table {
            let got = outcome(&p.decide(mode, cmd, cwd));
            assert_eq!(&got, want, "{mode} {cmd:?}");
        }
    }

    #[test]
    fn questions_carry_the_real_suggestions() {
        let cwd = Path::new("/w");
        let ask = |mode: &str, cmd: &str| match policy(&[], &[]).decide(mode, cmd, cwd) {
            Decision::Ask(q) => q,
            other => panic!("{cmd}: {other:?}"),
        };
        let q = ask("default", "touch /tmp/fakeperm-x");
        assert_eq!(q.blocked_path.as_deref(), Some("/tmp/fakeperm-x"));
        assert_eq!(
            q.suggestions,
            json!([
                {"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": "touch /tmp/fakeperm-x"}],
                 "behavior": "allow", "destination": "localSettings"},
                {"type": "addDirectories", "directories": ["/tmp"], "destination": "session"},
                {"type": "setMode", "mode": "acceptEdits", "destination": "session"},
            ])
        );
        let q = ask("default", "touch y");
        assert_eq!(q.blocked_path.as_deref(), Some("/w/y"));
        assert_eq!(q.suggestions[0]["rules"][0]["ruleContent"], "touch y *");
        assert_eq!(q.suggestions[1]["directories"], json!(["/w"]));
        let q = ask("default", "echo hi > y");
        assert_eq!(q.suggestions[0]["rules"][0]["ruleContent"], "echo hi *");
        assert_eq!(
            q.suggestions.as_array().map(Vec::len),
            Some(2),
            "no setMode"
        );
        let q = ask("acceptEdits", "touch /tmp/x");
        assert_eq!(
            q.suggestions.as_array().map(Vec::len),
            Some(2),
            "no setMode"
        );
        let q = ask("default", "curl -s http://h/");
        assert_eq!(q.blocked_path, None);
        assert_eq!(
            q.suggestions,
            json!([{"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": "curl -s http://h/"}],
                    "behavior": "allow", "destination": "localSettings"}])
        );
    }

    #[test]
    fn answers_add_rules_directories_and_modes() {
        let cwd = Path::new("/w");
        let mut p = policy(&[], &[]);
        let exact = json!([{"type": "addRules", "behavior": "allow", "destination": "session",
                            "rules": [{"toolName": "Bash", "ruleContent": "touch /tmp/x"}]}]);
        assert_eq!(p.update(&exact, cwd), Updated::default());
        // A content rule does not lift the outside-the-working-directories check ...
        assert_eq!(outcome(&p.decide("default", "touch /tmp/x", cwd)), "ask");
        let dir = json!([{"type": "addDirectories", "directories": ["/tmp"], "destination": "session"},
                         {"type": "setMode", "mode": "acceptEdits", "destination": "session"}]);
        let updated = p.update(&dir, cwd);
        assert_eq!(updated.mode.as_deref(), Some("acceptEdits"));
        assert!(updated.new_dirs);
        assert!(!p.update(&dir, cwd).new_dirs, "added once");
        // ... adding the directory does.
        match p.decide("default", "touch /tmp/x", cwd) {
            Decision::Run(a) => assert_eq!(a.source, "user_temporary"),
            other => panic!("{other:?}"),
        }
        let tool = json!([{"type": "addRules", "behavior": "allow", "destination": "localSettings",
                           "rules": [{"toolName": "Bash"}]}]);
        p.update(&tool, cwd);
        match p.decide("default", "touch /etc/x", cwd) {
            Decision::Run(a) => {
                assert_eq!((a.source, a.reason_type), ("user_permanent", Some("rule")))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn file_commands_expect_no_output() {
        assert!(no_output_expected("touch y"));
        assert!(no_output_expected("mkdir -p d && echo ok"));
        assert!(!no_output_expected("echo hi"));
        assert!(!no_output_expected("true"));
    }
}
