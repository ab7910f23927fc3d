//! Permission rules in Claude Code's own syntax, and the decision they give for one tool call.
//!
//! When a worker's Claude asks whether it may use a tool, the pool first consults a
//! [`RuleSet`]: a deny rule that matches refuses the call, otherwise an allow rule that
//! matches grants it, otherwise ([`RuleSet::decide`] returns `None`) a person is asked.
//! Matching is pure: the working directory and the home directory come in a
//! [`MatchContext`], nothing is read from the environment or the filesystem.
//!
//! # Syntax
//!
//! | rule | covers |
//! |---|---|
//! | `Bash`, `WebFetch`, `Read`, any `Tool` | every call of that tool |
//! | `Edit` | every call of Edit, Write, MultiEdit and NotebookEdit |
//! | `mcp__github`, `mcp__github__*` | every tool of the MCP server `github` (`mcp__github__…`) |
//! | `mcp__github__create_issue` | that MCP tool |
//! | `Bash(cargo test)` | exactly that command |
//! | `Bash(cargo test:*)` | `cargo test`, and `cargo test` followed by a space or tab and anything (`cargo test --all`, not `cargo tests`) |
//! | `Bash(git * --dry-run)` | `*` anywhere in a Bash specifier: any run of characters |
//! | `Edit(src/**)`, `Read(*.env)` | files by a gitignore-style pattern relative to the working directory (`**` any directories, `*` within one segment, `?` one character, `[a-z]` classes, `\` escapes; a pattern without `/` matches at any depth) |
//! | `Edit(/src/**)`, `Edit(./src/**)` | anchored at the working directory (Claude Code: the project root) |
//! | `Edit(//tmp/**)` | an absolute path |
//! | `Read(~/.ssh/**)` | relative to the home directory |
//! | `Edit(../shared/**)` | leading `..` move the anchor up |
//! | `WebFetch(domain:example.com)` | URLs whose host is `example.com` or a subdomain of it |
//!
//! `Edit(..)` covers all four file-editing tools; `Write(..)`, `MultiEdit(..)`,
//! `NotebookEdit(..)` and `Read(..)` each cover their own tool. The path comes from the
//! call's `file_path`, else `notebook_path`, else `path`; the URL from `url`; the command
//! from `command`. Tool names compare exactly (`bash` is not `Bash`).
//!
//! # How a call is read
//!
//! Where a rule cannot read a call, it errs on the safe side: an allow rule does not match,
//! a deny rule does.
//!
//! - **Compound Bash commands.** A command is cut at `&&`, `||`, `;`, `|`, `&` and line ends
//!   (not at the `&` of `2>&1`); it is allowed only when every part matches an allow rule
//!   (several rules may share the parts). Quotes are not read, so an operator inside quotes
//!   also cuts: such a command is asked rather than allowed.
//! - **What no Bash specifier allows.** Command substitution (`$(`, backticks), process
//!   substitution (`<(`, `>(`) and any `>` other than in `2>&1` (so `>/dev/null` too) make a
//!   command one that only a bare `Bash` rule allows; otherwise it is asked.
//! - **Environment assignments.** `FOO=1 cargo test` is not allowed by `Bash(cargo test:*)`:
//!   an assignment can change what the command does (`PATH=.`, `LD_PRELOAD=…`). A rule that
//!   spells it out (`Bash(FOO=1 cargo test:*)`) does allow it.
//! - **Deny rules on Bash** are tried against the whole command, every part (cut also at
//!   parentheses, braces and backticks, so `echo $(rm -rf /)` has the part `rm -rf /`), and
//!   every one of those with leading `(`, `{`, `!`, shell keywords (`then`, `do`, …),
//!   wrappers without options (`sudo`, `env`, `nohup`, …) and assignments taken away and the
//!   program unquoted and stripped of directories (`'rm'`, `/bin/rm` → `rm`); a command
//!   continued over lines with `\` is also read joined. This is best
//!   effort: `bash -c`, `eval`, `xargs`, `sudo -u x` and programs named through variables are
//!   not seen through, and a deny may refuse a harmless command that only mentions a denied
//!   one inside quotes.
//! - **Paths** are normalised lexically (`.` and `..` resolved, relative paths made absolute
//!   against the working directory), so `src/../secret` is `secret` and does not match
//!   `src/**`. Symbolic links are not followed. A `~` pattern with no home in the context
//!   matches nothing for allow and everything for deny.
//! - **URLs** are read narrowly: an `http`/`https` URL with a plain ASCII host. Credentials,
//!   ports and backslashes do not fool the host (`https://example.com@evil.com` is
//!   `evil.com`); a URL that cannot be read this way (percent-escapes or an IP literal in the
//!   host, another scheme) matches no domain allow rule and every domain deny rule.
//! - **Other specifiers** (`WebSearch(x)`, `WebFetch(https://…)`, `mcp__s__t(x)`): their
//!   meaning is unknown here, so they never allow, and as deny rules they refuse every call
//!   of their tool.
//! - **Read rules** are checked for the Read tool only; Grep, Glob and LS are matched by name.

