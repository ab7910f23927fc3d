//! Skills: named prompt templates with declared arguments.
//!
//! Four are built in (`code_review`, `write_tests`, `refactor`, `summarize`; off with
//! `--no-builtins`); more come from directories of Claude Code-style skill files — each
//! `<dir>/<name>/SKILL.md` (or `<dir>/<name>.md`) holds a YAML-like frontmatter and the
//! prompt template:
//!
//! ```text
//! ---
//! name: security_review
//! description: Review code for security issues
//! arguments:
//!   - name: path
//!     description: File or directory to review
//!     required: true
//!   - name: focus
//!     description: What to look at first
//!     default: injection and authentication
//! ---
//! Review {path} for security issues. Look at {focus} first.
//! ```
//!
//! `{name}` in the template is replaced by the argument's value. Required arguments are
//! checked, and unknown ones refused, before anything runs. A file that cannot be read or
//! parsed stops the server at start with a message naming the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use claude_pool_protocol::tools::{SkillArgumentInfo, SkillInfo};
use serde_json::{Map, Value};

/// One skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    /// Its name: letters, digits, `_` and `-`.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its declared arguments.
    pub arguments: Vec<SkillArgumentInfo>,
    /// The prompt, with `{argument}` placeholders.
    pub template: String,
    /// `None` for a built-in, else the file it came from.
    pub source: Option<PathBuf>,
}

impl Skill {
    /// The skill as `pool_skill_list` (without the template) or `pool_skill_get` shows it.
    pub fn info(&self, with_template: bool) -> SkillInfo {
        SkillInfo {
            name: self.name.clone(),
            description: self.description.clone(),
            arguments: self.arguments.clone(),
            source: self
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "builtin".into()),
            template: with_template.then(|| self.template.clone()),
        }
    }

    /// The prompt for `args`, or what is wrong with them.
    pub fn render(&self, args: &Map<String, Value>) -> Result<String, String> {
        if let Some(unknown) = args
            .keys()
            .find(|k| !self.arguments.iter().any(|a| &a.name == *k))
        {
            let known: Vec<&str> = self.arguments.iter().map(|a| a.name.as_str()).collect();
            return Err(format!(
                "skill {:?} has no argument {unknown:?} (its arguments: {})",
                self.name,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ));
        }
        let mut values = BTreeMap::new();
        for a in &self.arguments {
            let value = match args.get(&a.name) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(Value::Null) | None => None,
                Some(other) => {
                    return Err(format!(
                        "argument {:?} of skill {:?} must be a string, not {other}",
                        a.name, self.name
                    ));
                }
            };
            let value = match (value, &a.default) {
                (Some(v), _) if !v.trim().is_empty() => v,
                (_, Some(d)) => d.clone(),
                (_, None) if a.required => {
                    return Err(format!(
                        "skill {:?} needs the argument {:?} ({})",
                        self.name, a.name, a.description
                    ));
                }
                (v, None) => v.unwrap_or_default(),
            };
            values.insert(a.name.clone(), value);
        }
        let mut out = self.template.clone();
        for (k, v) in &values {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        Ok(out)
    }
}

/// Every skill of a pool, by name.
#[derive(Debug, Clone, Default)]
pub struct SkillRegistry {
    skills: BTreeMap<String, Skill>,
}

fn arg(name: &str, description: &str, required: bool, default: Option<&str>) -> SkillArgumentInfo {
    SkillArgumentInfo {
        name: name.into(),
        description: description.into(),
        required,
        default: default.map(str::to_owned),
    }
}

