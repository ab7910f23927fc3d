//! Tests of [`super`]: parsing, validation and reload of projects files.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use super::*;

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("claude-pool-projects-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn sub(&self, name: &str) -> PathBuf {
        let dir = self.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn json_path(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).unwrap()
}

#[test]
fn a_valid_file_parses_with_defaults_applied() {
    let tmp = TempDir::new();
    let (a, b) = (tmp.sub("a"), tmp.sub("b"));
    let text = format!(
        r#"{{ "spoonworks": {{ "path": {}, "defaultBranch": "trunk" }},
             "dash": {{ "path": {}, "maxConcurrent": 2 }} }}"#,
        json_path(&a),
        json_path(&b)
    );
    let projects = Projects::parse(&text, "projects.json").unwrap();
    assert_eq!(projects.len(), 2);
    assert!(!projects.is_empty());
    let names: Vec<&str> = projects.list().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["dash", "spoonworks"]);
    assert_eq!(
        projects.get("dash"),
        Some(&Project {
            name: "dash".into(),
            path: b,
            default_branch: "main".into(),
            max_concurrent: 2
        })
    );
    let spoon = projects.get("spoonworks").unwrap();
    assert_eq!(
        (
            spoon.path.as_path(),
            spoon.default_branch.as_str(),
            spoon.max_concurrent
        ),
        (a.as_path(), "trunk", 1)
    );
    assert!(projects.get("nope").is_none());
    assert!(Projects::parse("{}", "projects.json").unwrap().is_empty());
}

#[test]
fn each_invalid_entry_gives_an_error_naming_the_file_project_and_field() {
    let tmp = TempDir::new();
    let dir = json_path(&tmp.sub("d"));
    let missing = json_path(&tmp.0.join("missing"));
    let file = json_path(&{
        let f = tmp.0.join("file");
        std::fs::write(&f, "").unwrap();
        f
    });
    let cases = [
        (
            r#"{"dash": {"path": "x"}}"#.to_owned(),
            "project \"dash\": path \"x\" is not absolute",
        ),
        (
            format!(r#"{{"dash": {{"path": {missing}}}}}"#),
            "project \"dash\": path",
        ),
        (
            format!(r#"{{"dash": {{"path": {missing}}}}}"#),
            "does not exist",
        ),
        (
            format!(r#"{{"dash": {{"path": {file}}}}}"#),
            "is not a directory",
        ),
        (
            format!(r#"{{"dash": {{"path": {dir}, "colour": 1}}}}"#),
            "project \"dash\": unknown field `colour`",
        ),
        (
            format!(r#"{{"da sh": {{"path": {dir}}}}}"#),
            "project \"da sh\": the name must be",
        ),
        (
            format!(r#"{{"": {{"path": {dir}}}}}"#),
            "project \"\": the name must be",
        ),
        (
            format!(r#"{{"{}": {{"path": {dir}}}}}"#, "x".repeat(65)),
            "the name must be",
        ),
        (
            format!(r#"{{"dash": {{"path": {dir}, "maxConcurrent": 0}}}}"#),
            "project \"dash\": maxConcurrent 0 is out of range",
        ),
        (
            format!(r#"{{"dash": {{"path": {dir}, "maxConcurrent": 65}}}}"#),
            "project \"dash\": maxConcurrent 65",
        ),
        (
            format!(r#"{{"dash": {{"path": {dir}, "maxConcurrent": -1}}}}"#),
            "project \"dash\": maxConcurrent: invalid value",
        ),
        (
            format!(r#"{{"dash": {{"path": {dir}, "defaultBranch": ""}}}}"#),
            "project \"dash\": defaultBranch must not be empty",
        ),
        (
            r#"{"dash": {}}"#.to_owned(),
            "project \"dash\": missing field `path`",
        ),
        (
            r#"{"dash": 3}"#.to_owned(),
            "project \"dash\": invalid type",
        ),
        (
            "[1]".to_owned(),
            "expected a JSON object keyed by project name",
        ),
    ];
    for (text, expected) in cases {
        let err = Projects::parse(&text, "projects.json").unwrap_err();
        assert!(err.starts_with("projects.json: "), "{text} gave {err}");
        assert!(
            err.contains(expected),
            "{text} gave {err}, wanted {expected}"
        );
    }
}

#[test]
fn load_names_a_missing_file() {
    let tmp = TempDir::new();
    let file = tmp.0.join("projects.json");
    let err = ProjectRegistry::load(&file).unwrap_err();
    assert!(err.starts_with(&file.display().to_string()), "{err}");
}

#[test]
fn reload_reports_exactly_what_changed_and_a_broken_file_keeps_the_old_contents() {
    let tmp = TempDir::new();
    let (a, b, c) = (
        json_path(&tmp.sub("a")),
        json_path(&tmp.sub("b")),
        json_path(&tmp.sub("c")),
    );
    let file = tmp.0.join("projects.json");
    let write = |text: String| std::fs::write(&file, text).unwrap();
    write(format!(
        r#"{{"keep": {{"path": {a}}}, "gone": {{"path": {b}}}, "edit": {{"path": {c}}}}}"#
    ));
    let registry = ProjectRegistry::load(&file).unwrap();
    assert_eq!(registry.file(), Some(file.as_path()));
    assert_eq!(registry.current().len(), 3);

    write(format!(
        r#"{{"keep": {{"path": {a}}}, "edit": {{"path": {c}, "maxConcurrent": 3}}, "new": {{"path": {b}}}}}"#
    ));
    let reload = registry.reload().unwrap();
    assert_eq!(
        reload,
        Reload {
            added: vec!["new".into()],
            removed: vec!["gone".into()],
            changed: vec!["edit".into()]
        }
    );
    let after = registry.current();
    assert_eq!(after.get("edit").unwrap().max_concurrent, 3);
    assert!(after.get("gone").is_none());

    assert_eq!(
        registry.reload().unwrap(),
        Reload::default(),
        "an unchanged file changes nothing"
    );

    write(r#"{"keep": {"path": "relative"}}"#.to_owned());
    let err = registry.reload().unwrap_err();
    assert!(
        err.contains("project \"keep\": path \"relative\" is not absolute"),
        "{err}"
    );
    assert_eq!(
        registry.current(),
        after,
        "a broken file keeps the old contents"
    );

    std::fs::remove_file(&file).unwrap();
    assert!(registry.reload().is_err());
    assert_eq!(registry.current(), after);
}

#[test]
fn an_empty_registry_has_no_projects_and_reloads_to_nothing() {
    let registry = ProjectRegistry::empty();
    assert!(registry.current().is_empty());
    assert_eq!(registry.file(), None);
    assert_eq!(registry.reload().unwrap(), Reload::default());
}
