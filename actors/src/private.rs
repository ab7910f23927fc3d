//! Directories the server creates outside its store (build worktrees, slot worktrees), made
//! private to the server's user whatever the umask: what Claude writes there (the code of
//! private projects, secrets it read) is no other user's business.
//!
//! Directories are made `0700` (files the server writes itself, such as `--log-file`, are
//! opened `0600` where they are created). A directory the server names for itself and finds
//! already there must be a real directory owned by this user: it is then set to `0700` too
//! (an older server made it with the umask's mode). Parents that already exist are left as
//! they are: they belong to the operator.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// The mode of every directory the server creates outside the store.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file the server creates outside the store.
pub const FILE_MODE: u32 = 0o600;

/// The user this process runs as: the owner of `/proc/self` (no `unsafe` needed for
/// `geteuid`); `None` where there is no `/proc`.
pub fn own_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Creates `dir` and its missing parents with mode `0700`; an existing `dir` must be a
/// directory (not a symlink) owned by this user, and is set to `0700`.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| format!("cannot create {shown}: {e}"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("{shown} is not a directory"));
    }
    if let Some(uid) = own_uid()
        && meta.uid() != uid
    {
        return Err(format!(
            "{shown} belongs to another user (uid {}); the server keeps its files only in directories of its own",
            meta.uid()
        ));
    }
    if meta.mode() & 0o777 != DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| format!("cannot make {shown} private: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temp directory, removed at the end.
    fn scratch(label: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "claude-pool-private-{label}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir).expect("scratch");
        dir
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("exists").mode() & 0o777
    }

    #[test]
    fn created_directories_and_their_new_parents_are_private_and_old_parents_untouched() {
        let root = scratch("new");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let leaf = root.join("a/b");
        private_dir(&leaf).expect("created");
        assert_eq!(mode(&root.join("a")), DIR_MODE);
        assert_eq!(mode(&leaf), DIR_MODE);
        assert_eq!(
            mode(&root),
            0o755,
            "a parent that existed is the operator's"
        );
        // An existing directory of ours made with the umask is made private.
        std::fs::set_permissions(&leaf, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&leaf).expect("exists");
        assert_eq!(mode(&leaf), DIR_MODE);
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn a_symlink_or_a_file_in_its_place_is_refused() {
        let root = scratch("link");
        let target = root.join("elsewhere");
        std::fs::create_dir(&target).expect("target");
        let link = root.join("builds");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let e = private_dir(&link).expect_err("a symlink is not our directory");
        assert!(e.contains("is not a directory"), "{e}");
        let file = root.join("file");
        std::fs::write(&file, "x").expect("file");
        assert!(private_dir(&file).is_err());
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}
