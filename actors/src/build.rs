//! Builds on a branch (`claude_build {project, spec, branch, baseBranch?, runTests?}`).
//!
//! A build runs Claude in a git worktree of its own, on a new branch created from the base
//! branch. The steps, each a function here:
//!
//! | step | what | on failure |
//! |---|---|---|
//! | [`prepare`] | checks the names, creates the branch and its worktree | nothing created; the job is refused |
//! | [`prompt`] | the spec, then how to deliver (commit, print `FINAL COMMIT: <sha>`) | — |
//! | [`verify`] | reads the branch head after the run and checks it against the output | the head is still reported |
//! | [`cleanup`] | removes the worktree; deletes the branch only if the job never ran | logged, never returned |
//!
//! The project's own checkout (its branch, HEAD, index and working tree) is never touched:
//! every change happens in the worktree, and the only ref written in the repository is the
//! new branch. The branch and its commits outlive the job.

use std::path::{Path, PathBuf};

use crate::worktree::git;

/// How many uncommitted paths an error names.
const DIRTY_PATHS_SHOWN: usize = 5;
/// What Claude prints last, followed by the head's sha.
const FINAL_COMMIT: &str = "FINAL COMMIT:";

/// A prepared build: where it runs and what it starts from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildPlan {
    /// The project's top-level directory (the main checkout, never modified).
    pub repo: PathBuf,
    /// The build's worktree: Claude's working directory, removed by [`cleanup`].
    pub worktree: PathBuf,
    /// The new branch checked out in the worktree.
    pub branch: String,
    /// The base branch as the caller named it (for messages and the prompt).
    pub base: String,
    /// The commit `base` resolved to; the branch starts here, so a head equal to it means
    /// the build committed nothing.
    pub base_commit: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The branch's head when it is beyond the base commit, reported even when `error` is
    /// set, so that the caller can point at the commits the build did make.
    pub head: Option<String>,
    /// Why the build is not accepted as delivered: sentences joined by `"; "`.
    pub error: Option<String>,
}

/// What `rev` names in `repo`, as a full sha; `None` when it names nothing.
async fn resolve(repo: &Path, rev: &str) -> Option<String> {
    git(repo, &["rev-parse", "--verify", "--quiet", rev])
        .await
        .ok()
}

/// Validates the names and creates `branch` from `base` checked out in a new worktree at
/// `worktree` (which must be absolute and not exist yet). `branch` must be a valid branch
/// name that does not exist; `base` must resolve to a commit; `repo` must be the top level
/// of a git repository (not a directory inside one). On error nothing has been created.
pub async fn prepare(
    repo: &Path,
    branch: &str,
    base: &str,
    worktree: &Path,
) -> Result<BuildPlan, String> {
    if !repo.is_dir() {
        return Err(format!("{} is not a directory", repo.display()));
    }
    let top = PathBuf::from(
        git(repo, &["rev-parse", "--show-toplevel"])
            .await
            .map_err(|_| format!("{} is not a git repository", repo.display()))?,
    );
    // A project inside another repository (a home directory under git, say) must not
    // build in that one.
    let same = match (
        tokio::fs::canonicalize(&top).await,
        tokio::fs::canonicalize(repo).await,
    ) {
        (Ok(top), Ok(repo)) => top == repo,
        _ => top == repo,
    };
    if !same {
        let (repo, top) = (repo.display(), top.display());
        return Err(format!(
            "{repo} is not a git repository (it is inside {top})"
        ));
    }
    let named = top.display();
    // A leading '-' would be read as an option; `@` and `@{-N}` stand for other branches.
    let valid = !branch.starts_with('-')
        && branch != "@"
        && git(&top, &["check-ref-format", "--branch", branch])
            .await
            .as_deref()
            == Ok(branch);
    if !valid {
        return Err(format!("{branch:?} is not a valid branch name"));
    }
    if resolve(&top, &format!("refs/heads/{branch}"))
        .await
        .is_some()
    {
        return Err(format!("branch {branch:?} already exists in {named}"));
    }
    let missing_base = || format!("base branch {base:?} does not exist in {named}");
    if base.is_empty() || base.starts_with('-') {
        return Err(missing_base());
    }
    let base_commit = resolve(&top, &format!("{base}^{{commit}}"))
        .await
        .ok_or_else(missing_base)?;
    if !worktree.is_absolute() {
        return Err(format!(
            "the worktree path {} is not absolute",
            worktree.display()
        ));
    }
    if tokio::fs::symlink_metadata(worktree).await.is_ok() {
        return Err(format!(
            "the worktree path {} already exists",
            worktree.display()
        ));
    }
    let worktree_s = worktree
        .to_str()
        .ok_or_else(|| format!("the worktree path {} is not UTF-8", worktree.display()))?;
    // From the resolved commit rather than the name, so the branch starts exactly at
    // `base_commit` even if `base` moves meanwhile, and never tracks a remote branch.
    let add = [
        "worktree",
        "add",
        "--quiet",
        "-b",
        branch,
        worktree_s,
        &base_commit,
    ];
    git(&top, &add).await?;
    Ok(BuildPlan {
        repo: top,
        worktree: worktree.to_path_buf(),
        branch: branch.to_owned(),
        base: base.to_owned(),
        base_commit,
    })
}

