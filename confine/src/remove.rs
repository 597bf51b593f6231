//! Removing a directory tree without ever following a symlink out of it.

use std::ffi::{CStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::{Result, Root};

impl Root {
    /// Removes `path` and everything below it. Symlinks are removed, never followed, and
    /// each subdirectory is entered through a descriptor opened with `O_NOFOLLOW`, so a
    /// symlink swapped in mid-walk cannot lead the removal elsewhere. A non-directory at
    /// `path` is removed like [`Root::remove_file`].
    pub fn remove_dir_all(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let op = "remove tree";
        let (dir, name) = match self.parent(path).map_err(|e| self.err(op, path, e))? {
            (dir, Some(name)) => (dir, name),
            (_, None) => {
                return Err(self.invalid(
                    op,
                    path,
                    "refusing to remove the image root or a `..` path",
                ))
            }
        };
        remove_entry(&dir, &name).map_err(|e| self.err(op, path, e))
    }
}

fn remove_entry(parent: &OwnedFd, name: &OsString) -> io::Result<()> {
    match rustix::fs::unlinkat(parent, name.as_os_str(), AtFlags::empty()) {
        Ok(()) => return Ok(()),
        // Linux says EISDIR, POSIX allows EPERM for unlinking a directory.
        Err(rustix::io::Errno::ISDIR) | Err(rustix::io::Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let dir = rustix::fs::openat(
        parent,
        name.as_os_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    empty_dir(&dir)?;
    rustix::fs::unlinkat(parent, name.as_os_str(), AtFlags::REMOVEDIR)?;
    Ok(())
}

fn empty_dir(dir: &OwnedFd) -> io::Result<()> {
    let mut names: Vec<OsString> = Vec::new();
    for ent in rustix::fs::Dir::read_from(dir)? {
        let ent = ent?;
        let raw: &CStr = ent.file_name();
        if raw.to_bytes() == b"." || raw.to_bytes() == b".." {
            continue;
        }
        use std::os::unix::ffi::OsStringExt;
        names.push(OsString::from_vec(raw.to_bytes().to_vec()));
    }
    for name in names {
        remove_entry(dir, &name)?;
    }
    Ok(())
}