/// The four built-in skills.
pub fn builtins() -> Vec<Skill> {
    let b = |name: &str, description: &str, arguments, template: &str| Skill {
        name: name.into(),
        description: description.into(),
        arguments,
        template: template.into(),
        source: None,
    };
    vec![
        b(
            "code_review",
            "Review code for bugs, style, and clarity",
            vec![
                arg("path", "File or directory to review", true, None),
                arg(
                    "criteria",
                    "What to look for",
                    false,
                    Some("bugs, style and clarity"),
                ),
            ],
            "Review the code in {path}. Focus on: {criteria}.\n\nFor each finding give the file and line, what is wrong, why it matters, and a concrete fix. Order findings by severity. Do not modify any file.",
        ),
        b(
            "write_tests",
            "Generate tests for code",
            vec![
                arg("path", "File or module to test", true, None),
                arg(
                    "framework",
                    "Test framework to use",
                    false,
                    Some("the project's existing test framework"),
                ),
            ],
            "Write tests for the code in {path} using {framework}.\n\nCover the normal behaviour, the edge cases and the error paths. Each test asserts one behaviour and says in its name what it checks. Report the tests you wrote and how to run them.",
        ),
        b(
            "refactor",
            "Refactor code for clarity and performance",
            vec![
                arg("path", "File or module to refactor", true, None),
                arg(
                    "goal",
                    "What the refactoring should achieve",
                    false,
                    Some("clarity and performance"),
                ),
            ],
            "Refactor the code in {path} for {goal}, without changing its behaviour.\n\nExplain each change and why it is safe. Keep public interfaces unless the goal requires changing them.",
        ),
        b(
            "summarize",
            "Summarize text or code",
            vec![
                arg(
                    "target",
                    "The text to summarize, or a file or directory path",
                    true,
                    None,
                ),
                arg(
                    "length",
                    "How long the summary should be",
                    false,
                    Some("a few short paragraphs"),
                ),
            ],
            "Summarize the following in {length}. If it is a file or directory path, read it first.\n\n{target}",
        ),
    ]
}

impl SkillRegistry {
    /// The built-ins (unless `builtins` is false) and the skills found in `dirs`; a later
    /// skill with the same name replaces an earlier one.
    pub fn load(builtins_on: bool, dirs: &[PathBuf]) -> Result<SkillRegistry, String> {
        let mut reg = SkillRegistry::default();
        if builtins_on {
            for s in builtins() {
                reg.skills.insert(s.name.clone(), s);
            }
        }
        for dir in dirs {
            for file in skill_files(dir)? {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read skill file {}: {e}", file.display()))?;
                let skill = parse_skill(&text, &file)?;
                reg.skills.insert(skill.name.clone(), skill);
            }
        }
        Ok(reg)
    }

    /// A skill by name.
    pub fn get(&self, name: &str) -> Option<&Skill> {
        self.skills.get(name)
    }

    /// Every skill, by name.
    pub fn all(&self) -> impl Iterator<Item = &Skill> {
        self.skills.values()
    }

    /// Names of every skill, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.skills.keys().map(String::as_str).collect()
    }
}

/// `<dir>/*/SKILL.md` and `<dir>/*.md`, sorted.
fn skill_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the skills directory {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let f = path.join("SKILL.md");
            if f.is_file() {
                files.push(f);
            }
        } else if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses one skill file: `---` frontmatter (name, description, arguments) then the body.
pub fn parse_skill(text: &str, file: &Path) -> Result<Skill, String> {
    let at = |line: usize, what: String| format!("{}:{line}: {what}", file.display());
    let mut lines = text.lines().enumerate().peekable();
    match lines.next() {
        Some((_, l)) if l.trim_end() == "---" => {}
        _ => {
            return Err(at(
                1,
                "a skill file starts with a `---` frontmatter line".into(),
            ));
        }
    }
    let mut name = None;
    let mut description = None;
    let mut arguments: Vec<SkillArgumentInfo> = Vec::new();
    let mut in_arguments = false;
    let mut closed = false;
    for (i, raw) in lines.by_ref() {
        let n = i + 1;
        if raw.trim_end() == "---" {
            closed = true;
            break;
        }
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        let indented = raw.starts_with(' ') || raw.starts_with('\t');
        let line = raw.trim();
        if !indented {
            in_arguments = false;
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| at(n, format!("expected `key: value`, found {line:?}")))?;
            let v = unquote(v.trim());
            match k.trim() {
                "name" => name = Some(v),
                "description" => description = Some(v),
                "arguments" if v.is_empty() => in_arguments = true,
                "arguments" => {
                    return Err(at(
                        n,
                        "`arguments:` is followed by a list of `- name: ...` entries".into(),
                    ));
                }
                // Claude Code's own frontmatter keys are accepted and ignored.
                _ => {}
            }
            continue;
        }
        if !in_arguments {
            continue;
        }
        let (item_start, kv) = match line.strip_prefix("- ") {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        if item_start {
            arguments.push(arg("", "", false, None));
        }
        let Some(current) = arguments.last_mut() else {
            return Err(at(n, "an argument starts with `- name: ...`".into()));
        };
        let (k, v) = kv
            .split_once(':')
            .ok_or_else(|| at(n, format!("expected `key: value`, found {kv:?}")))?;
        let v = unquote(v.trim());
        match k.trim() {
            "name" => current.name = v,
            "description" => current.description = v,
            "required" => {
                current.required = match v.as_str() {
                    "true" | "yes" => true,
                    "false" | "no" => false,
                    other => {
                        return Err(at(n, format!("`required` is true or false, not {other:?}")));
                    }
                }
            }
            "default" => current.default = Some(v),
            other => {
                return Err(at(
                    n,
                    format!(
                        "unknown argument key {other:?} (name, description, required, default)"
                    ),
                ));
            }
        }
    }
    if !closed {
        return Err(at(
            1,
            "the frontmatter is not closed by a `---` line".into(),
        ));
    }
    let body: Vec<&str> = lines.map(|(_, l)| l).collect();
    let template = body.join("\n").trim().to_owned();
    let fallback = file
        .parent()
        .filter(|_| file.file_name().is_some_and(|f| f == "SKILL.md"))
        .and_then(Path::file_name)
        .or_else(|| file.file_stem())
        .map(|s| s.to_string_lossy().into_owned());
    let name = name.or(fallback).unwrap_or_default();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(at(
            1,
            format!("skill name {name:?} must be letters, digits, '_' or '-'"),
        ));
    }
    if template.is_empty() {
        return Err(at(
            1,
            format!("skill {name:?} has no prompt after its frontmatter"),
        ));
    }
    for a in &arguments {
        if a.name.is_empty() {
            return Err(at(1, format!("an argument of skill {name:?} has no name")));
        }
    }
    Ok(Skill {
        description: description.unwrap_or_else(|| format!("the {name} skill")),
        name,
        arguments,
        template,
        source: Some(file.to_path_buf()),
    })
}

