//! The operations of a [`Root`], each resolving its path inside the root first.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use crate::resolve::{self, Step};
use crate::{DirEntry, Error, FileTime, Metadata, NodeKind, Result, Root};

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY);

fn mode_of(bits: u32) -> Mode {
    Mode::from_bits_truncate((bits & 0o7777) as rustix::fs::RawMode)
}

impl Root {
    pub(crate) fn err(&self, op: &'static str, path: &Path, e: impl Into<io::Error>) -> Error {
        Error::Io {
            op,
            path: path.to_path_buf(),
            root: self.host.clone(),
            source: e.into(),
        }
    }

    pub(crate) fn invalid(&self, op: &'static str, path: &Path, reason: &'static str) -> Error {
        Error::Invalid {
            op,
            path: path.to_path_buf(),
            root: self.host.clone(),
            reason,
        }
    }

    fn open_steps(&self, steps: &[Step], flags: OFlags) -> io::Result<OwnedFd> {
        resolve::open(self.root_fd(), self.resolver, steps, flags, Mode::empty())
    }

    /// The directory holding the last component (resolved inside the root, symlinks
    /// followed) and that component's name; no name when the path is the root itself or
    /// ends in `..`, in which case the directory is the path's own target.
    pub(crate) fn parent(&self, path: &Path) -> io::Result<(OwnedFd, Option<OsString>)> {
        let mut steps = resolve::steps(path);
        match steps.pop() {
            Some(Step::Name(n)) => Ok((self.open_steps(&steps, DIR_FLAGS)?, Some(n))),
            Some(Step::Up) => {
                steps.push(Step::Up);
                Ok((self.open_steps(&steps, DIR_FLAGS)?, None))
            }
            None => Ok((self.open_steps(&[], DIR_FLAGS)?, None)),
        }
    }

    fn parent_named(&self, op: &'static str, path: &Path) -> Result<(OwnedFd, OsString)> {
        match self.parent(path).map_err(|e| self.err(op, path, e))? {
            (dir, Some(name)) => Ok((dir, name)),
            (_, None) => {
                Err(self.invalid(op, path, "the path names the image root or ends in `..`"))
            }
        }
    }

    /// Opens a file for reading, following symlinks inside the root.
    pub fn open_read(&self, path: impl AsRef<Path>) -> Result<File> {
        let path = path.as_ref();
        let fd = self
            .open_steps(&resolve::steps(path), OFlags::RDONLY)
            .map_err(|e| self.err("open", path, e))?;
        Ok(File::from(fd))
    }

