//! Git worktrees, one per slot (`--worktree`).
//!
//! Each slot's Claude processes run in `<git dir>/claude-pool/worktrees/<slot>`, a worktree
//! of the repository the pool was started in, on its own branch `claude-pool/<slot>`. Two
//! concurrent tasks therefore never see each other's files, and what a task commits lands on
//! its slot's branch, which outlives the worktree and the server: the pool never deletes a
//! branch. Worktrees live inside the repository's git directory, so they never show up in
//! the main checkout's `git status`.
//!
//! On start, the worktrees a previous server left behind are removed when they hold nothing
//! uncommitted (their branches stay), and kept — and reused by the slot of the same name —
//! when they do. A slot removed by a scale-down gets the same treatment.

use std::path::{Path, PathBuf};

use claude_pool_protocol::SlotId;
use tokio::process::Command;

/// The repository and where its slot worktrees live.
#[derive(Debug, Clone)]
pub struct Worktrees {
    /// The main checkout's top-level directory.
    repo: PathBuf,
    /// Where slot worktrees are created.
    dir: PathBuf,
}

/// One slot's worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    /// Its directory (the Claude processes' working directory).
    pub path: PathBuf,
    /// The branch checked out there.
    pub branch: String,
}

/// What the start-up sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Clean worktrees removed.
    pub removed: Vec<PathBuf>,
    /// Worktrees kept because they hold uncommitted changes.
    pub kept: Vec<PathBuf>,
}

/// Runs `git -C dir args…` without a terminal prompt or stdin; its stdout, trailing whitespace
/// trimmed, or an error naming the command, the directory and git's stderr.
pub(crate) async fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        // The repository's hooks run under it: they get none of the server's secrets.
        .env_remove(crate::credentials::SERVER_TOKEN_ENV)
        // The clients' variable (a user who exported the main token for `.mcp.json` and
        // started the server from that shell has it here too).
        .env_remove("CLAUDE_POOL_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    } else {
        Err(format!(
            "git {} in {} failed: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Worktrees {
    /// The repository containing `cwd`; an error that says so when there is none.
    pub async fn open(cwd: &Path) -> Result<Worktrees, String> {
        let top = git(cwd, &["rev-parse", "--show-toplevel"]).await.map_err(|_| {
            format!(
                "--worktree needs a git repository, and {} is not inside one (run `git init`, or start the server in a repository)",
                cwd.display()
            )
        })?;
        let repo = PathBuf::from(top);
        let common = git(
            &repo,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        )
        .await?;
        git(&repo, &["rev-parse", "--verify", "--quiet", "HEAD"])
            .await
            .map_err(|_| {
                format!(
                    "--worktree needs a repository with at least one commit; {} has none",
                    repo.display()
                )
            })?;
        let dir = PathBuf::from(common).join("claude-pool").join("worktrees");
        crate::private::private_dir(&dir)?;
        Ok(Worktrees { repo, dir })
    }

    /// The main checkout's top-level directory.
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// Where `slot`'s worktree is.
    pub fn path_of(&self, slot: &SlotId) -> PathBuf {
        self.dir.join(&slot.0)
    }

    /// The branch of `slot`'s worktree.
    pub fn branch_of(slot: &SlotId) -> String {
        format!("claude-pool/{}", slot.0)
    }

    /// Worktrees of this pool that git knows about.
    async fn listed(&self) -> Result<Vec<PathBuf>, String> {
        let out = git(&self.repo, &["worktree", "list", "--porcelain"]).await?;
        Ok(out
            .lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(&self.dir))
            .collect())
    }

    /// Whether the worktree at `path` holds changes that are not committed.
    async fn dirty(path: &Path) -> Result<bool, String> {
        let status = git(path, &["status", "--porcelain", "--untracked-files=all"]).await?;
        Ok(!status.is_empty())
    }

    /// Removes the worktrees a previous server left, when clean; keeps the others.
    pub async fn sweep_stale(&self) -> Result<Sweep, String> {
        let _ = git(&self.repo, &["worktree", "prune"]).await;
        let mut sweep = Sweep::default();
        for path in self.listed().await? {
            if Self::dirty(&path).await.unwrap_or(true) {
                tracing::warn!(path = %path.display(), "a worktree of an earlier server holds uncommitted changes; kept");
                sweep.kept.push(path);
            } else {
                git(&self.repo, &["worktree", "remove", &path.to_string_lossy()]).await?;
                sweep.removed.push(path);
            }
        }
        Ok(sweep)
    }

    /// `slot`'s worktree: reused when it exists, else created on the slot's branch (made
    /// from the current HEAD the first time).
    pub async fn ensure(&self, slot: &SlotId) -> Result<Worktree, String> {
        let path = self.path_of(slot);
        let branch = Self::branch_of(slot);
        if path.exists() {
            let inside = git(&path, &["rev-parse", "--is-inside-work-tree"]).await;
            if inside.as_deref() != Ok("true") {
                return Err(format!(
                    "{} exists but is not a git worktree; move it away to let {slot} use it",
                    path.display()
                ));
            }
            let current = git(&path, &["branch", "--show-current"]).await?;
            return Ok(Worktree {
                path,
                branch: if current.is_empty() { branch } else { current },
            });
        }
        let path_s = path.to_string_lossy().into_owned();
        let exists = git(
            &self.repo,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ],
        )
        .await
        .is_ok();
        if exists {
            git(&self.repo, &["worktree", "add", &path_s, &branch]).await?;
        } else {
            git(
                &self.repo,
                &["worktree", "add", "-b", &branch, &path_s, "HEAD"],
            )
            .await?;
        }
        Ok(Worktree { path, branch })
    }

    /// Removes `slot`'s worktree if it holds nothing uncommitted (its branch stays).
    /// Returns whether it was removed.
    pub async fn remove_if_clean(&self, slot: &SlotId) -> Result<bool, String> {
        let path = self.path_of(slot);
        if !path.exists() {
            return Ok(false);
        }
        if Self::dirty(&path).await? {
            tracing::warn!(%slot, path = %path.display(), "the removed slot's worktree holds uncommitted changes; kept");
            return Ok(false);
        }
        git(&self.repo, &["worktree", "remove", &path.to_string_lossy()]).await?;
        Ok(true)
    }
}

/// The commit checked out in the worktree at `path`, read from git's files (a few small
/// reads, no process): `None` when it cannot be read.
pub fn head_commit(path: &Path) -> Option<String> {
    let dot_git = path.join(".git");
    let gitdir = if dot_git.is_file() {
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let rel = text.strip_prefix("gitdir:")?.trim();
        path.join(rel)
    } else {
        dot_git
    };
    let head = std::fs::read_to_string(gitdir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return Some(head.to_owned());
    };
    let common = match std::fs::read_to_string(gitdir.join("commondir")) {
        Ok(rel) => gitdir.join(rel.trim()),
        Err(_) => gitdir.clone(),
    };
    for dir in [&gitdir, &common] {
        if let Ok(sha) = std::fs::read_to_string(dir.join(reference)) {
            return Some(sha.trim().to_owned());
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|l| {
        let (sha, name) = l.split_once(' ')?;
        (name == reference).then(|| sha.to_owned())
    })
}