/// The build's prompt: the spec, then how to deliver it on `branch`.
pub fn prompt(spec: &str, branch: &str, base: &str, run_tests: bool) -> String {
    let tests = if run_tests {
        "- Run the project's tests and fix every failure before you commit.\n"
    } else {
        ""
    };
    format!(
        "## Spec\n\n{spec}\n\n## How to deliver\n\n\
         - You are in a git worktree of the project, on the branch `{branch}`, created from \
         `{base}` for this build. Work in this directory only.\n\
         - Implement the spec above.\n\
         {tests}\
         - Commit all your changes on `{branch}` with a descriptive message \
         (`git add -A && git commit -m \"...\"`). Leave nothing uncommitted.\n\
         - Do not switch branches, and do not create, move, rebase, push or delete any other branch.\n\
         - Finish by printing exactly one line `{FINAL_COMMIT} <sha>`, where <sha> is the full \
         sha of HEAD after your last commit (`git rev-parse HEAD`).\n"
    )
}

/// The sha of the last line reading `FINAL COMMIT: <7 to 64 hex digits>`, lowercased.
/// Whitespace, backticks and asterisks around the label and the sha are tolerated; the
/// label is case-sensitive and must start the line.
pub fn parse_final_commit(output: &str) -> Option<String> {
    let decoration = |c: char| c.is_whitespace() || c == '`' || c == '*';
    // The label may follow other words on its line ("Done. FINAL COMMIT: …"); the sha must
    // end the line.
    output.lines().rev().find_map(|line| {
        let (_, rest) = line.rsplit_once(FINAL_COMMIT)?;
        let sha = rest.trim_matches(decoration);
        let hex = (7..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then(|| sha.to_ascii_lowercase())
    })
}

/// Checks the branch after the run against `output` (Claude's final text): a commit beyond
/// the base, nothing left uncommitted, still on the branch, and a printed `FINAL COMMIT`
/// that names the head (a prefix of its full sha is accepted). Every failed check is named.
pub async fn verify(plan: &BuildPlan, output: Option<&str>) -> Verified {
    let branch = &plan.branch;
    let Some(branch_head) = resolve(&plan.repo, &format!("refs/heads/{branch}")).await else {
        let repo = plan.repo.display();
        let error = format!("branch {branch:?} no longer exists in {repo}");
        return Verified {
            head: None,
            error: Some(error),
        };
    };
    let head = (branch_head != plan.base_commit).then(|| branch_head.clone());
    let errors: Vec<String> = [
        checkout_error(plan, &branch_head).await,
        history_error(plan, &branch_head).await,
        dirty_error(plan).await,
        head.as_ref()
            .and_then(|head| final_commit_error(plan, head, output)),
    ]
    .into_iter()
    .flatten()
    .collect();
    Verified {
        head,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// Why the worktree is not on the build's branch at `branch_head`, if it is not.
async fn checkout_error(plan: &BuildPlan, branch_head: &str) -> Option<String> {
    let (wt, branch) = (&plan.worktree, &plan.branch);
    let current = git(wt, &["branch", "--show-current"]).await;
    let wt_head = git(wt, &["rev-parse", "HEAD"]).await;
    match (current, wt_head) {
        (Err(e), _) | (_, Err(e)) => Some(format!("cannot read the worktree's HEAD: {e}")),
        (Ok(current), _) if current.is_empty() => Some(format!(
            "the build left the worktree on a detached HEAD instead of {branch:?}"
        )),
        (Ok(current), _) if current != *branch => Some(format!(
            "the build left the worktree on branch {current:?} instead of {branch:?}"
        )),
        (Ok(_), Ok(wt_head)) => (wt_head != branch_head).then(|| {
            format!("the worktree's HEAD {wt_head} is not {branch:?}'s head {branch_head}")
        }),
    }
}

/// Why the branch's history is not the base plus the build's commits, if it is not.
async fn history_error(plan: &BuildPlan, branch_head: &str) -> Option<String> {
    let (branch, base, base_commit) = (&plan.branch, &plan.base, &plan.base_commit);
    if branch_head == base_commit {
        return Some(format!("the build made no commit on {branch:?}"));
    }
    let ancestry = ["merge-base", "--is-ancestor", base_commit, branch_head];
    git(&plan.repo, &ancestry).await.is_err().then(|| {
        format!("{branch:?} at {branch_head} no longer descends from {base:?} ({base_commit})")
    })
}

/// The uncommitted paths in the worktree, if any (the first few, by name).
async fn dirty_error(plan: &BuildPlan) -> Option<String> {
    let status = ["status", "--porcelain", "--untracked-files=all"];
    let status = match git(&plan.worktree, &status).await {
        Ok(status) if status.is_empty() => return None,
        Ok(status) => status,
        Err(e) => return Some(format!("cannot read the worktree's status: {e}")),
    };
    let paths: Vec<&str> = status.lines().map(|l| l.get(3..).unwrap_or(l)).collect();
    let mut shown = paths[..paths.len().min(DIRTY_PATHS_SHOWN)].join(", ");
    if paths.len() > DIRTY_PATHS_SHOWN {
        shown.push_str(&format!(" and {} more", paths.len() - DIRTY_PATHS_SHOWN));
    }
    Some(format!(
        "the build left uncommitted changes on {:?}: {shown}",
        plan.branch
    ))
}

/// Why `output` does not name `head` in a `FINAL COMMIT` line, if it does not.
fn final_commit_error(plan: &BuildPlan, head: &str, output: Option<&str>) -> Option<String> {
    match output.and_then(parse_final_commit) {
        None => Some("Claude did not print FINAL COMMIT".to_owned()),
        Some(printed) if !head.starts_with(&printed) => Some(format!(
            "Claude printed FINAL COMMIT: {printed} but {:?} is at {head}",
            plan.branch
        )),
        Some(_) => None,
    }
}

/// Removes the worktree (`git worktree remove --force`, then `git worktree prune`); when
/// `started` is false (the job never ran) also deletes the branch, but only while it is still
/// at the base commit. Errors are logged, never returned.
pub async fn cleanup(plan: &BuildPlan, started: bool) {
    let wt = plan.worktree.to_string_lossy();
    if let Err(e) = git(&plan.repo, &["worktree", "remove", "--force", &wt]).await
        && tokio::fs::symlink_metadata(&plan.worktree).await.is_ok()
    {
        tracing::warn!(worktree = %wt, error = %e, "git could not remove a build's worktree; deleting its directory");
        if let Err(e) = tokio::fs::remove_dir_all(&plan.worktree).await {
            tracing::warn!(worktree = %wt, error = %e, "cannot delete a build's worktree");
        }
    }
    if let Err(e) = git(&plan.repo, &["worktree", "prune"]).await {
        tracing::warn!(repo = %plan.repo.display(), error = %e, "git worktree prune failed");
    }
    if !started {
        // With the old value given, update-ref deletes the branch only if it is unmoved.
        let branch_ref = format!("refs/heads/{}", plan.branch);
        let delete = ["update-ref", "-d", &branch_ref, &plan.base_commit];
        if let Err(e) = git(&plan.repo, &delete).await {
            tracing::warn!(branch = %plan.branch, error = %e, "cannot delete the branch of a build that never ran");
        }
    }
}

#[cfg(test)]
mod tests;
