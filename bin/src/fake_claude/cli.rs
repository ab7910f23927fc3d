//! Command-line parsing with the real CLI's (commander.js) conventions: every flag of
//! `claude --help` 2.1.329 is accepted, unknown ones fail with `error: unknown option`.

use crate::sys::die;

pub const VERSION: &str = "2.1.329";

/// Flags taking exactly one value.
#[rustfmt::skip]
const WITH_VALUE: &[&str] = &[
    "--output-format", "--input-format", "--resume", "-r", "--session-id", "--model",
    "--fallback-model", "--max-turns", "--max-budget-usd", "--json-schema", "--permission-mode",
    "--system-prompt", "--system-prompt-file", "--append-system-prompt",
    "--append-system-prompt-file", "--settings", "--setting-sources", "--effort", "--agent",
    "--agents", "--debug-file", "--permission-prompt-tool", "--permission-prompts",
    "--max-thinking-tokens", "--thinking", "--name", "-n", "--resume-session-at",
    "--system-prompt-snapshot", "--autocompact", "--workload", "--plugin-dir", "--plugin-url",
    "--environment", "--remote-control-session-name-prefix",
];

/// Variadic flags (`<values...>`): they swallow every following non-flag argument.
#[rustfmt::skip]
const MULTI: &[&str] = &[
    "--allowedTools", "--allowed-tools", "--disallowedTools", "--disallowed-tools", "--tools",
    "--add-dir", "--mcp-config", "--betas", "--file",
];

/// Flags with an optional value (`[value]`): they take the next argument unless it is a flag.
#[rustfmt::skip]
const OPTIONAL_VALUE: &[&str] = &[
    "-w", "--worktree", "-d", "--debug", "--cloud", "--from-pr", "--prompt-suggestions",
    "--remote-control", "--teleport",
];

#[rustfmt::skip]
const BOOL: &[&str] = &[
    "-p", "--print", "--verbose", "-c", "--continue", "--fork-session",
    "--no-session-persistence", "--dangerously-skip-permissions", "--strict-mcp-config",
    "--include-partial-messages", "--replay-user-messages", "--bare", "--safe-mode",
    "--allow-dangerously-skip-permissions", "--disable-slash-commands",
    "--exclude-dynamic-system-prompt-sections", "--forward-subagent-text",
    "--include-hook-events", "--restricted", "--brief", "--no-chrome", "--chrome",
    "--ax-screen-reader", "--bg", "--background", "--desktop", "--ide", "--tmux",
];

/// Accepted `--permission-mode` values (the help's choices plus "default"; "manual" is an
/// alias of "default").
pub const PERMISSION_MODES: &[&str] = &[
    "default",
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "manual",
    "dontAsk",
    "plan",
];

const ROOT_REFUSAL: &str =
    "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons";

#[derive(Debug, Clone)]
pub struct Opts {
    pub print: bool,
    pub output: String,
    pub input: String,
    pub verbose: bool,
    pub resume: Option<String>,
    pub cont: bool,
    pub session_id: Option<String>,
    pub fork: bool,
    pub model: Option<String>,
    pub fallback: Option<String>,
    pub max_turns: Option<i64>,
    /// `--max-budget-usd` as given (for the error text) and parsed.
    pub budget: Option<(String, f64)>,
    pub persist: bool,
    pub schema: Option<String>,
    pub permission_mode: Option<String>,
    /// `--dangerously-skip-permissions`: the session starts in bypassPermissions mode.
    pub skip_permissions: bool,
    /// `--allow-dangerously-skip-permissions`: bypassPermissions may be switched to later.
    pub allow_skip_permissions: bool,
    pub effort: Option<String>,
    pub system_prompt: Option<String>,
    pub append_system_prompt: Option<String>,
    /// `--permission-prompt-tool`: with `stdio`, permission questions go to the host as
    /// `can_use_tool` control requests (see `approvals.rs`).
    pub permission_prompt_tool: Option<String>,
    /// Every value given to `--allowedTools` / `--allowed-tools`, as given.
    pub allowed_tools: Vec<String>,
    /// Every value given to `--disallowedTools` / `--disallowed-tools`, as given.
    pub disallowed_tools: Vec<String>,
    pub prompt: Vec<String>,
    /// A positional argument with a space swallowed by a variadic flag: (argument, flag).
    pub swallowed: Option<(String, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            print: false,
            output: "text".into(),
            input: "text".into(),
            verbose: false,
            resume: None,
            cont: false,
            session_id: None,
            fork: false,
            model: None,
            fallback: None,
            max_turns: None,
            budget: None,
            persist: true,
            schema: None,
            permission_mode: None,
            skip_permissions: false,
            allow_skip_permissions: false,
            effort: None,
            system_prompt: None,
            append_system_prompt: None,
            permission_prompt_tool: None,
            allowed_tools: Vec::new(),
            disallowed_tools: Vec::new(),
            prompt: Vec::new(),
            swallowed: None,
        }
    }
}

impl Opts {
    /// The init event's `permissionMode`: `--dangerously-skip-permissions` wins over
    /// `--permission-mode`.
    pub fn initial_permission_mode(&self) -> String {
        if self.skip_permissions {
            return "bypassPermissions".into();
        }
        self.permission_mode
            .clone()
            .unwrap_or_else(|| "default".into())
    }

    /// Whether `set_permission_mode` may switch to bypassPermissions.
    pub fn bypass_allowed(&self) -> bool {
        self.skip_permissions
            || self.allow_skip_permissions
            || self.permission_mode.as_deref() == Some("bypassPermissions")
    }

