//! The HTTP front-end's main token: given (`--http-token-file`, `CLAUDE_POOL_HTTP_TOKEN`,
//! `--http-token`), or the one in the default token file, which is made when absent.
//!
//! The default file is `$XDG_RUNTIME_DIR/claude-pool/http-token`, else
//! `$XDG_STATE_HOME/claude-pool/http-token`, else `~/.local/state/claude-pool/http-token`. An
//! existing one is reused when it is ours and no one else may read it, so a client's
//! `export CLAUDE_POOL_TOKEN=$(cat …)` stays valid across restarts; a fresh one holds 32
//! random bytes (hex), mode 0600 in a 0700 directory whatever the umask. A token file that
//! others may read is refused, never used: the token would already be out.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The default token file's name, in the runtime (or state) directory's `claude-pool/`.
pub const FILE_NAME: &str = "http-token";

/// Where the main token came from (for the log, which never holds the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--http-token` or `CLAUDE_POOL_HTTP_TOKEN`.
    Given,
    /// `--http-token-file`.
    File(PathBuf),
    /// The default file, found and reused.
    Reused(PathBuf),
    /// The default file, written now.
    Created(PathBuf),
}

/// The default token file: see the module's documentation. `None` with neither a runtime
/// directory, a state directory nor a home.
pub fn default_file() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    // A runtime directory is the session manager's to make; one that is not there is none.
    let dir = var("XDG_RUNTIME_DIR")
        .filter(|d| d.is_dir())
        .or_else(|| var("XDG_STATE_HOME"))
        .or_else(|| var("HOME").map(|h| h.join(".local/state")))?;
    Some(dir.join("claude-pool").join(FILE_NAME))
}

/// The main token and where it came from.
pub fn resolve(given: Option<&str>, file: Option<&Path>) -> anyhow::Result<(String, Source)> {
    if let Some(f) = file {
        return Ok((read(f, "--http-token-file")?, Source::File(f.to_path_buf())));
    }
    if let Some(t) = given {
        let t = t.trim();
        if t.is_empty() {
            bail!("the HTTP token is empty");
        }
        return Ok((t.to_owned(), Source::Given));
    }
    let Some(path) = default_file() else {
        bail!(
            "no place for the HTTP token file (set XDG_RUNTIME_DIR or HOME), and no --http-token-file given"
        );
    };
    if fs::symlink_metadata(&path).is_ok() {
        return Ok((read(&path, "the HTTP token file")?, Source::Reused(path)));
    }
    let token = claude_pool::credentials::random_hex(32)
        .context("cannot read random bytes for the HTTP token")?;
    if write(&path, &token)? {
        Ok((token, Source::Created(path)))
    } else {
        // Another server made it first: its token is the one.
        Ok((read(&path, "the HTTP token file")?, Source::Reused(path)))
    }
}

/// Our user id: the owner of `/proc/self`, without unsafe code.
fn our_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The first line of the token file `path`, after checking that only we can read it.
fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    let meta =
        fs::metadata(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    if !meta.is_file() {
        bail!("{what} {} is not a file", path.display());
    }
    if let Some(uid) = our_uid()
        && meta.uid() != uid
    {
        bail!(
            "{what} {} belongs to another user (uid {}); remove it, or give a token file of your own",
            path.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{what} {} may be read by others (mode {mode:o}), so its token is no secret: run `chmod 600 {}`, and consider the token exposed (delete the file to get a new one)",
            path.display(),
            path.display()
        );
    }
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    if token.is_empty() {
        bail!("{what} {} is empty", path.display());
    }
    Ok(token)
}

/// Writes `token` to `path` (mode 0600, its directory 0700), atomically and only if `path`
/// does not exist yet; `false` when another process made it first.
fn write(path: &Path, token: &str) -> anyhow::Result<bool> {
    let dir = path
        .parent()
        .context("the token file's path has no directory")?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // An existing directory keeps its mode through create(); ours must be private.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (chmod 700)", dir.display()))?;
    let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    // The umask may have taken bits from 0600 (never added any); set it whole.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod 600 {}", tmp.display()))?;
    f.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    // A link, unlike a rename, fails when the name exists: two servers starting at once
    // end up with one token.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("claude-pool-token-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_first_writer_wins_and_its_file_is_private() {
        let dir = scratch("write");
        let path = dir.join("claude-pool").join(FILE_NAME);
        assert!(
            write(&path, "first").expect("write"),
            "the first write made no file"
        );
        assert!(
            !write(&path, "second").expect("write"),
            "the second write replaced the first"
        );
        assert_eq!(read(&path, "t").expect("read"), "first");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("a directory")), 0o700);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_others_may_read_or_an_empty_one_is_refused() {
        let dir = scratch("read");
        fs::create_dir_all(&dir).expect("mkdir");
        let loose = dir.join("loose");
        fs::write(&loose, "zq9-secret-value\n").expect("write");
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o604)).expect("chmod");
        let err = read(&loose, "t")
            .expect_err("a world-readable file was used")
            .to_string();
        assert!(
            err.contains(&format!("chmod 600 {}", loose.display())),
            "{err}"
        );
        assert!(
            !err.contains("zq9-secret-value"),
            "the token was in the message: {err}"
        );
        let empty = dir.join("empty");
        fs::write(&empty, "\n").expect("write");
        fs::set_permissions(&empty, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(read(&empty, "t").is_err(), "an empty token was used");
        let _ = fs::remove_dir_all(&dir);
    }
}