mod bash;
mod domain;
mod glob;
mod path;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::bash::BashPattern;
use self::path::PathPattern;

/// The tools an `Edit` rule covers.
const EDIT_TOOLS: [&str; 4] = ["Edit", "Write", "MultiEdit", "NotebookEdit"];

/// The tools whose specifier is a path pattern.
const PATH_TOOLS: [&str; 5] = ["Edit", "Write", "MultiEdit", "NotebookEdit", "Read"];

/// The input fields a file tool names its file in, in the order they are looked for.
const PATH_FIELDS: [&str; 3] = ["file_path", "notebook_path", "path"];

/// How much of an offending rule or line an error quotes, in characters.
const SHOWN_CHARS: usize = 200;

/// One permission rule: a tool, and optionally a specifier narrowing it to some calls.
///
/// Parsed with [`str::parse`]; [`Display`](fmt::Display) gives back the canonical text (the
/// rule trimmed, and its specifier trimmed inside the parentheses). Serialized as that text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The tool name as written (`Bash`, `mcp__github__*`).
    tool: String,
    /// The text between the parentheses, trimmed; `None` for the whole tool.
    specifier: Option<String>,
    /// Which tool names the rule applies to.
    scope: Scope,
    /// What the specifier asks of a call.
    spec: Spec,
}

/// Which tool names a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    /// One tool.
    Tool(String),
    /// Edit, Write, MultiEdit and NotebookEdit (an `Edit` rule).
    EditTools,
    /// Every tool whose name starts with this prefix, `mcp__<server>__`.
    McpServer(String),
}

/// What a rule's specifier asks of a call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Spec {
    /// No specifier: every call.
    Whole,
    /// A Bash command pattern.
    Bash(BashPattern),
    /// A file path pattern.
    Path(PathPattern),
    /// A `domain:` for WebFetch, lowercased.
    Domain(String),
    /// A specifier with no meaning here: never allows, always denies.
    Unknown,
}

/// What a rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The call may run without asking.
    Allow,
    /// The call is refused without asking.
    Deny,
}

