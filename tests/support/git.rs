//! Git for the tests: run a command in a repository, make a repository with one commit.

use std::path::Path;
use std::process::Command;

/// Runs `git -C dir args…`, fails the test when git does, and returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Makes `dir` a repository on `main` with one commit (a README), with its own identity.
pub fn init_repo(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create the repository");
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Test"]);
    git(dir, &["config", "user.email", "test@example.com"]);
    git(dir, &["config", "commit.gpgsign", "false"]);
    std::fs::write(dir.join("README"), "hello\n").expect("write README");
    git(dir, &["add", "README"]);
    git(dir, &["commit", "-q", "-m", "first"]);
}
