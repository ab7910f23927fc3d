//! Files and directories private to the server's user, whatever the umask: the store, its
//! WAL and shared memory, its lock and lease files, transcripts. Directories are made 0700
//! and files 0600 when this module creates them; a store file that already exists is
//! brought to 0600 when it is ours (an older server may have created it 0644).

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
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
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
    if meta.uid() == current_uid() && meta.mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(meta.mode() & 0o700))?;
    }
    Ok(())
}

/// The effective user id of this process.
pub fn current_uid() -> u32 {
    // /proc/self is owned by the process's effective user; reading it needs no unsafe call.
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}