/// Where a call runs: what relative paths and `~` patterns are read against.
#[derive(Debug, Clone, Copy)]
pub struct MatchContext<'a> {
    /// The task's working directory (absolute): the anchor of relative patterns and paths.
    pub cwd: &'a Path,
    /// The home directory `~` patterns are read against; `None` when unknown.
    pub home: Option<&'a Path>,
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleProblem {
    /// Nothing but whitespace.
    #[error("the rule is empty")]
    Empty,
    /// Parentheses with nothing before them.
    #[error("the tool name before the parentheses is empty")]
    EmptyToolName,
    /// A tool name with characters a tool name does not have.
    #[error(
        "{name:?} is not a tool name (ASCII letters, digits, '_' and '-', starting with a letter; `mcp__server__*` for every tool of a server)"
    )]
    BadToolName {
        /// The name as written (its start, when long).
        name: String,
    },
    /// A `(` without its `)`, a `)` without its `(`, or text after the closing `)`.
    #[error(
        "unbalanced parentheses: write `Tool(specifier)`, with a lone parenthesis inside escaped as `\\(` or `\\)`"
    )]
    Unbalanced,
    /// `Tool()`.
    #[error("the specifier in parentheses is empty (write `{tool}` for the whole tool)")]
    EmptySpecifier {
        /// The tool the rule names.
        tool: String,
    },
    /// `Bash(:*)`.
    #[error("`:*` needs a command prefix before it (write `Bash` for every command)")]
    EmptyPrefix,
    /// `Edit(!x)`.
    #[error("negated patterns (`!`) are not supported")]
    Negation,
    /// `Edit(/)`, `Edit(..)`: an anchor and no file below it.
    #[error("the pattern names no file below its anchor (write `/**` for everything)")]
    NoFile,
    /// `Edit(src/../x)`.
    #[error("`..` may only begin a path pattern")]
    ParentInPattern,
    /// `WebFetch(domain:…)` with something that is not a domain name.
    #[error("{domain:?} is not a domain name (ASCII letters, digits, '-' and '.')")]
    BadDomain {
        /// The domain as written (its start, when long).
        domain: String,
    },
}

/// A rule, a rule list or a rules file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// One rule is malformed.
    #[error("invalid permission rule {rule:?}: {problem}")]
    Invalid {
        /// The rule as written (its start, when long).
        rule: String,
        /// What is wrong with it.
        problem: RuleProblem,
    },
    /// A line of a plain-text rules file holds a malformed rule.
    #[error("rules file line {line}: {error}")]
    AtLine {
        /// 1-based line number.
        line: usize,
        /// The rule's error.
        error: Box<RuleError>,
    },
    /// A line of a plain-text rules file is neither `allow <rule>` nor `deny <rule>`.
    #[error("rules file line {line}: expected `allow <rule>` or `deny <rule>`, found {text:?}")]
    NotAllowOrDeny {
        /// 1-based line number.
        line: usize,
        /// The line as written (its start, when long).
        text: String,
    },
    /// A rules file starting with `{` is not settings JSON of the expected shape.
    #[error("rules file: not settings JSON with permissions.allow/deny as lists of strings: {0}")]
    Json(#[from] serde_json::Error),
}

impl FromStr for Rule {
    type Err = RuleError;

    /// Reads `Tool` or `Tool(specifier)`, surrounding whitespace ignored.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Rule::parse(text.trim()).map_err(|problem| RuleError::Invalid {
            rule: shown(text.trim()),
            problem,
        })
    }
}

impl Rule {
    /// Parses a trimmed rule.
    fn parse(text: &str) -> Result<Rule, RuleProblem> {
        if text.is_empty() {
            return Err(RuleProblem::Empty);
        }
        let (tool, specifier) = match text.find('(') {
            None if text.contains(')') => return Err(RuleProblem::Unbalanced),
            None => (text, None),
            Some(open) => {
                let inner = text[open + 1..]
                    .strip_suffix(')')
                    .filter(|inner| balanced(inner))
                    .ok_or(RuleProblem::Unbalanced)?;
                (&text[..open], Some(inner.trim()))
            }
        };
        let scope = scope(tool)?;
        let spec = match specifier {
            None => Spec::Whole,
            Some("") => {
                return Err(RuleProblem::EmptySpecifier {
                    tool: tool.to_owned(),
                });
            }
            Some(s) if tool == "Bash" => Spec::Bash(BashPattern::parse(s)?),
            Some(s) if PATH_TOOLS.contains(&tool) => Spec::Path(PathPattern::parse(s)?),
            Some(s) if tool == "WebFetch" => match s.strip_prefix("domain:") {
                Some(d) => Spec::Domain(domain::parse(d)?),
                None => Spec::Unknown,
            },
            Some(_) => Spec::Unknown,
        };
        Ok(Rule {
            tool: tool.to_owned(),
            specifier: specifier.map(str::to_owned),
            scope,
            spec,
        })
    }

