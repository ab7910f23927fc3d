//! Tests of [`super`]: real git in temporary repositories.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use super::*;

/// `git -C dir <words of cmd>`, which must succeed; its trimmed stdout.
fn run(dir: &Path, cmd: &str) -> String {
    let mut git = std::process::Command::new("git");
    let out = git
        .arg("-C")
        .arg(dir)
        .args(cmd.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// A repository on `main` with one commit, in a directory removed when dropped.
struct Repo {
    root: PathBuf,
    repo: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let id = uuid::Uuid::new_v4();
        let root = std::env::temp_dir().join(format!("claude-pool-build-{id}"));
        let repo = root.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        run(&repo, "init --quiet -b main");
        run(&repo, "config user.name Test");
        run(&repo, "config user.email test@example.com");
        run(&repo, "config commit.gpgsign false");
        std::fs::write(repo.join("README"), "hello\n").unwrap();
        run(&repo, "add README");
        run(&repo, "commit --quiet -m initial");
        Repo { root, repo }
    }
    fn wt(&self, name: &str) -> PathBuf {
        self.root.join("worktrees").join(name)
    }
    /// The main checkout as the tests compare it: HEAD, branch and status.
    fn checkout_state(&self) -> [String; 3] {
        [
            "rev-parse HEAD",
            "branch --show-current",
            "status --porcelain",
        ]
        .map(|cmd| run(&self.repo, cmd))
    }
    async fn plan(&self, branch: &str) -> BuildPlan {
        prepare(&self.repo, branch, "main", &self.wt(branch))
            .await
            .unwrap()
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Commits a new file in the plan's worktree; the new head.
fn commit_in(plan: &BuildPlan, file: &str) -> String {
    std::fs::write(plan.worktree.join(file), "built\n").unwrap();
    run(&plan.worktree, "add -A");
    run(&plan.worktree, "commit --quiet -m build");
    run(&plan.worktree, "rev-parse HEAD")
}

fn error_of(v: &Verified) -> &str {
    v.error.as_deref().unwrap_or("")
}

#[tokio::test]
async fn prepare_creates_the_branch_and_worktree_without_touching_the_main_checkout() {
    let r = Repo::new();
    // A dirty main checkout, so that an unchanged status means something.
    std::fs::write(r.repo.join("README"), "edited\n").unwrap();
    std::fs::write(r.repo.join("untracked"), "x\n").unwrap();
    let before = r.checkout_state();
    let plan = r.plan("feat/one").await;
    assert_eq!(r.checkout_state(), before);
    assert_eq!(plan.base_commit, run(&r.repo, "rev-parse main"));
    assert_eq!(run(&r.repo, "rev-parse feat/one"), plan.base_commit);
    assert_eq!(run(&plan.worktree, "branch --show-current"), "feat/one");
    let readme = std::fs::read_to_string(plan.worktree.join("README")).unwrap();
    assert_eq!(readme, "hello\n");
    assert_eq!(
        (plan.branch.as_str(), plan.base.as_str()),
        ("feat/one", "main")
    );
}

#[tokio::test]
async fn prepare_refuses_a_taken_branch_a_missing_base_or_a_bad_name_and_creates_nothing() {
    let r = Repo::new();
    run(&r.repo, "branch taken");
    let repo = r.repo.display();
    let err = prepare(&r.repo, "taken", "main", &r.wt("taken"))
        .await
        .unwrap_err();
    assert_eq!(err, format!("branch \"taken\" already exists in {repo}"));
    let err = prepare(&r.repo, "new", "nope", &r.wt("new"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        format!("base branch \"nope\" does not exist in {repo}")
    );
    for bad in ["a..b", "-x", "@{-1}", "with space", ""] {
        let err = prepare(&r.repo, bad, "main", &r.wt("bad"))
            .await
            .unwrap_err();
        assert!(err.contains("is not a valid branch name"), "{bad}: {err}");
    }
    let plain = r.root.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let err = prepare(&plain, "new", "main", &r.wt("new"))
        .await
        .unwrap_err();
    assert_eq!(err, format!("{} is not a git repository", plain.display()));
    let sub = r.repo.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let err = prepare(&sub, "new", "main", &r.wt("new"))
        .await
        .unwrap_err();
    assert!(err.ends_with(&format!("(it is inside {repo})")), "{err}");
    assert!(!r.root.join("worktrees").exists());
    std::fs::create_dir_all(r.wt("there")).unwrap();
    let err = prepare(&r.repo, "there", "main", &r.wt("there"))
        .await
        .unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        run(&r.repo, "branch --format=%(refname:short)"),
        "main\ntaken"
    );
}

#[tokio::test]
async fn verify_accepts_a_commit_named_by_the_final_commit_line() {
    let r = Repo::new();
    let plan = r.plan("b").await;
    let sha = commit_in(&plan, "new.txt");
    assert_eq!(run(&r.repo, "rev-parse b"), sha);
    let full = verify(&plan, Some(&format!("Done.\n**FINAL COMMIT: `{sha}`**\n"))).await;
    assert_eq!(
        full,
        Verified {
            head: Some(sha.clone()),
            error: None
        }
    );
    let short = verify(&plan, Some(&format!("FINAL COMMIT: {}", &sha[..8]))).await;
    assert_eq!(short.error, None);
}

#[tokio::test]
async fn verify_reports_no_commit_a_dirty_worktree_another_branch_and_a_bad_final_commit() {
    let r = Repo::new();
    let plan = r.plan("b").await;
    let none = verify(&plan, Some("FINAL COMMIT: 0123456")).await;
    assert_eq!(none.head, None);
    assert_eq!(error_of(&none), "the build made no commit on \"b\"");

    let sha = commit_in(&plan, "one.txt");
    let final_line = format!("FINAL COMMIT: {sha}");
    let missing = verify(&plan, Some("all done")).await;
    assert_eq!(missing.head.as_deref(), Some(sha.as_str()));
    assert_eq!(error_of(&missing), "Claude did not print FINAL COMMIT");
    assert_eq!(
        error_of(&verify(&plan, None).await),
        "Claude did not print FINAL COMMIT"
    );
    let wrong = verify(&plan, Some("FINAL COMMIT: abcdef0")).await;
    let expected = format!("Claude printed FINAL COMMIT: abcdef0 but \"b\" is at {sha}");
    assert_eq!(error_of(&wrong), expected);

    std::fs::write(plan.worktree.join("left.txt"), "x\n").unwrap();
    let dirty = verify(&plan, Some(&final_line)).await;
    assert_eq!(dirty.head.as_deref(), Some(sha.as_str()));
    let expected = "the build left uncommitted changes on \"b\": left.txt";
    assert_eq!(error_of(&dirty), expected);

    run(&plan.worktree, "switch --quiet -c elsewhere");
    let moved = verify(&plan, Some(&final_line)).await;
    let expected = "the build left the worktree on branch \"elsewhere\" instead of \"b\"";
    assert!(error_of(&moved).contains(expected), "{moved:?}");
    assert_eq!(moved.head.as_deref(), Some(sha.as_str()));
}

#[tokio::test]
async fn cleanup_removes_the_worktree_but_keeps_the_branch_and_its_commit() {
    let r = Repo::new();
    let plan = r.plan("b").await;
    let sha = commit_in(&plan, "kept.txt");
    std::fs::write(plan.worktree.join("scratch"), "x\n").unwrap();
    cleanup(&plan, true).await;
    assert!(!plan.worktree.exists());
    assert_eq!(run(&r.repo, "rev-parse refs/heads/b"), sha);
    let listed = run(&r.repo, "worktree list --porcelain");
    assert_eq!(listed.matches("worktree ").count(), 1, "{listed}");
}

#[tokio::test]
async fn cleanup_of_a_job_that_never_started_deletes_the_branch() {
    let r = Repo::new();
    let before = r.checkout_state();
    let plan = r.plan("b").await;
    cleanup(&plan, false).await;
    assert!(!plan.worktree.exists());
    assert_eq!(run(&r.repo, "branch --list b"), "");
    assert_eq!(r.checkout_state(), before);
}

#[test]
fn parse_final_commit_takes_the_last_well_formed_line() {
    let sha40 = "0123456789abcdef0123456789abcdef01234567";
    let cases = [
        ("FINAL COMMIT: abc1234".to_owned(), Some("abc1234")),
        (
            "FINAL COMMIT: 1111111\ntext\nFINAL COMMIT: 2222222\n".into(),
            Some("2222222"),
        ),
        (
            "FINAL COMMIT: 2222222\nFINAL COMMIT: nothex\n".into(),
            Some("2222222"),
        ),
        (
            "  **FINAL COMMIT:** `ABCDEF0123`  ".into(),
            Some("abcdef0123"),
        ),
        ("`FINAL COMMIT: abcdef0`".into(), Some("abcdef0")),
        (format!("FINAL COMMIT: {sha40}"), Some(sha40)),
        ("FINAL COMMIT: abc123".into(), None),
        ("final commit: abc1234".into(), None),
        ("Done. FINAL COMMIT: abc1234".into(), Some("abc1234")),
        ("FINAL COMMIT: abc1234 done".into(), None),
        (String::new(), None),
    ];
    for (output, expected) in cases {
        assert_eq!(
            parse_final_commit(&output).as_deref(),
            expected,
            "{output:?}"
        );
    }
}

#[test]
fn the_prompt_carries_the_spec_branch_base_and_final_commit_line() {
    let p = prompt("Add a widget.", "feat/w", "dev", true);
    assert!(p.starts_with("## Spec\n\nAdd a widget.\n"), "{p}");
    let parts = [
        "`feat/w`",
        "`dev`",
        "git add -A && git commit",
        "FINAL COMMIT: <sha>",
    ];
    for part in parts.into_iter().chain(["Run the project's tests"]) {
        assert!(p.contains(part), "missing {part}: {p}");
    }
    assert!(!prompt("x", "b", "main", false).contains("Run the project's tests"));
}
