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
//! `{name}` in the template is replaced by the argument's value; files are read by [`file`]. Required arguments are
//! checked, and unknown ones refused, before anything runs. A file that cannot be read or
//! parsed stops the server at start with a message naming the file and line.

mod file;

use std::collections::BTreeMap;
use std::path::PathBuf;

use claude_pool_protocol::tools::{SkillArgumentInfo, SkillInfo};
use claude_pool_protocol::validate::MAX_RENDERED_PROMPT;
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
        // A template may repeat an argument: the length is counted before anything is
        // built, so an over-long prompt is refused without ever being held in memory.
        let len = substitute(&self.template, &values, None);
        if len > MAX_RENDERED_PROMPT {
            return Err(format!(
                "skill {:?} renders to {len} bytes with these arguments, over the cap of {MAX_RENDERED_PROMPT} bytes (1 MiB) on a rendered prompt; pass shorter arguments",
                self.name
            ));
        }
        let mut out = String::with_capacity(len);
        substitute(&self.template, &values, Some(&mut out));
        Ok(out)
    }
}

/// Replaces every `{name}` of `template` whose name is in `values` by its value, in one
/// pass (a value is inserted as it is: a `{name}` inside it is not replaced again), into
/// `out` when given; returns the length of the result either way (saturating, so a
/// template repeating a huge value cannot overflow the count).
fn substitute(
    template: &str,
    values: &BTreeMap<String, String>,
    mut out: Option<&mut String>,
) -> usize {
    let mut len = 0usize;
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (text, from_brace) = rest.split_at(open);
        let value = from_brace[1..]
            .find('}')
            .and_then(|close| values.get(&from_brace[1..=close]).map(|v| (v, close + 2)));
        let (piece, advance) = match value {
            Some((v, consumed)) => (v.as_str(), consumed),
            None => ("{", 1),
        };
        len = len.saturating_add(text.len()).saturating_add(piece.len());
        if let Some(out) = out.as_deref_mut() {
            out.push_str(text);
            out.push_str(piece);
        }
        rest = &from_brace[advance..];
    }
    len = len.saturating_add(rest.len());
    if let Some(out) = out {
        out.push_str(rest);
    }
    len
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
            for file in file::skill_files(dir)? {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read skill file {}: {e}", file.display()))?;
                let skill = file::parse_skill(&text, &file)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A skill with one optional argument `x` and this template.
    fn skill(template: &str) -> Skill {
        Skill {
            name: "t".into(),
            description: "test".into(),
            arguments: vec![
                arg("x", "a value", false, None),
                arg("y", "another", false, None),
            ],
            template: template.into(),
            source: None,
        }
    }

    #[test]
    fn placeholders_are_replaced_in_one_pass() {
        // (template, x, y, rendered)
        let table = [
            ("{x}", "a", "b", "a"),
            ("{x}-{y}-{x}", "a", "b", "a-b-a"),
            ("{z} {x}", "a", "b", "{z} a"),
            ("{{x}}", "a", "b", "{a}"),
            ("{x", "a", "b", "{x"),
            ("}{x}{", "a", "b", "}a{"),
            ("{x}", "{y}", "b", "{y}"),
            ("é{x}ü", "ß", "b", "éßü"),
            ("", "a", "b", ""),
        ];
        for (template, x, y, want) in table {
            let args = json!({ "x": x, "y": y });
            let got = skill(template)
                .render(args.as_object().expect("object"))
                .expect("renders");
            assert_eq!(got, want, "{template:?} x={x:?} y={y:?}");
        }
    }

    #[test]
    fn a_rendering_past_the_cap_is_refused_before_it_is_built() {
        let repeats = 4096;
        let template = "{x}".repeat(repeats);
        let at_cap = "v".repeat(MAX_RENDERED_PROMPT / repeats);
        let args = json!({ "x": at_cap });
        let out = skill(&template)
            .render(args.as_object().expect("object"))
            .expect("exactly at the cap renders");
        assert_eq!(out.len(), MAX_RENDERED_PROMPT);
        let over = json!({ "x": format!("{at_cap}v") });
        let e = skill(&template)
            .render(over.as_object().expect("object"))
            .expect_err("one byte per repeat over the cap");
        let want = MAX_RENDERED_PROMPT + repeats;
        assert!(e.contains(&format!("renders to {want} bytes")), "{e}");
        assert!(e.contains(&MAX_RENDERED_PROMPT.to_string()), "{e}");
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