    /// The tool name as written (`Bash`, `Edit`, `mcp__github__*`).
    pub fn tool(&self) -> &str {
        &self.tool
    }

    /// The specifier between the parentheses, trimmed; `None` for a whole-tool rule.
    pub fn specifier(&self) -> Option<&str> {
        self.specifier.as_deref()
    }

    /// Whether this rule alone matches a call of `tool` with `input`.
    ///
    /// `for_deny` picks the reading of the [module docs](self): as an allow rule a Bash
    /// specifier must match every part of a command with nothing unsafe in it, and what
    /// cannot be read does not match; as a deny rule any part or unwrapped part suffices, and
    /// what cannot be read matches. [`RuleSet::decide`] also lets the parts of one command
    /// be allowed by different rules.
    pub fn matches(&self, tool: &str, input: &Value, ctx: &MatchContext, for_deny: bool) -> bool {
        if !self.scope.contains(tool) {
            return false;
        }
        match &self.spec {
            Spec::Whole => true,
            Spec::Bash(pattern) => match str_field(input, &["command"]) {
                None => for_deny,
                Some(command) if for_deny => bash::deny_candidates(command)
                    .iter()
                    .any(|c| pattern.matches(c)),
                Some(command) => bash::allow_parts(command)
                    .is_some_and(|parts| parts.iter().all(|p| pattern.matches(p))),
            },
            Spec::Path(pattern) => match str_field(input, &PATH_FIELDS) {
                None => for_deny,
                Some(path) => pattern.matches(path, ctx.cwd, ctx.home).unwrap_or(for_deny),
            },
            Spec::Domain(d) => match str_field(input, &["url"]).and_then(domain::host) {
                None => for_deny,
                Some(host) => domain::within(&host, d),
            },
            Spec::Unknown => for_deny,
        }
    }

    /// Whether every call this rule allows is also allowed by `wider`, whatever the working
    /// directory and home. Conservative: `false` unless it can be shown.
    ///
    /// A rule is covered by itself, by a whole-tool rule whose tools include its own
    /// (`Bash(cargo test:*)` by `Bash`, `Write(x)` by `Edit`, `mcp__github__create_issue` by
    /// `mcp__github`), by a Bash specifier matching every part it matches
    /// (`Bash(cargo test:*)` by `Bash(cargo:*)`, not the other way round), by a path pattern
    /// with the same anchor matching every path it matches (`Edit(src/a/**)` by
    /// `Edit(src/**)`; never `src/**` by `//abs/src/**`), and by an enclosing domain. A rule
    /// with an unknown specifier is covered only by the same rule or a whole-tool rule. A
    /// whole-tool rule is covered only by a whole-tool rule: `Bash` allows command
    /// substitution, which no `Bash(..)` does.
    pub fn covered_by(&self, wider: &Rule) -> bool {
        if !self.scope.within(&wider.scope) {
            return false;
        }
        match (&self.spec, &wider.spec) {
            (_, Spec::Whole) => true,
            (Spec::Bash(a), Spec::Bash(b)) => a.covered_by(b),
            (Spec::Path(a), Spec::Path(b)) => a.covered_by(b),
            (Spec::Domain(a), Spec::Domain(b)) => domain::within(a, b),
            (Spec::Unknown, Spec::Unknown) => self == wider,
            _ => false,
        }
    }

