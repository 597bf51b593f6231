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
        self.remove_tree(path.as_ref(), false)
    }

    /// [`Root::remove_dir_all`], staying on the file system of `path`'s parent: a directory
    /// below that is on another one (a file system still mounted there) is an error
    /// (`EXDEV`), and nothing beneath it is touched. Entries removed before it was met stay
    /// removed.
    pub fn remove_dir_all_one_fs(&self, path: impl AsRef<Path>) -> Result<()> {
        self.remove_tree(path.as_ref(), true)
    }

    /// Both: with `one_fs`, on the device of `path`'s parent only.
    fn remove_tree(&self, path: &Path, one_fs: bool) -> Result<()> {
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
        let dev = if one_fs {
            let st = rustix::fs::fstat(&dir).map_err(|e| self.err(op, path, io::Error::from(e)))?;
            Some(st.st_dev)
        } else {
            None
        };
        remove_entry(&dir, &name, dev).map_err(|e| self.err(op, path, e))
    }
}

/// Removes `name` in `parent`; with `dev`, refuses to enter a directory on another device.
fn remove_entry(parent: &OwnedFd, name: &OsString, dev: Option<rustix::fs::Dev>) -> io::Result<()> {
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
    if let Some(dev) = dev {
        if rustix::fs::fstat(&dir)?.st_dev != dev {
            return Err(io::Error::new(
                io::ErrorKind::CrossesDevices,
                format!(
                    "{} is on another file system (mounted there); not removed",
                    name.to_string_lossy()
                ),
            ));
        }
    }
    empty_dir(&dir, dev)?;
    rustix::fs::unlinkat(parent, name.as_os_str(), AtFlags::REMOVEDIR)?;
    Ok(())
}

fn empty_dir(dir: &OwnedFd, dev: Option<rustix::fs::Dev>) -> io::Result<()> {
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
        remove_entry(dir, &name, dev)?;
    }
    Ok(())
}