    /// Reads a whole file, following symlinks inside the root.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Vec<u8>> {
        let path = path.as_ref();
        let mut buf = Vec::new();
        self.open_read(path)?
            .read_to_end(&mut buf)
            .map_err(|e| self.err("read", path, e))?;
        Ok(buf)
    }

    /// Replaces `path` with `bytes` atomically: a temporary file in the same directory is
    /// written, given `mode`, synced and renamed over the target (a symlink at the target
    /// is replaced, never followed).
    pub fn write_atomic(&self, path: impl AsRef<Path>, bytes: &[u8], mode: u32) -> Result<()> {
        self.write_atomic_with(path, mode, |f| f.write_all(bytes))
    }

    /// Like [`Root::write_atomic`], with the content produced by `fill`.
    pub fn write_atomic_with(
        &self,
        path: impl AsRef<Path>,
        mode: u32,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = path.as_ref();
        let (dir, name) = self.parent_named("write", path)?;
        let (tmp, fd) = loop {
            let mut tmp = OsString::from(".");
            tmp.push(&name);
            tmp.push(format!(
                ".{}.{}.tmp",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(
                &dir,
                tmp.as_os_str(),
                flags,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => break (tmp, fd),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(self.err("write", path, e)),
            }
        };
        let mut file = File::from(fd);
        let written = fill(&mut file)
            .and_then(|_| Ok(rustix::fs::fchmod(&file, mode_of(mode))?))
            .and_then(|_| file.sync_all())
            .and_then(|_| {
                Ok(rustix::fs::renameat(
                    &dir,
                    tmp.as_os_str(),
                    &dir,
                    name.as_os_str(),
                )?)
            });
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_os_str(), AtFlags::empty());
            return Err(self.err("write", path, e));
        }
        // The rename is durable only once the directory itself is synced.
        rustix::fs::fsync(&dir).map_err(|e| self.err("sync directory of", path, e))?;
        Ok(())
    }

    /// Creates a new regular file with exactly `mode` (no umask) and returns it for writing.
    /// Fails with `AlreadyExists` when anything is at `path`; the last component is never
    /// followed. Not synced: for bulk writes such as unpacking an archive.
    pub fn create_file(&self, path: impl AsRef<Path>, mode: u32) -> Result<File> {
        let path = path.as_ref();
        let (dir, name) = self.parent_named("create", path)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(
            &dir,
            name.as_os_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| self.err("create", path, e))?;
        rustix::fs::fchmod(&fd, mode_of(mode)).map_err(|e| self.err("set mode of", path, e))?;
        Ok(File::from(fd))
    }

    /// Creates one directory with exactly `mode`; its parent must exist.
    pub fn create_dir(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.parent_named("create directory", path)?;
        self.mkdir_in(&dir, &name, mode)
            .map_err(|e| self.err("create directory", path, e))
    }

    fn mkdir_in(&self, dir: &OwnedFd, name: &OsString, mode: u32) -> io::Result<()> {
        rustix::fs::mkdirat(dir, name.as_os_str(), Mode::from_bits_truncate(0o700))?;
        let made = rustix::fs::openat(
            dir,
            name.as_os_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::fs::fchmod(&made, mode_of(mode))?;
        Ok(())
    }

    /// Creates `path` and any missing parents; new directories get exactly `mode`,
    /// existing ones (and directories symlinks lead to, inside the root) are left alone.
    pub fn create_dir_all(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let path = path.as_ref();
        let steps = resolve::steps(path);
        if self.open_steps(&steps, DIR_FLAGS).is_ok() {
            return Ok(());
        }
        let mut dir = self
            .open_steps(&[], DIR_FLAGS)
            .map_err(|e| self.err("create directory", path, e))?;
        for i in 0..steps.len() {
            let prefix = &steps[..=i];
            match self.open_steps(prefix, DIR_FLAGS) {
                Ok(fd) => dir = fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let Step::Name(name) = &steps[i] else {
                        return Err(self.err("create directory", path, e));
                    };
                    match self.mkdir_in(&dir, name, mode) {
                        Ok(()) => {}
                        // Lost a race with another creator: fine, it is a directory now or
                        // the next open says what it is instead.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(self.err("create directory", path, e)),
                    }
                    dir = self
                        .open_steps(prefix, DIR_FLAGS)
                        .map_err(|e| self.err("create directory", path, e))?;
                }
                Err(e) => return Err(self.err("create directory", path, e)),
            }
        }
        Ok(())
    }

    /// Creates a symlink at `link` whose content is `target`, stored as given: the target
    /// is only ever resolved inside the root.
    pub fn symlink(&self, target: impl AsRef<Path>, link: impl AsRef<Path>) -> Result<()> {
        let link = link.as_ref();
        let (dir, name) = self.parent_named("create symlink", link)?;
        rustix::fs::symlinkat(target.as_ref(), &dir, name.as_os_str())
            .map_err(|e| self.err("create symlink", link, e))
    }

    /// Makes `new` another name of `existing` (a symlink at `existing` is linked itself).
    pub fn hard_link(&self, existing: impl AsRef<Path>, new: impl AsRef<Path>) -> Result<()> {
        let (existing, new) = (existing.as_ref(), new.as_ref());
        let (from_dir, from_name) = self.parent_named("hard link to", existing)?;
        let (to_dir, to_name) = self.parent_named("create hard link", new)?;
        rustix::fs::linkat(
            &from_dir,
            from_name.as_os_str(),
            &to_dir,
            to_name.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(|e| self.err("create hard link", new, e))
    }

    /// Creates a device node or FIFO with exactly `mode`.
    pub fn mknod(
        &self,
        path: impl AsRef<Path>,
        kind: NodeKind,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.parent_named("create node", path)?;
        let (ft, dev) = match kind {
            NodeKind::CharDevice => (FileType::CharacterDevice, rustix::fs::makedev(major, minor)),
            NodeKind::BlockDevice => (FileType::BlockDevice, rustix::fs::makedev(major, minor)),
            NodeKind::Fifo => (FileType::Fifo, 0),
        };
        rustix::fs::mknodat(
            &dir,
            name.as_os_str(),
            ft,
            Mode::from_bits_truncate(0o600),
            dev,
        )
        .map_err(|e| self.err("create node", path, e))?;
        // Fresh node, not a symlink: chmodat cannot be redirected here short of a
        // concurrent writer inside the image swapping it.
        rustix::fs::chmodat(&dir, name.as_os_str(), mode_of(mode), AtFlags::empty())
            .map_err(|e| self.err("set mode of", path, e))
    }

    pub fn mkfifo(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        self.mknod(path, NodeKind::Fifo, mode, 0, 0)
    }

    /// Sets permission bits (setuid, setgid and sticky included). A symlink's own mode
    /// cannot be set on Linux or illumos and is left alone; the symlink is not followed.
    pub fn set_mode(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let path = path.as_ref();
        let op = "set mode of";
        let (dir, name) = self.parent(path).map_err(|e| self.err(op, path, e))?;
        let Some(name) = name else {
            return rustix::fs::fchmod(&dir, mode_of(mode)).map_err(|e| self.err(op, path, e));
        };
        let st = rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err(op, path, e))?;
        match Metadata::from_stat(&st).kind {
            crate::FileKind::Symlink => Ok(()),
            crate::FileKind::File | crate::FileKind::Dir => {
                // Through a descriptor opened with O_NOFOLLOW, so a swap for a symlink
                // fails instead of changing the symlink's target.
                match rustix::fs::openat(
                    &dir,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => rustix::fs::fchmod(&fd, mode_of(mode)),
                    // An unreadable file of ours (not root) cannot be opened, but its
                    // owner may still change its mode by name; lstat said it is no symlink.
                    Err(rustix::io::Errno::ACCESS) => {
                        rustix::fs::chmodat(&dir, name.as_os_str(), mode_of(mode), AtFlags::empty())
                    }
                    Err(e) => Err(e),
                }
                .map_err(|e| self.err(op, path, e))
            }
            // Opening a device may have side effects, so these go by name.
            _ => rustix::fs::chmodat(&dir, name.as_os_str(), mode_of(mode), AtFlags::empty())
                .map_err(|e| self.err(op, path, e)),
        }
    }

    /// Sets owner and/or group with `lchown` semantics (a symlink itself is changed).
    pub fn set_owner(
        &self,
        path: impl AsRef<Path>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<()> {
        let path = path.as_ref();
        let op = "set owner of";
        let uid = uid.map(rustix::fs::Uid::from_raw);
        let gid = gid.map(rustix::fs::Gid::from_raw);
        let (dir, name) = self.parent(path).map_err(|e| self.err(op, path, e))?;
        match name {
            Some(name) => {
                rustix::fs::chownat(&dir, name.as_os_str(), uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            }
            None => rustix::fs::fchown(&dir, uid, gid),
        }
        .map_err(|e| self.err(op, path, e))
    }

    /// Sets access and/or modification time without following a final symlink.
    pub fn set_times(
        &self,
        path: impl AsRef<Path>,
        atime: Option<FileTime>,
        mtime: Option<FileTime>,
    ) -> Result<()> {
        let path = path.as_ref();
        let op = "set times of";
        let spec = |t: Option<FileTime>| match t {
            Some(t) => Timespec {
                tv_sec: t.secs as _,
                tv_nsec: t.nanos as _,
            },
            None => Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
        };
        let times = Timestamps {
            last_access: spec(atime),
            last_modification: spec(mtime),
        };
        let (dir, name) = self.parent(path).map_err(|e| self.err(op, path, e))?;
        match name {
            Some(name) => {
                rustix::fs::utimensat(&dir, name.as_os_str(), &times, AtFlags::SYMLINK_NOFOLLOW)
            }
            None => rustix::fs::futimens(&dir, &times),
        }
        .map_err(|e| self.err(op, path, e))
    }

    /// Removes a non-directory (a symlink itself, never its target).
    pub fn remove_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.parent_named("remove", path)?;
        rustix::fs::unlinkat(&dir, name.as_os_str(), AtFlags::empty())
            .map_err(|e| self.err("remove", path, e))
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.parent_named("remove directory", path)?;
        rustix::fs::unlinkat(&dir, name.as_os_str(), AtFlags::REMOVEDIR)
            .map_err(|e| self.err("remove directory", path, e))
    }

    /// `lstat`: metadata of the path itself, a final symlink not followed.
    pub fn metadata(&self, path: impl AsRef<Path>) -> Result<Metadata> {
        let path = path.as_ref();
        let (dir, name) = self.parent(path).map_err(|e| self.err("stat", path, e))?;
        let st = match name {
            Some(name) => rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW),
            None => rustix::fs::fstat(&dir),
        }
        .map_err(|e| self.err("stat", path, e))?;
        Ok(Metadata::from_stat(&st))
    }

    /// Like [`Root::metadata`], with `None` when nothing is at `path`.
    pub fn try_metadata(&self, path: impl AsRef<Path>) -> Result<Option<Metadata>> {
        match self.metadata(path) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The content of a symlink, as stored.
    pub fn read_link(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let path = path.as_ref();
        let (dir, name) = self.parent_named("read link", path)?;
        let target = rustix::fs::readlinkat(&dir, name.as_os_str(), Vec::new())
            .map_err(|e| self.err("read link", path, e))?;
        Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
    }

    /// The entries of a directory (following symlinks to it inside the root), sorted by
    /// name, each with its `lstat` metadata.
    pub fn read_dir(&self, path: impl AsRef<Path>) -> Result<Vec<DirEntry>> {
        let path = path.as_ref();
        let op = "read directory";
        let fd = self
            .open_steps(&resolve::steps(path), DIR_FLAGS)
            .map_err(|e| self.err(op, path, e))?;
        let mut out = Vec::new();
        for ent in rustix::fs::Dir::read_from(&fd).map_err(|e| self.err(op, path, e))? {
            let ent = ent.map_err(|e| self.err(op, path, e))?;
            let raw = ent.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let st = rustix::fs::statat(fd.as_fd(), ent.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.err(op, path, e))?;
            out.push(DirEntry {
                name: OsString::from_vec(raw.to_vec()),
                metadata: Metadata::from_stat(&st),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
