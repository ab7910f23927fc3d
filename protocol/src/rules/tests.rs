use std::path::Path;

use serde_json::{Value, json};

use super::*;

const CWD: &str = "/work/proj";
const HOME: &str = "/home/me";

fn ctx() -> MatchContext<'static> {
    MatchContext {
        cwd: Path::new(CWD),
        home: Some(Path::new(HOME)),
    }
}

fn rule(text: &str) -> Rule {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn problem(text: &str) -> RuleProblem {
    match text.parse::<Rule>() {
        Ok(r) => panic!("{text:?} should be refused, parsed as {r}"),
        Err(RuleError::Invalid { problem, .. }) => problem,
        Err(e) => panic!("{text:?}: unexpected error {e}"),
    }
}

/// (allow reading, deny reading) of `rule` for one call.
fn readings(rule_text: &str, tool: &str, input: &Value, ctx: &MatchContext) -> (bool, bool) {
    let r = rule(rule_text);
    (
        r.matches(tool, input, ctx, false),
        r.matches(tool, input, ctx, true),
    )
}

#[test]
fn each_syntax_parses_and_displays_its_canonical_text() {
    let table = [
        ("Bash", "Bash", None),
        ("  Bash  ", "Bash", None),
        ("Bash(cargo test:*)", "Bash", Some("cargo test:*")),
        ("Bash(  cargo test:*  )", "Bash", Some("cargo test:*")),
        ("Bash(git * --dry-run)", "Bash", Some("git * --dry-run")),
        ("Bash(echo \\))", "Bash", Some("echo \\)")),
        (
            "Bash(python -c print(1))",
            "Bash",
            Some("python -c print(1)"),
        ),
        ("Edit(src/**)", "Edit", Some("src/**")),
        ("Read(~/.ssh/**)", "Read", Some("~/.ssh/**")),
        ("Write(//tmp/x)", "Write", Some("//tmp/x")),
        (
            "WebFetch(domain:example.com)",
            "WebFetch",
            Some("domain:example.com"),
        ),
        ("WebFetch", "WebFetch", None),
        ("mcp__github", "mcp__github", None),
        ("mcp__github__*", "mcp__github__*", None),
        (
            "mcp__github__create_issue",
            "mcp__github__create_issue",
            None,
        ),
        ("WebSearch(anything)", "WebSearch", Some("anything")),
    ];
    for (text, tool, specifier) in table {
        let r = rule(text);
        assert_eq!(r.tool(), tool, "{text:?}");
        assert_eq!(r.specifier(), specifier, "{text:?}");
        let canonical = match specifier {
            Some(s) => format!("{tool}({s})"),
            None => tool.to_owned(),
        };
        assert_eq!(r.to_string(), canonical, "{text:?}");
        assert_eq!(rule(&canonical), r, "{text:?} round trip");
    }
}

#[test]
fn malformed_rules_are_refused_with_their_problem() {
    let table = [
        ("", RuleProblem::Empty),
        ("   ", RuleProblem::Empty),
        ("(cargo test)", RuleProblem::EmptyToolName),
        ("Bash(", RuleProblem::Unbalanced),
        ("Bash)", RuleProblem::Unbalanced),
        ("Bash(a)(b)", RuleProblem::Unbalanced),
        ("Bash(a))", RuleProblem::Unbalanced),
        ("Bash((a)", RuleProblem::Unbalanced),
        ("Bash(a) x", RuleProblem::Unbalanced),
        (
            "Bash()",
            RuleProblem::EmptySpecifier {
                tool: "Bash".into(),
            },
        ),
        (
            "Edit(   )",
            RuleProblem::EmptySpecifier {
                tool: "Edit".into(),
            },
        ),
        ("Bash(echo \\)", RuleProblem::Unbalanced),
        ("Bash(:*)", RuleProblem::EmptyPrefix),
        ("Bash( :*)", RuleProblem::EmptyPrefix),
        (
            "Ba sh",
            RuleProblem::BadToolName {
                name: "Ba sh".into(),
            },
        ),
        (
            "Bash (ls)",
            RuleProblem::BadToolName {
                name: "Bash ".into(),
            },
        ),
        (
            "1Bash",
            RuleProblem::BadToolName {
                name: "1Bash".into(),
            },
        ),
        (
            "mcp__",
            RuleProblem::BadToolName {
                name: "mcp__".into(),
            },
        ),
        (
            "mcp__git*",
            RuleProblem::BadToolName {
                name: "mcp__git*".into(),
            },
        ),
        (
            "mcp____*",
            RuleProblem::BadToolName {
                name: "mcp____*".into(),
            },
        ),
        ("Edit(!src/**)", RuleProblem::Negation),
        ("Edit(src/../secret)", RuleProblem::ParentInPattern),
        ("Edit(/)", RuleProblem::NoFile),
        ("Edit(//)", RuleProblem::NoFile),
        ("Read(~/)", RuleProblem::NoFile),
        ("Edit(..)", RuleProblem::NoFile),
        ("Edit(./)", RuleProblem::NoFile),
        (
            "WebFetch(domain:)",
            RuleProblem::BadDomain { domain: "".into() },
        ),
        (
            "WebFetch(domain:exa mple.com)",
            RuleProblem::BadDomain {
                domain: "exa mple.com".into(),
            },
        ),
        (
            "WebFetch(domain:a..b)",
            RuleProblem::BadDomain {
                domain: "a..b".into(),
            },
        ),
    ];
    for (text, expected) in table {
        assert_eq!(problem(text), expected, "{text:?}");
    }
}

#[test]
fn a_parse_error_names_the_rule_and_quotes_at_most_its_start() {
    let e = "Bash()".parse::<Rule>().expect_err("empty specifier");
    assert_eq!(
        e.to_string(),
        "invalid permission rule \"Bash()\": the specifier in parentheses is empty (write `Bash` for the whole tool)"
    );
    let huge = format!("Bash({}", "x".repeat(100_000));
    let e = huge.parse::<Rule>().expect_err("unbalanced");
    assert!(e.to_string().len() < 600, "{} bytes", e.to_string().len());
}

fn bash(command: &str) -> Value {
    json!({ "command": command })
}

#[test]
fn bash_specifiers_read_each_command_for_allow_and_for_deny() {
    // (rule, command, matches as allow, matches as deny)
    let table = [
        // Prefix with a word boundary.
        ("Bash(cargo test:*)", "cargo test", true, true),
        ("Bash(cargo test:*)", "cargo test --all", true, true),
        ("Bash(cargo test:*)", "  cargo test -p x  ", true, true),
        ("Bash(cargo test:*)", "cargo test\t--all", true, true),
        ("Bash(cargo test:*)", "cargo tests", false, false),
        ("Bash(cargo test:*)", "cargo build", false, false),
        ("Bash(cargo test :*)", "cargo test --all", true, true),
        // Exact.
        ("Bash(cargo test)", "cargo test", true, true),
        ("Bash(cargo test)", "cargo test --all", false, false),
        // Wildcards.
        (
            "Bash(git * --dry-run)",
            "git push origin --dry-run",
            true,
            true,
        ),
        ("Bash(git * --dry-run)", "git push origin", false, false),
        ("Bash(git *:*)", "git push origin", true, true),
        ("Bash(ls*)", "lsblk", true, true),
        // Compound commands: every part for allow, any part for deny.
        ("Bash(cargo test:*)", "cargo test && rm -rf /", false, true),
        ("Bash(rm:*)", "cargo test && rm -rf /", false, true),
        ("Bash(cargo:*)", "cargo build && cargo test", true, true),
        (
            "Bash(cargo:*)",
            "cargo build; cargo test || cargo clean",
            true,
            true,
        ),
        ("Bash(cargo:*)", "cargo build | cargo test", true, true),
        ("Bash(cargo:*)", "cargo build & cargo test", true, true),
        ("Bash(cargo:*)", "cargo build\ncargo test", true, true),
        ("Bash(cargo:*)", "cargo build;", true, true),
        ("Bash(cargo test:*)", "cargo test\nrm -rf /", false, true),
        ("Bash(cargo test:*)", "cargo test & rm -rf /", false, true),
        ("Bash(cargo test:*)", "cargo test |& tee log", false, true),
        ("Bash(rm:*)", "ls | rm -rf /", false, true),
        ("Bash(rm:*)", "ls || rm -rf /", false, true),
        ("Bash(rm:*)", "ls;rm -rf /", false, true),
        // Quotes are not read: an operator inside them cuts as well.
        (
            "Bash(git commit:*)",
            "git commit -m \"a && b\"",
            false,
            true,
        ),
        ("Bash(rm:*)", "git commit -m \"x; rm it\"", false, true),
        // Substitutions and redirections: never an allow.
        ("Bash(cargo test:*)", "cargo test $(rm -rf /)", false, true),
        ("Bash(echo:*)", "echo `whoami`", false, true),
        ("Bash(echo:*)", "echo \"$(id)\"", false, true),
        ("Bash(diff:*)", "diff <(ls a) <(ls b)", false, true),
        ("Bash(tee:*)", "tee >(cat)", false, true),
        ("Bash(cargo test:*)", "cargo test > out.txt", false, true),
        ("Bash(cargo test:*)", "cargo test >> out.txt", false, true),
        ("Bash(cargo test:*)", "cargo test >/dev/null", false, true),
        ("Bash(cargo test:*)", "cargo test &> out.txt", false, true),
        (
            "Bash(cargo test:*)",
            "cargo test 2>&1 > out.txt",
            false,
            true,
        ),
        ("Bash(cargo test:*)", "cargo test 2>&1", true, true),
        ("Bash(cargo test:*)", "cargo test --all 2>&1", true, true),
        ("Bash(*)", "anything $(at all)", false, true),
        // A redirection's `&` does not cut the command.
        ("Bash(cargo test 2>&1)", "cargo test 2>&1", true, true),
        // Environment assignments: not allowed by the bare prefix; a deny sees through.
        ("Bash(cargo test:*)", "FOO=1 cargo test", false, true),
        ("Bash(FOO=1 cargo test:*)", "FOO=1 cargo test", true, true),
        ("Bash(rm:*)", "FOO=1 rm -rf /", false, true),
        ("Bash(rm:*)", "env A=\"x y\" rm -rf /", false, true),
        // A deny sees through subshells, keywords, wrappers, quotes and directories.
        ("Bash(rm:*)", "echo $(rm -rf /)", false, true),
        ("Bash(rm:*)", "echo `rm -rf /`", false, true),
        ("Bash(rm:*)", "(rm -rf /)", false, true),
        ("Bash(rm -rf /)", "(rm -rf /)", false, true),
        ("Bash(rm:*)", "{ rm -rf /; }", false, true),
        ("Bash(rm:*)", "if true; then rm -rf /; fi", false, true),
        ("Bash(rm:*)", "! rm -rf /", false, true),
        ("Bash(rm:*)", "sudo rm -rf /", false, true),
        ("Bash(rm:*)", "nohup rm -rf / &", false, true),
        ("Bash(rm:*)", "/bin/rm -rf /", false, true),
        ("Bash(rm:*)", "'rm' -rf /", false, true),
        ("Bash(rm:*)", "\\rm -rf /", false, true),
        ("Bash(rm:*)", "r\\\nm -rf /", false, true),
        // Words are separated by spaces and tabs, as the shell reads them; a deny reads
        // more leniently.
        ("Bash(cargo test:*)", "cargo test\u{a0}--all", false, false),
        ("Bash(cargo test:*)", "\u{a0}cargo test", false, true),
        // What a deny does not refuse.
        ("Bash(rm:*)", "echo rm", false, false),
        ("Bash(rm:*)", "rmdir build", false, false),
        ("Bash(rm:*)", "cargo test", false, false),
        // A whole-tool rule covers everything.
        (
            "Bash",
            "anything $(at all) > /etc/passwd && more",
            true,
            true,
        ),
    ];
    for (r, command, allow, deny) in table {
        assert_eq!(
            readings(r, "Bash", &bash(command), &ctx()),
            (allow, deny),
            "{r} on {command:?}"
        );
    }
}

#[test]
fn a_bash_call_without_a_command_is_denied_by_a_specifier_and_never_allowed() {
    for input in [json!({}), json!({ "command": 42 }), json!("cargo test")] {
        assert_eq!(
            readings("Bash(cargo test:*)", "Bash", &input, &ctx()),
            (false, true),
            "{input}"
        );
        assert_eq!(readings("Bash", "Bash", &input, &ctx()), (true, true));
    }
    assert_eq!(
        readings("Bash(cargo test:*)", "Bash", &bash("   "), &ctx()),
        (false, false)
    );
}

fn set(allow: &[&str], deny: &[&str]) -> RuleSet {
    RuleSet::parse(allow, deny).expect("rules parse")
}

/// The decision as (verdict, rule text), for comparing with a table.
fn decision(rules: &RuleSet, tool: &str, input: &Value) -> Option<(Verdict, String)> {
    rules
        .decide(tool, input, &ctx())
        .map(|(v, r)| (v, r.to_string()))
}

#[test]
fn a_compound_command_is_allowed_only_when_every_part_is_and_denied_when_any_part_is() {
    let rules = set(
        &["Bash(cargo test:*)", "Bash(git status)", "Read"],
        &["Bash(rm:*)"],
    );
    let allow = |r: &str| Some((Verdict::Allow, r.to_owned()));
    let deny = |r: &str| Some((Verdict::Deny, r.to_owned()));
    let table = [
        ("cargo test", allow("Bash(cargo test:*)")),
        ("git status", allow("Bash(git status)")),
        ("cargo test && git status", allow("Bash(cargo test:*)")),
        ("git status; cargo test --all", allow("Bash(git status)")),
        ("cargo test | git status", allow("Bash(cargo test:*)")),
        ("cargo test && rm -rf /", deny("Bash(rm:*)")),
        ("rm -rf target", deny("Bash(rm:*)")),
        ("cargo test && ls", None),
        ("cargo test $(git status)", None),
        ("cargo test > log", None),
        ("git status --short", None),
        ("", None),
    ];
    for (command, expected) in table {
        assert_eq!(
            decision(&rules, "Bash", &bash(command)),
            expected,
            "{command:?}"
        );
    }
}

#[test]
fn a_deny_wins_over_an_allow_whatever_the_order() {
    let rules = set(&["Bash", "Edit"], &["Bash(rm:*)", "Edit(.env)"]);
    let table = [
        (
            "Bash",
            bash("rm -rf /"),
            Some((Verdict::Deny, "Bash(rm:*)")),
        ),
        (
            "Bash",
            bash("ls && rm x"),
            Some((Verdict::Deny, "Bash(rm:*)")),
        ),
        ("Bash", bash("ls"), Some((Verdict::Allow, "Bash"))),
        (
            "Write",
            json!({ "file_path": "/work/proj/.env" }),
            Some((Verdict::Deny, "Edit(.env)")),
        ),
        (
            "Write",
            json!({ "file_path": "/work/proj/src/.env" }),
            Some((Verdict::Deny, "Edit(.env)")),
        ),
        (
            "Write",
            json!({ "file_path": "/work/proj/src/main.rs" }),
            Some((Verdict::Allow, "Edit")),
        ),
        ("Read", json!({ "file_path": "/work/proj/.env" }), None),
    ];
    for (tool, input, expected) in table {
        assert_eq!(
            decision(&rules, tool, &input),
            expected.map(|(v, r)| (v, r.to_owned())),
            "{tool} {input}"
        );
    }
}

#[test]
fn path_patterns_match_normalised_paths_below_their_anchor() {
    // (rule, tool, path, matches as allow, matches as deny)
    let table = [
        ("Edit(src/**)", "Edit", "/work/proj/src/a.rs", true, true),
        (
            "Edit(src/**)",
            "Edit",
            "/work/proj/src/a/b/c.rs",
            true,
            true,
        ),
        ("Edit(src/**)", "Edit", "src/a.rs", true, true),
        ("Edit(src/**)", "Edit", "./src/./a.rs", true, true),
        ("Edit(src/**)", "Edit", "/work/proj/src", false, false),
        (
            "Edit(src/**)",
            "Edit",
            "/work/proj/src/../secret",
            false,
            false,
        ),
        ("Edit(src/**)", "Edit", "src/../secret", false, false),
        (
            "Edit(src/**)",
            "Edit",
            "src/../../proj/secret",
            false,
            false,
        ),
        (
            "Edit(src/**)",
            "Edit",
            "src/../../proj/src/a.rs",
            true,
            true,
        ),
        (
            "Edit(src/**)",
            "Edit",
            "/work/proj/a/src/x.rs",
            false,
            false,
        ),
        ("Edit(src/**)", "Edit", "/work/other/src/a.rs", false, false),
        ("Edit(src/**)", "Edit", "/work/projx/src/a.rs", false, false),
        (
            "Edit(src/**)",
            "Edit",
            "/../../work/proj/src/a.rs",
            true,
            true,
        ),
        // An Edit rule covers every file-editing tool; the others only their own.
        ("Edit(src/**)", "Write", "/work/proj/src/a.rs", true, true),
        (
            "Edit(src/**)",
            "MultiEdit",
            "/work/proj/src/a.rs",
            true,
            true,
        ),
        ("Edit(src/**)", "Read", "/work/proj/src/a.rs", false, false),
        ("Write(src/**)", "Edit", "/work/proj/src/a.rs", false, false),
        ("Write(src/**)", "Write", "/work/proj/src/a.rs", true, true),
        // One segment: `*`, `?`, classes.
        ("Edit(src/*.rs)", "Edit", "/work/proj/src/a.rs", true, true),
        (
            "Edit(src/*.rs)",
            "Edit",
            "/work/proj/src/a/b.rs",
            false,
            false,
        ),
        (
            "Edit(src/*.rs)",
            "Edit",
            "/work/proj/src/a.txt",
            false,
            false,
        ),
        (
            "Edit(src/a?.rs)",
            "Edit",
            "/work/proj/src/ab.rs",
            true,
            true,
        ),
        (
            "Edit(src/a?.rs)",
            "Edit",
            "/work/proj/src/a.rs",
            false,
            false,
        ),
        (
            "Edit(src/[ab].rs)",
            "Edit",
            "/work/proj/src/b.rs",
            true,
            true,
        ),
        (
            "Edit(src/[ab].rs)",
            "Edit",
            "/work/proj/src/c.rs",
            false,
            false,
        ),
        (
            "Edit(src/[!ab].rs)",
            "Edit",
            "/work/proj/src/c.rs",
            true,
            true,
        ),
        (
            "Edit(src/\\*.rs)",
            "Edit",
            "/work/proj/src/*.rs",
            true,
            true,
        ),
        (
            "Edit(src/[ab.rs)",
            "Edit",
            "/work/proj/src/[ab.rs",
            true,
            true,
        ),
        (
            "Edit(src/[ab.rs)",
            "Edit",
            "/work/proj/src/a.rs",
            false,
            false,
        ),
        (
            "Edit(src/[]x].rs)",
            "Edit",
            "/work/proj/src/].rs",
            true,
            true,
        ),
        (
            "Edit(src/[a-c].rs)",
            "Edit",
            "/work/proj/src/b.rs",
            true,
            true,
        ),
        (
            "Edit(src/[a-c].rs)",
            "Edit",
            "/work/proj/src/d.rs",
            false,
            false,
        ),
        ("Edit(src/*)", "Edit", "/work/proj/src/.hidden", true, true),
        (
            "Edit(src/\\*.rs)",
            "Edit",
            "/work/proj/src/a.rs",
            false,
            false,
        ),
        // A matched directory covers what is inside it.
        (
            "Edit(src/gen)",
            "Edit",
            "/work/proj/src/gen/a.rs",
            true,
            true,
        ),
        // No `/`: at any depth. Trailing `/`: directories only, at any depth.
        ("Edit(*.env)", "Edit", "/work/proj/.env", true, true),
        ("Edit(*.env)", "Edit", "/work/proj/a/b/prod.env", true, true),
        ("Edit(*.env)", "Edit", "/work/other/prod.env", false, false),
        (
            "Edit(Cargo.toml)",
            "Edit",
            "/work/proj/crates/x/Cargo.toml",
            true,
            true,
        ),
        ("Edit(docs/)", "Edit", "/work/proj/docs/a.md", true, true),
        ("Edit(docs/)", "Edit", "/work/proj/a/docs/b.md", true, true),
        ("Edit(docs/)", "Edit", "/work/proj/docs", false, false),
        (
            "Edit(**/test/**)",
            "Edit",
            "/work/proj/a/test/b.rs",
            true,
            true,
        ),
        (
            "Edit(**/test/**)",
            "Edit",
            "/work/proj/test/b.rs",
            true,
            true,
        ),
        ("Edit(**)", "Edit", "/work/proj/anything/at/all", true, true),
        ("Edit(**)", "Edit", "/work/elsewhere", false, false),
        // `/x` and `./x`: anchored at the working directory.
        (
            "Edit(/Cargo.toml)",
            "Edit",
            "/work/proj/Cargo.toml",
            true,
            true,
        ),
        (
            "Edit(/Cargo.toml)",
            "Edit",
            "/work/proj/a/Cargo.toml",
            false,
            false,
        ),
        ("Edit(/Cargo.toml)", "Edit", "/Cargo.toml", false, false),
        ("Read(./.env)", "Read", "/work/proj/.env", true, true),
        ("Read(./.env)", "Read", "/work/proj/a/.env", false, false),
        // `//x`: absolute.
        ("Edit(//etc/**)", "Edit", "/etc/passwd", true, true),
        (
            "Edit(//etc/**)",
            "Edit",
            "/work/proj/etc/passwd",
            false,
            false,
        ),
        (
            "Edit(//tmp/scratch.txt)",
            "Edit",
            "/tmp/scratch.txt",
            true,
            true,
        ),
        (
            "Edit(//tmp/scratch.txt)",
            "Edit",
            "/tmp/other.txt",
            false,
            false,
        ),
        // `~/x`: the home directory. A `~` in the call's path is not the home.
        (
            "Read(~/.ssh/**)",
            "Read",
            "/home/me/.ssh/id_ed25519",
            true,
            true,
        ),
        (
            "Read(~/.ssh/**)",
            "Read",
            "/work/proj/.ssh/id_ed25519",
            false,
            false,
        ),
        ("Read(~/.ssh/**)", "Read", "~/.ssh/id_ed25519", false, false),
        (
            "Read(~/.ssh/**)",
            "Read",
            "/home/me/x/../.ssh/key",
            true,
            true,
        ),
        // Leading `..` move the anchor up.
        (
            "Edit(../shared/**)",
            "Edit",
            "/work/shared/notes.md",
            true,
            true,
        ),
        (
            "Edit(../shared/**)",
            "Edit",
            "/work/proj/shared/notes.md",
            false,
            false,
        ),
    ];
    for (r, tool, path, allow, deny) in table {
        let input = json!({ "file_path": path });
        assert_eq!(
            readings(r, tool, &input, &ctx()),
            (allow, deny),
            "{r} on {tool} {path:?}"
        );
    }
}

#[test]
fn a_file_tool_names_its_path_in_file_path_notebook_path_or_path() {
    let table = [
        (
            "Edit",
            json!({ "file_path": "/work/proj/src/a.rs" }),
            (true, true),
        ),
        (
            "NotebookEdit",
            json!({ "notebook_path": "/work/proj/src/a.ipynb" }),
            (true, true),
        ),
        (
            "Write",
            json!({ "path": "/work/proj/src/a.rs" }),
            (true, true),
        ),
        (
            "Edit",
            json!({ "file_path": "/work/proj/README.md", "path": "/work/proj/src/a.rs" }),
            (false, false),
        ),
        ("Edit", json!({ "old_string": "a" }), (false, true)),
        ("Edit", json!({ "file_path": 7 }), (false, true)),
    ];
    for (tool, input, expected) in table {
        assert_eq!(
            readings("Edit(src/**)", tool, &input, &ctx()),
            expected,
            "{tool} {input}"
        );
    }
}

#[test]
fn a_home_pattern_without_a_known_home_never_allows_and_always_denies() {
    let no_home = MatchContext {
        cwd: Path::new(CWD),
        home: None,
    };
    let input = json!({ "file_path": "/home/me/.zshrc" });
    assert_eq!(
        readings("Read(~/.zshrc)", "Read", &input, &no_home),
        (false, true)
    );
    assert_eq!(
        readings("Read(//home/me/.zshrc)", "Read", &input, &no_home),
        (true, true)
    );
}

#[test]
fn webfetch_domains_cover_their_subdomains_and_nothing_else() {
    // (url, matches as allow, matches as deny) for WebFetch(domain:example.com)
    let table = [
        ("https://example.com", true, true),
        ("https://example.com/docs?q=1", true, true),
        ("http://docs.example.com/", true, true),
        ("https://a.b.example.com/x", true, true),
        ("HTTPS://EXAMPLE.COM/", true, true),
        ("https://example.com.:443/x", true, true),
        ("https://user:pw@example.com/", true, true),
        ("https://evil-example.com/", false, false),
        ("https://example.com.evil.com/", false, false),
        ("https://notexample.com/", false, false),
        ("https://example.com@evil.com/", false, false),
        ("https://evil.com\\@example.com/", false, false),
        ("https://evil.com/?u=https://example.com", false, false),
        ("https://evil.com#@example.com", false, false),
        // Not readable: never allowed, always denied.
        ("https://exa%6dple.com/", false, true),
        ("https://example.com:http/", false, true),
        ("ftp://example.com/", false, true),
        ("example.com/docs", false, true),
        ("https://[::1]/", false, true),
        ("https://bücher.example.com/", false, true),
    ];
    for (url, allow, deny) in table {
        assert_eq!(
            readings(
                "WebFetch(domain:example.com)",
                "WebFetch",
                &json!({ "url": url }),
                &ctx()
            ),
            (allow, deny),
            "{url:?}"
        );
    }
    assert_eq!(
        readings(
            "WebFetch(domain:example.com)",
            "WebFetch",
            &json!({}),
            &ctx()
        ),
        (false, true)
    );
    assert_eq!(
        readings(
            "WebFetch(domain:Docs.Example.COM.)",
            "WebFetch",
            &json!({ "url": "https://docs.example.com/" }),
            &ctx()
        ),
        (true, true)
    );
}

#[test]
fn mcp_rules_name_a_server_or_one_of_its_tools() {
    // (rule, tool, matches)
    let table = [
        ("mcp__github", "mcp__github__create_issue", true),
        ("mcp__github", "mcp__github__delete_repo", true),
        ("mcp__github", "mcp__githubx__create_issue", false),
        ("mcp__github", "mcp__gitlab__create_issue", false),
        ("mcp__github", "mcp__github", false),
        ("mcp__github__*", "mcp__github__create_issue", true),
        ("mcp__github__*", "mcp__githubx__create_issue", false),
        (
            "mcp__github__create_issue",
            "mcp__github__create_issue",
            true,
        ),
        (
            "mcp__github__create_issue",
            "mcp__github__delete_repo",
            false,
        ),
        (
            "mcp__github__create_issue",
            "mcp__github__create_issue_x",
            false,
        ),
        ("Bash", "mcp__github__create_issue", false),
    ];
    for (r, tool, expected) in table {
        assert_eq!(
            readings(r, tool, &json!({}), &ctx()),
            (expected, expected),
            "{r} on {tool}"
        );
    }
}

#[test]
fn an_unknown_specifier_never_allows_and_denies_every_call_of_its_tool() {
    let table = [
        ("WebSearch(rust)", "WebSearch", (false, true)),
        ("WebSearch(rust)", "WebFetch", (false, false)),
        ("WebFetch(https://example.com)", "WebFetch", (false, true)),
        (
            "mcp__github__create_issue(x)",
            "mcp__github__create_issue",
            (false, true),
        ),
        ("Grep(src/**)", "Grep", (false, true)),
    ];
    for (r, tool, expected) in table {
        let input = json!({ "query": "rust", "url": "https://example.com", "path": "src" });
        assert_eq!(readings(r, tool, &input, &ctx()), expected, "{r} on {tool}");
    }
}

#[test]
fn covered_by_holds_only_where_every_allowed_call_is_allowed_by_the_wider_rule() {
    // (narrow, wide, covered)
    let table = [
        // Bash.
        ("Bash(cargo test:*)", "Bash(cargo:*)", true),
        ("Bash(cargo test:*)", "Bash", true),
        ("Bash(cargo test)", "Bash(cargo test:*)", true),
        ("Bash(cargo test --all)", "Bash(cargo test:*)", true),
        ("Bash(git * --dry-run)", "Bash(git:*)", true),
        ("Bash(cargo test:*)", "Bash(cargo *)", true),
        ("Bash(cargo test:*)", "Bash(*)", true),
        ("Bash(*)", "Bash", true),
        ("Bash", "Bash(cargo:*)", false),
        ("Bash", "Bash(*)", false),
        ("Bash(cargo:*)", "Bash(cargo test:*)", false),
        ("Bash(cargo test:*)", "Bash(cargo test)", false),
        ("Bash(cargo tests:*)", "Bash(cargo test:*)", false),
        ("Bash(cargo test*)", "Bash(cargo test:*)", false),
        ("Bash(git:*)", "Bash(git * --dry-run)", false),
        ("Bash(cargo test:*)", "Edit", false),
        // Paths.
        ("Edit(src/a/**)", "Edit(src/**)", true),
        ("Edit(src/*.rs)", "Edit(src/**)", true),
        ("Edit(src/lib*.rs)", "Edit(src/*.rs)", true),
        ("Edit(src/a.rs)", "Edit(src/[ab].rs)", true),
        ("Edit(src/**)", "Edit(/src/**)", true),
        ("Edit(src/**)", "Edit(**)", true),
        ("Edit(*.rs)", "Edit(**)", true),
        ("Edit(src/**)", "Edit(src/)", true),
        ("Edit(src/**)", "Edit", true),
        ("Write(src/**)", "Edit(src/**)", true),
        ("Write(src/x)", "Edit", true),
        ("NotebookEdit(a.ipynb)", "Edit(**)", true),
        ("Read(~/x/**)", "Read(~/**)", true),
        ("Edit(//etc/a/**)", "Edit(//etc/**)", true),
        ("Edit(src/**)", "Edit(src/a/**)", false),
        ("Edit(src/*.rs)", "Edit(src/lib*.rs)", false),
        ("Edit(src/**)", "Edit(src/*.rs)", false),
        ("Edit(src/**)", "Write(src/**)", false),
        ("Edit(src/**)", "Write", false),
        ("Edit", "Write", false),
        ("Edit", "Edit(**)", false),
        ("Read(src/**)", "Edit", false),
        ("Read(src/**)", "Edit(src/**)", false),
        ("Edit(**)", "Edit(src/**)", false),
        ("Edit(//etc/**)", "Edit(src/**)", false),
        ("Edit(src/**)", "Edit(//work/proj/src/**)", false),
        ("Edit(src/**)", "Edit(../**)", false),
        ("Read(~/x/**)", "Read(x/**)", false),
        ("Edit(src/a.rs)", "Edit(*.rs)", true),
        ("Edit(src/[ab].rs)", "Edit(src/[abc].rs)", false),
        // Domains.
        (
            "WebFetch(domain:docs.example.com)",
            "WebFetch(domain:example.com)",
            true,
        ),
        ("WebFetch(domain:docs.example.com)", "WebFetch", true),
        (
            "WebFetch(domain:example.com)",
            "WebFetch(domain:docs.example.com)",
            false,
        ),
        (
            "WebFetch(domain:evil-example.com)",
            "WebFetch(domain:example.com)",
            false,
        ),
        ("WebFetch", "WebFetch(domain:example.com)", false),
        // MCP.
        ("mcp__github__create_issue", "mcp__github", true),
        ("mcp__github__create_issue", "mcp__github__*", true),
        ("mcp__github", "mcp__github__*", true),
        ("mcp__github__*", "mcp__github", true),
        ("mcp__github", "mcp__github__create_issue", false),
        ("mcp__githubx__a", "mcp__github", false),
        ("mcp__github__*", "mcp__git", false),
        // Unknown specifiers.
        ("WebSearch(rust)", "WebSearch(rust)", true),
        ("WebSearch(rust)", "WebSearch", true),
        ("WebSearch(rust)", "WebSearch(go)", false),
        ("WebSearch", "WebSearch(rust)", false),
        ("mcp__github__create_issue(x)", "mcp__github", true),
    ];
    for (narrow, wide, expected) in table {
        assert_eq!(
            rule(narrow).covered_by(&rule(wide)),
            expected,
            "{narrow} covered by {wide}"
        );
    }
}

#[test]
fn every_rule_is_covered_by_itself() {
    for text in [
        "Bash",
        "Bash(cargo test:*)",
        "Bash(git * --dry-run)",
        "Edit(src/**)",
        "Edit(src/[a-c]?.rs)",
        "Read(~/.ssh/**)",
        "Edit(../x/)",
        "WebFetch(domain:example.com)",
        "mcp__github",
        "mcp__github__create_issue",
        "WebSearch(rust)",
    ] {
        assert!(rule(text).covered_by(&rule(text)), "{text}");
    }
}

#[test]
fn a_json_settings_file_gives_its_permissions_and_ignores_the_rest() {
    let text = r#"{
        "model": "sonnet",
        "permissions": {
            "allow": ["Bash(cargo test:*)", "Edit(src/**)"],
            "deny": ["Bash(rm:*)"],
            "ask": ["Bash(git push:*)"],
            "defaultMode": "acceptEdits"
        },
        "env": { "A": "1" }
    }"#;
    let rules = RuleSet::from_file_text(text).expect("valid settings");
    let texts = |rules: &[Rule]| rules.iter().map(Rule::to_string).collect::<Vec<_>>();
    assert_eq!(texts(rules.allow()), ["Bash(cargo test:*)", "Edit(src/**)"]);
    assert_eq!(texts(rules.deny()), ["Bash(rm:*)"]);

    for empty in ["{}", r#"{"permissions": {}}"#, r#"{"permissions": null}"#] {
        let rules = RuleSet::from_file_text(empty).expect(empty);
        assert!(rules.is_empty(), "{empty}");
    }
}