    /// Whether permission questions go to the host (`--permission-prompt-tool stdio`).
    pub fn asks_host(&self) -> bool {
        self.permission_prompt_tool.as_deref() == Some("stdio")
    }
}

fn refuse_as_root() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && std::env::var_os("IS_SANDBOX").is_none_or(|v| v.is_empty()) {
        die(ROOT_REFUSAL, 1);
    }
}

fn choice_error(flag: &str, meta: &str, val: &str, choices: &[&str]) -> ! {
    die(
        &format!(
            "error: option '{flag} <{meta}>' argument '{val}' is invalid. Allowed choices are {}.",
            choices.join(", ")
        ),
        1,
    )
}

/// Parses the arguments (without argv[0]); usage errors print to stderr and exit 1,
/// `--version` / `--help` print and exit 0.
pub fn parse(argv: &[String]) -> Opts {
    let mut o = Opts::default();
    let mut i = 0;
    while i < argv.len() {
        let (a, mut val) = match argv[i].split_once('=') {
            Some((flag, v)) if argv[i].starts_with("--") => (flag, Some(v.to_string())),
            _ => (argv[i].as_str(), None),
        };
        match a {
            "-v" | "--version" => {
                crate::sys::write_stdout(format!("{VERSION} (Claude Code)\n").as_bytes());
                crate::sys::exit(0);
            }
            "-h" | "--help" => {
                crate::sys::write_stdout(
                    b"Usage: claude [options] [command] [prompt]  (fake-claude stand-in)\n\n",
                );
                crate::sys::write_stdout(include_str!("help.md").as_bytes());
                crate::sys::exit(0);
            }
            _ => {}
        }
        if BOOL.contains(&a) {
            match a {
                "-p" | "--print" => o.print = true,
                "--verbose" => o.verbose = true,
                "-c" | "--continue" => o.cont = true,
                "--fork-session" => o.fork = true,
                "--no-session-persistence" => o.persist = false,
                "--dangerously-skip-permissions" => {
                    refuse_as_root();
                    o.skip_permissions = true;
                }
                "--allow-dangerously-skip-permissions" => {
                    refuse_as_root();
                    o.allow_skip_permissions = true;
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        if a == "--" {
            o.prompt.extend(argv.get(i + 1).cloned()); // real CLI: the next argument only
            break;
        }
        if OPTIONAL_VALUE.contains(&a) {
            if val.is_none() && argv.get(i + 1).is_some_and(|n| !n.starts_with('-')) {
                i += 1;
            }
            i += 1;
            continue;
        }
        if WITH_VALUE.contains(&a) || MULTI.contains(&a) {
            let val = match val.take() {
                Some(v) => v,
                None => {
                    i += 1;
                    match argv.get(i) {
                        Some(v) => v.clone(),
                        None => die(&format!("error: option '{a} <value>' argument missing"), 1),
                    }
                }
            };
            if MULTI.contains(&a) {
                let mut vals = vec![val];
                while let Some(next) = argv.get(i + 1).filter(|n| !n.starts_with('-')) {
                    i += 1;
                    if o.prompt.is_empty() && next.contains(' ') {
                        o.swallowed = Some((next.clone(), a.to_string()));
                    }
                    vals.push(next.clone());
                }
                match a {
                    "--allowedTools" | "--allowed-tools" => o.allowed_tools.extend(vals),
                    "--disallowedTools" | "--disallowed-tools" => o.disallowed_tools.extend(vals),
                    _ => {}
                }
            } else {
                store(&mut o, a, val);
            }
            i += 1;
            continue;
        }
        if a.starts_with('-') && a != "-" {
            die(&format!("error: unknown option '{a}'"), 1);
        }
        o.prompt.push(argv[i].clone());
        i += 1;
    }
    o
}

fn store(o: &mut Opts, flag: &str, val: String) {
    match flag {
        "--output-format" => {
            if !matches!(val.as_str(), "text" | "json" | "stream-json") {
                choice_error(flag, "format", &val, &["text", "json", "stream-json"]);
            }
            o.output = val;
        }
        "--input-format" => {
            if !matches!(val.as_str(), "text" | "stream-json") {
                choice_error(flag, "format", &val, &["text", "stream-json"]);
            }
            o.input = val;
        }
        "--permission-mode" => {
            if !PERMISSION_MODES.contains(&val.as_str()) {
                choice_error(flag, "mode", &val, &PERMISSION_MODES[1..]);
            }
            if val == "bypassPermissions" {
                refuse_as_root();
            }
            o.permission_mode = Some(if val == "manual" {
                "default".into()
            } else {
                val
            });
        }
        "--resume" | "-r" => o.resume = Some(val).filter(|v| !v.is_empty()),
        "--session-id" => o.session_id = Some(val),
        "--model" => o.model = Some(val),
        "--fallback-model" => o.fallback = Some(val),
        "--max-turns" => o.max_turns = val.trim().parse().ok(),
        "--max-budget-usd" => o.budget = val.trim().parse().ok().map(|b| (val, b)),
        "--json-schema" => o.schema = Some(val),
        "--effort" => o.effort = Some(val),
        "--system-prompt" => o.system_prompt = Some(val),
        "--append-system-prompt" => o.append_system_prompt = Some(val),
        "--permission-prompt-tool" => o.permission_prompt_tool = Some(val),
        _ => {}
    }
}