fn unquote(v: &str) -> String {
    let quoted = v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')));
    if quoted {
        v[1..v.len() - 1].to_owned()
    } else {
        v.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "---\nname: security_review\ndescription: \"Review code for security\"\nallowed-tools: Read\narguments:\n  - name: path\n    description: File to review\n    required: true\n  - name: focus\n    description: What first\n    default: injection\n---\nReview {path} for security. Look at {focus} first.\n";

    #[test]
    fn a_skill_file_is_parsed_and_rendered() {
        let s = parse_skill(FILE, Path::new("/x/security/SKILL.md")).expect("parses");
        assert_eq!(s.name, "security_review");
        assert_eq!(s.description, "Review code for security");
        assert_eq!(s.arguments.len(), 2);
        assert!(s.arguments[0].required);
        let args = json!({"path": "src/auth.rs"});
        let out = s
            .render(args.as_object().expect("object"))
            .expect("renders");
        assert_eq!(
            out,
            "Review src/auth.rs for security. Look at injection first."
        );
    }

    #[test]
    fn missing_and_unknown_arguments_are_refused() {
        let s = parse_skill(FILE, Path::new("s.md")).expect("parses");
        let e = s.render(&Map::new()).expect_err("path is required");
        assert!(e.contains("needs the argument \"path\""), "{e}");
        let args = json!({"path": "a", "colour": "red"});
        let e = s
            .render(args.as_object().expect("object"))
            .expect_err("unknown");
        assert!(e.contains("no argument \"colour\""), "{e}");
        let args = json!({"path": ["a"]});
        assert!(s.render(args.as_object().expect("object")).is_err());
    }

    #[test]
    fn broken_files_name_the_file_and_line() {
        let cases = [
            ("no frontmatter", "starts with a `---`"),
            ("---\nname: x\n", "not closed"),
            (
                "---\nname: x\narguments:\n  - name: a\n    colour: red\n---\nbody",
                "s.md:5",
            ),
            ("---\nname: bad name\n---\nbody", "must be letters"),
            ("---\nname: x\n---\n", "no prompt"),
        ];
        for (text, want) in cases {
            let e = parse_skill(text, Path::new("s.md")).expect_err(want);
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn the_four_builtins_exist_and_render() {
        let reg = SkillRegistry::load(true, &[]).expect("builtins");
        assert_eq!(
            reg.names(),
            vec!["code_review", "refactor", "summarize", "write_tests"]
        );
        let s = reg.get("code_review").expect("code_review");
        let out = s
            .render(json!({"path": "src/main.rs"}).as_object().expect("object"))
            .expect("renders");
        assert!(
            out.starts_with("Review the code in src/main.rs. Focus on: bugs, style and clarity.")
        );
        assert_eq!(
            SkillRegistry::load(false, &[]).expect("none").names().len(),
            0
        );
    }
}