#[test]
fn a_json_settings_file_of_the_wrong_shape_is_refused() {
    for text in [
        "{",
        r#"{"permissions": {"allow": "Bash"}}"#,
        r#"{"permissions": {"deny": [1]}}"#,
        r#"{"permissions": "all"}"#,
    ] {
        match RuleSet::from_file_text(text) {
            Err(RuleError::Json(_)) => {}
            other => panic!("{text}: expected a JSON error, got {other:?}"),
        }
    }
    match RuleSet::from_file_text(r#"{"permissions": {"allow": ["Bash()"]}}"#) {
        Err(RuleError::Invalid { rule, .. }) => assert_eq!(rule, "Bash()"),
        other => panic!("expected an invalid rule, got {other:?}"),
    }
}

#[test]
fn a_text_rules_file_has_one_allow_or_deny_a_line() {
    let text = "\u{feff}# the pool's rules\n\
                \n\
                allow Bash(cargo test:*)\n\
                \x20 allow   Edit(src/**)  \n\
                deny Bash(rm:*)\n\
                # deny Bash\n\
                allow Bash(echo # not a comment)\n";
    let rules = RuleSet::from_file_text(text).expect("valid rules file");
    let texts = |rules: &[Rule]| rules.iter().map(Rule::to_string).collect::<Vec<_>>();
    assert_eq!(
        texts(rules.allow()),
        [
            "Bash(cargo test:*)",
            "Edit(src/**)",
            "Bash(echo # not a comment)"
        ]
    );
    assert_eq!(texts(rules.deny()), ["Bash(rm:*)"]);
    assert!(RuleSet::from_file_text("").expect("empty").is_empty());
    assert!(
        RuleSet::from_file_text("# nothing\n\n")
            .expect("comments only")
            .is_empty()
    );
}