    /// The Bash pattern, for a `Bash(..)` rule.
    fn bash_pattern(&self) -> Option<&BashPattern> {
        match &self.spec {
            Spec::Bash(pattern) => Some(pattern),
            _ => None,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.specifier {
            Some(s) => write!(f, "{}({s})", self.tool),
            None => f.write_str(&self.tool),
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Scope {
    /// Whether the rule applies to a call of `tool`.
    fn contains(&self, tool: &str) -> bool {
        match self {
            Scope::Tool(name) => name == tool,
            Scope::EditTools => EDIT_TOOLS.contains(&tool),
            Scope::McpServer(prefix) => tool.len() > prefix.len() && tool.starts_with(prefix),
        }
    }

    /// Whether every tool in `self` is in `wider`.
    fn within(&self, wider: &Scope) -> bool {
        match (self, wider) {
            (Scope::Tool(name), wider) => wider.contains(name),
            (Scope::EditTools, Scope::EditTools) => true,
            (Scope::McpServer(a), Scope::McpServer(b)) => a.starts_with(b.as_str()),
            _ => false,
        }
    }
}

/// The scope of a tool name, or why it is not one.
fn scope(name: &str) -> Result<Scope, RuleProblem> {
    if name.is_empty() {
        return Err(RuleProblem::EmptyToolName);
    }
    let server_wildcard = name
        .strip_prefix("mcp__")
        .and_then(|s| s.strip_suffix("__*"));
    let core = match server_wildcard {
        Some(server) => server,
        None => name,
    };
    let valid = core.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && core
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid || name == "mcp__" {
        return Err(RuleProblem::BadToolName { name: shown(name) });
    }
    Ok(match (server_wildcard, name.strip_prefix("mcp__")) {
        (Some(server), _) => Scope::McpServer(format!("mcp__{server}__")),
        (None, Some(server)) if !server.contains("__") => Scope::McpServer(format!("{name}__")),
        _ if name == "Edit" => Scope::EditTools,
        _ => Scope::Tool(name.to_owned()),
    })
}

/// Whether the parentheses in `text` pair up, ignoring those escaped with `\`. A `\` at the
/// very end escapes the rule's closing parenthesis, which leaves it unclosed.
fn balanced(text: &str) -> bool {
    let mut depth = 0usize;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '(' => depth += 1,
            ')' => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => {}
        }
    }
    depth == 0 && !escaped
}

/// The first string among `fields` of a tool input.
fn str_field<'a>(input: &'a Value, fields: &[&str]) -> Option<&'a str> {
    fields
        .iter()
        .find_map(|f| input.get(*f).and_then(Value::as_str))
}

/// The allow and deny rules in force for a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    /// Calls matching one of these run without asking, unless a deny rule matches.
    allow: Vec<Rule>,
    /// Calls matching one of these are refused, whatever the allow rules say.
    deny: Vec<Rule>,
}

/// The `permissions` of a Claude Code settings file; every other key is ignored.
#[derive(Deserialize)]
struct SettingsFile {
    #[serde(default)]
    permissions: Option<Permissions>,
}

/// `permissions.allow` and `permissions.deny`; `ask` and the rest are ignored.
#[derive(Deserialize)]
struct Permissions {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

impl RuleSet {
    /// A rule set of these rules.
    pub fn new(allow: Vec<Rule>, deny: Vec<Rule>) -> Self {
        RuleSet { allow, deny }
    }

    /// Parses two lists of rule texts; the first malformed rule is the error.
    pub fn parse<S: AsRef<str>>(allow: &[S], deny: &[S]) -> Result<Self, RuleError> {
        let parse_all = |texts: &[S]| -> Result<Vec<Rule>, RuleError> {
            texts.iter().map(|t| t.as_ref().parse()).collect()
        };
        Ok(RuleSet::new(parse_all(allow)?, parse_all(deny)?))
    }

