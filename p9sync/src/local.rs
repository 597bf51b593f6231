//! Local file-system steps of a mirror, all relative to an open directory fd.
//!
//! Every call names one validated component inside a directory we opened ourselves
//! with `O_NOFOLLOW`, so neither a hostile server nor a symlink already sitting in
//! the destination can make a write land outside it.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use crate::names::{self, Name};

pub type Io<T> = Result<T, std::io::Error>;

/// Permission bits carried over from the server. setuid/setgid are dropped: a
/// mirror run as root must not turn a file from the share into a privileged one.
pub const MODE_MASK: u32 = 0o1777;

pub fn lstat(dir: &OwnedFd, name: Name) -> Io<Option<Stat>> {
    match rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

pub fn open_dir(dir: &OwnedFd, name: Name) -> Io<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(
        dir,
        name.as_os_str(),
        flags,
        Mode::empty(),
    )?)
}

/// Opens `name` as a directory, replacing whatever non-directory is there.
/// Returns the fd and whether the directory had to be created.
pub fn ensure_dir(dir: &OwnedFd, name: Name) -> Io<(OwnedFd, bool)> {
    let created = match lstat(dir, name)? {
        Some(st) if kind(&st) == FileType::Directory => false,
        other => {
            if other.is_some() {
                remove(dir, name)?;
            }
            rustix::fs::mkdirat(dir, name.as_os_str(), Mode::from_raw_mode(0o700))?;
            true
        }
    };
    Ok((open_dir(dir, name)?, created))
}

pub fn chmod(fd: impl AsFd, mode: u32) -> Io<()> {
    Ok(rustix::fs::fchmod(
        fd,
        Mode::from_raw_mode((mode & MODE_MASK) as _),
    )?)
}

/// Removes `name` and, for a directory, everything below it, never following links.
pub fn remove(dir: &OwnedFd, name: Name) -> Io<()> {
    let Some(st) = lstat(dir, name)? else {
        return Ok(());
    };
    if kind(&st) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(
            dir,
            name.as_os_str(),
            AtFlags::empty(),
        )?);
    }
    let sub = open_dir(dir, name)?;
    for child in names(&sub)? {
        if let Ok(child) = names::check(child.as_bytes()) {
            remove(&sub, child)?;
        }
    }
    Ok(rustix::fs::unlinkat(
        dir,
        name.as_os_str(),
        AtFlags::REMOVEDIR,
    )?)
}

/// The entries of an open directory, without `.` and `..`.
pub fn names(dir: &OwnedFd) -> Io<Vec<std::ffi::OsString>> {
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_owned());
        }
    }
    Ok(out)
}

/// A fresh name for a temporary file next to its target; short so it always fits
/// NAME_MAX whatever the target is called.
fn temp_name() -> std::ffi::OsString {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(".p9sync.{}.{n}.tmp", std::process::id()).into()
}

fn as_name(n: &OsStr) -> Io<Name<'_>> {
    names::check(n.as_bytes())
        .map_err(|why| std::io::Error::other(format!("bad name {n:?}: {why:?}")))
}

fn timespec((sec, nsec): (u64, u64)) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(sec).unwrap_or(i64::MAX),
        tv_nsec: nsec.min(999_999_999) as _,
    }
}

/// What a regular file should end up as.
pub struct FileMeta {
    pub mode: u32,
    pub atime: (u64, u64),
    pub mtime: (u64, u64),
}

/// Writes a new file through `fill`, then renames it over `name`.
///
/// The rename is what keeps a running plugin safe: its process keeps the old inode,
/// new starts see the complete new file, and nobody ever sees a half-written one
/// (writing in place would also fail with ETXTBSY on a running executable).
pub fn replace_file(
    dir: &OwnedFd,
    name: Name,
    meta: &FileMeta,
    fill: impl FnOnce(&mut File) -> Result<(), crate::error::SyncError>,
) -> Result<(), crate::error::SyncError> {
    let tmp_buf = temp_name();
    let local = |e: std::io::Error| crate::error::SyncError::Local {
        path: name.as_os_str().into(),
        source: e,
    };
    let tmp = as_name(&tmp_buf).map_err(local)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, tmp.as_os_str(), flags, Mode::from_raw_mode(0o600))
        .map_err(|e| local(e.into()))?;
    let mut f = File::from(fd);
    let result = fill(&mut f).and_then(|_| {
        (|| -> Io<()> {
            f.flush()?;
            chmod(&f, meta.mode)?;
            let ts = Timestamps {
                last_access: timespec(meta.atime),
                last_modification: timespec(meta.mtime),
            };
            rustix::fs::futimens(&f, &ts)?;
            if let Some(st) = lstat(dir, name)? {
                if kind(&st) == FileType::Directory {
                    remove(dir, name)?;
                }
            }
            Ok(rustix::fs::renameat(
                dir,
                tmp.as_os_str(),
                dir,
                name.as_os_str(),
            )?)
        })()
        .map_err(local)
    });
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_os_str(), AtFlags::empty());
    }
    result
}

/// Points `name` at `target`, replacing what is there atomically.
pub fn replace_symlink(dir: &OwnedFd, name: Name, target: &OsStr) -> Io<()> {
    let tmp_buf = temp_name();
    let tmp = as_name(&tmp_buf)?;
    rustix::fs::symlinkat(target, dir, tmp.as_os_str())?;
    let r = (|| -> Io<()> {
        if let Some(st) = lstat(dir, name)? {
            if kind(&st) == FileType::Directory {
                remove(dir, name)?;
            }
        }
        Ok(rustix::fs::renameat(
            dir,
            tmp.as_os_str(),
            dir,
            name.as_os_str(),
        )?)
    })();
    if r.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_os_str(), AtFlags::empty());
    }
    r
}

pub fn readlink(dir: &OwnedFd, name: Name) -> Io<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, name.as_os_str(), Vec::new())?.into_bytes())
}

/// True when the local file already matches the remote size, mtime and mode.
// The casts are no-ops on Linux but not on illumos, where `stat` fields are C longs.
#[allow(clippy::unnecessary_cast)]
pub fn same_file(st: &Stat, size: u64, mtime: (u64, u64), mode: u32) -> bool {
    let want = timespec(mtime);
    kind(st) == FileType::RegularFile
        && st.st_size as u64 == size
        && st.st_mtime as i64 == want.tv_sec
        && st.st_mtime_nsec as i64 == want.tv_nsec as i64
        && (st.st_mode as u32 & 0o7777) == (mode & MODE_MASK)
}