#[test]
fn a_text_rules_file_names_the_line_it_cannot_read() {
    let table = [
        (
            "allow Bash\nask Bash(ls)\n",
            "rules file line 2: expected `allow <rule>` or `deny <rule>`, found \"ask Bash(ls)\"",
        ),
        (
            "Bash(ls)",
            "rules file line 1: expected `allow <rule>` or `deny <rule>`, found \"Bash(ls)\"",
        ),
        (
            "allow Bash\n\ndeny Bash()\n",
            "rules file line 3: invalid permission rule \"Bash()\": the specifier in parentheses is empty (write `Bash` for the whole tool)",
        ),
        (
            "allow\n",
            "rules file line 1: invalid permission rule \"\": the rule is empty",
        ),
    ];
    for (text, expected) in table {
        let e = RuleSet::from_file_text(text).expect_err(text);
        assert_eq!(e.to_string(), expected, "{text:?}");
    }
}

#[test]
fn rule_sets_extend_and_report_emptiness() {
    let mut rules = RuleSet::default();
    assert!(rules.is_empty());
    rules.extend(set(&["Bash(ls)"], &[]));
    assert!(!rules.is_empty());
    rules.extend(RuleSet::new(vec![rule("Read")], vec![rule("Bash(rm:*)")]));
    assert_eq!(rules.allow(), [rule("Bash(ls)"), rule("Read")]);
    assert_eq!(rules.deny(), [rule("Bash(rm:*)")]);
    assert!(!set(&[], &["Bash"]).is_empty());
}

