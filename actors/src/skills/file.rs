//! Reading skill files: `<dir>/<name>/SKILL.md` or `<dir>/<name>.md`, each a `---`
//! frontmatter (`name`, `description`, `arguments` with `name`, `description`, `required`,
//! `default`; Claude Code's other keys are ignored) followed by the prompt template. The
//! frontmatter is the YAML subset shown in [`super`]; anything else is an error naming the
//! file and line.

use std::path::{Path, PathBuf};

use claude_pool_protocol::tools::SkillArgumentInfo;

use super::{Skill, arg};

/// `<dir>/*/SKILL.md` and `<dir>/*.md`, sorted.
pub(super) fn skill_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
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
    use serde_json::{Map, json};

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
}