    /// Reads a rules file, in one of two shapes:
    ///
    /// - JSON (the text starts with `{`): Claude Code's settings shape,
    ///   `{"permissions": {"allow": [..], "deny": [..]}}`; other keys, `ask` included, are
    ///   ignored, and a file without `permissions` gives no rules.
    /// - Plain text: one rule a line, as `allow <rule>` or `deny <rule>`; blank lines and
    ///   lines starting with `#` are skipped. A `#` later in a line is part of the rule.
    pub fn from_file_text(text: &str) -> Result<Self, RuleError> {
        let text = text.trim_start_matches('\u{feff}');
        if text.trim_start().starts_with('{') {
            let settings: SettingsFile = serde_json::from_str(text)?;
            let Some(p) = settings.permissions else {
                return Ok(RuleSet::default());
            };
            return RuleSet::parse(&p.allow, &p.deny);
        }
        let mut rules = RuleSet::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (verb, rule) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let list = match verb {
                "allow" => &mut rules.allow,
                "deny" => &mut rules.deny,
                _ => {
                    return Err(RuleError::NotAllowOrDeny {
                        line: i + 1,
                        text: shown(line),
                    });
                }
            };
            list.push(rule.parse().map_err(|e| RuleError::AtLine {
                line: i + 1,
                error: Box::new(e),
            })?);
        }
        Ok(rules)
    }

    /// Adds `other`'s rules after these.
    pub fn extend(&mut self, other: RuleSet) {
        self.allow.extend(other.allow);
        self.deny.extend(other.deny);
    }

    /// Whether there is no rule at all.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// The allow rules, in order.
    pub fn allow(&self) -> &[Rule] {
        &self.allow
    }

    /// The deny rules, in order.
    pub fn deny(&self) -> &[Rule] {
        &self.deny
    }

    /// The decision for a call of `tool` with `input`, and the rule that made it; `None`
    /// when no rule decides and a person must be asked.
    ///
    /// Deny rules are tried first (the first matching one is returned), so a deny always
    /// wins. Then each allow rule on its own; then, for Bash, the parts of the command
    /// ([`Rule::matches`]) each allowed by some `Bash(..)` rule, the rule returned being the
    /// one that allowed the first part.
    pub fn decide(
        &self,
        tool: &str,
        input: &Value,
        ctx: &MatchContext,
    ) -> Option<(Verdict, &Rule)> {
        if let Some(rule) = self.deny.iter().find(|r| r.matches(tool, input, ctx, true)) {
            return Some((Verdict::Deny, rule));
        }
        if let Some(rule) = self
            .allow
            .iter()
            .find(|r| r.matches(tool, input, ctx, false))
        {
            return Some((Verdict::Allow, rule));
        }
        if tool != "Bash" {
            return None;
        }
        let parts = bash::allow_parts(str_field(input, &["command"])?)?;
        let mut first = None;
        for part in parts {
            let rule = self
                .allow
                .iter()
                .find(|r| r.bash_pattern().is_some_and(|p| p.matches(part)))?;
            first.get_or_insert(rule);
        }
        first.map(|rule| (Verdict::Allow, rule))
    }
}

/// A tool call as one short line for a person: the command of a Bash call, the path of a
/// file tool's call, the URL of a WebFetch call, compact JSON otherwise (or when the field
/// is missing). Control characters are escaped (`\n`, `\u{1b}`), so the line is one line and
/// cannot drive a terminal; at most `max_chars` characters, the last of them `…` when cut.
pub fn describe_input(tool: &str, input: &Value, max_chars: usize) -> String {
    let field = match tool {
        "Bash" => str_field(input, &["command"]),
        "WebFetch" => str_field(input, &["url"]),
        t if PATH_TOOLS.contains(&t) => str_field(input, &PATH_FIELDS),
        _ => None,
    };
    let Some(text) = field else {
        return truncate(&input.to_string(), max_chars);
    };
    // Escaping only lengthens, so one character past the limit is enough to read.
    let mut line = String::new();
    for c in text.chars().take(max_chars.saturating_add(1)) {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    truncate(&line, max_chars)
}

/// `text` cut to at most `max_chars` characters, the last being `…` when anything was cut.
fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some(_) if max_chars == 0 => String::new(),
        Some(_) => {
            let cut = text
                .char_indices()
                .nth(max_chars - 1)
                .map_or(text.len(), |(i, _)| i);
            format!("{}…", &text[..cut])
        }
    }
}

/// `text` as an error quotes it: at most [`SHOWN_CHARS`] characters.
fn shown(text: &str) -> String {
    truncate(text, SHOWN_CHARS)
}

#[cfg(test)]
mod tests;