#[test]
fn rules_serialize_as_their_text() {
    let r = rule(" Bash( cargo test:* ) ");
    assert_eq!(
        serde_json::to_value(&r).expect("serialize"),
        json!("Bash(cargo test:*)")
    );
    let back: Rule = serde_json::from_value(json!("Edit(src/**)")).expect("deserialize");
    assert_eq!(back, rule("Edit(src/**)"));
    assert!(serde_json::from_value::<Rule>(json!("Bash()")).is_err());
}

#[test]
fn describe_input_renders_a_call_as_one_short_line() {
    let table = [
        (
            "Bash",
            json!({ "command": "cargo test --all" }),
            80,
            "cargo test --all",
        ),
        (
            "Bash",
            json!({ "command": "cargo test\nrm -rf /" }),
            80,
            "cargo test\\nrm -rf /",
        ),
        (
            "Bash",
            json!({ "command": "printf '\u{1b}[2J'" }),
            80,
            "printf '\\u{1b}[2J'",
        ),
        (
            "Edit",
            json!({ "file_path": "/work/proj/src/a.rs", "old_string": "x" }),
            80,
            "/work/proj/src/a.rs",
        ),
        (
            "NotebookEdit",
            json!({ "notebook_path": "/n.ipynb" }),
            80,
            "/n.ipynb",
        ),
        (
            "Read",
            json!({ "file_path": "/etc/hosts" }),
            80,
            "/etc/hosts",
        ),
        (
            "WebFetch",
            json!({ "url": "https://example.com/", "prompt": "p" }),
            80,
            "https://example.com/",
        ),
        (
            "Grep",
            json!({ "pattern": "fn main" }),
            80,
            r#"{"pattern":"fn main"}"#,
        ),
        ("Bash", json!({ "cmd": "ls" }), 80, r#"{"cmd":"ls"}"#),
        ("Bash", json!({ "command": "héllo wörld" }), 5, "héll…"),
        ("Bash", json!({ "command": "héllo" }), 5, "héllo"),
        ("Bash", json!({ "command": "a\nbcdef" }), 4, "a\\n…"),
        ("Bash", json!({ "command": "日本語のコマンド" }), 3, "日本…"),
        ("Bash", json!({ "command": "anything" }), 1, "…"),
        ("Bash", json!({ "command": "anything" }), 0, ""),
        ("Grep", json!({ "pattern": "long pattern" }), 6, "{\"pat…"),
    ];
    for (tool, input, max, expected) in table {
        assert_eq!(
            describe_input(tool, &input, max),
            expected,
            "{tool} {input} {max}"
        );
    }
}

#[test]
fn describe_input_reads_only_the_start_of_a_huge_command() {
    let input = json!({ "command": "x".repeat(5_000_000) });
    let line = describe_input("Bash", &input, 100);
    assert_eq!(line.chars().count(), 100);
    assert!(line.ends_with('…'));
}

#[test]
fn a_huge_compound_command_is_decided_without_quadratic_work() {
    let rules = set(&["Bash(a)"], &["Bash(rm:*)"]);
    let command = "a;".repeat(100_000);
    assert_eq!(
        decision(&rules, "Bash", &bash(&command)),
        Some((Verdict::Allow, "Bash(a)".to_owned()))
    );
    let command = format!("{command}rm -rf /");
    assert_eq!(
        decision(&rules, "Bash", &bash(&command)),
        Some((Verdict::Deny, "Bash(rm:*)".to_owned()))
    );
}
