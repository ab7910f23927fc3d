//! Files and directories private to the server's user, whatever the umask: the store (its
//! database, WAL and shared memory, lock and lease files, transcripts) and what the server
//! creates outside it (build worktrees, slot worktrees, `--log-file`). What Claude writes
//! there (the code of private projects, secrets it read) is no other user's business.
//!
//! Directories are made `0700` and files `0600` when created. A store file of ours that
//! already exists is brought to `0600`; a directory the server names for itself and finds
//! already there must be a real directory owned by this user, and is set to `0700` too (an
//! older server made it with the umask's mode). Parents that already exist are left as they
//! are: they belong to the operator.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory the server creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the server creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents, each new one 0700 (existing ones are left as
/// they are: they may be the user's own, like `~/.local`).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    // `mode` is filtered by the umask; set it outright on the directory we asked for.
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Opens `path` for reading and writing, creating it 0600 when missing.
pub fn open_rw(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    tighten(&file)?;
    Ok(file)
}

/// Creates `path` empty and 0600 if it does not exist; an existing file of ours is brought
/// to 0600.
pub fn create_file(path: &Path) -> io::Result<()> {
    open_rw(path).map(drop)
}

/// Brings an existing file of ours to 0600 (a store's WAL or shared memory left by an older
/// server); a missing one is fine.
pub fn tighten_existing(path: &Path) -> io::Result<()> {
    match File::open(path) {
        Ok(file) => tighten(&file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` for appending, creating it 0600 when missing.
pub fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)?;
    tighten(&file)?;
    Ok(file)
}

/// Takes group and other bits off a file we own (the umask filtered what `mode` asked for,
/// and a file made by an older server may be 0644). Another user's file is left alone.
fn tighten(file: &File) -> io::Result<()> {
    let meta = file.metadata()?;
    if own_uid() == Some(meta.uid()) && meta.mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(meta.mode() & 0o700))?;
    }
    Ok(())
}

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
