//! Unpacking an archive into an image root.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use confine::{FileTime, NodeKind, Root};
use tar::EntryType;

use super::format::{decompressor, Compression};
use super::paths::{entry_path, symlink_stays_inside};
use super::readahead::ReadAhead;
use super::{ArchiveError, Progress};

#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Restore owners and groups (numerically). Only root may give files away, so this
    /// defaults to whether we run as root, like tar's `--same-owner`.
    pub same_owner: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            same_owner: rustix::process::geteuid().is_root(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackSummary {
    pub entries: u64,
    pub file_bytes: u64,
    /// Entry types with no meaning here (e.g. GNU volume labels), passed over.
    pub skipped: u64,
}

/// Attributes applied after the whole archive is in, deepest first, so a read-only
/// directory can still be filled and writing into a directory does not undo its mtime.
struct DirAttrs {
    path: PathBuf,
    entry: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

struct Ctx<'a> {
    root: &'a Root,
    archive: &'a Path,
    opts: &'a UnpackOptions,
    known_dirs: HashSet<PathBuf>,
    dirs: Vec<DirAttrs>,
    buf: Vec<u8>,
}

/// Unpacks `archive` (compression chosen by its name) into `root`. Entries are refused,
/// naming them, when their path is absolute or contains `..`, when a hard link names such
/// a path, or when a relative symlink climbs above the image root. Existing files are
/// replaced, so unpacking the same archive twice leaves the same tree.
pub fn unpack(
    archive: &Path,
    root: &Root,
    opts: &UnpackOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<UnpackSummary, ArchiveError> {
    let compression = Compression::from_name(archive)?;
    let read_err = |source: io::Error| ArchiveError::Read {
        archive: archive.to_path_buf(),
        source,
    };
    let file = File::open(archive).map_err(read_err)?;
    let total = file.metadata().map_err(read_err)?.len();
    let read = Arc::new(AtomicU64::new(0));
    let counted = Counting {
        inner: file,
        read: Arc::clone(&read),
    };
    let stream = decompressor(compression, counted).map_err(read_err)?;
    let stream: Box<dyn Read> = match compression {
        Compression::None => stream,
        _ => Box::new(ReadAhead::spawn(stream).map_err(read_err)?),
    };
    let mut tar = tar::Archive::new(stream);
    let mut ctx = Ctx {
        root,
        archive,
        opts,
        known_dirs: HashSet::new(),
        dirs: Vec::new(),
        buf: vec![0u8; 1 << 20],
    };
    let mut summary = UnpackSummary::default();
    let mut reported = 0u64;
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        ctx.entry(&mut entry, &mut summary)?;
        let now = read.load(Ordering::Relaxed);
        if now - reported >= 1 << 22 {
            reported = now;
            progress(Progress { done: now, total });
        }
    }
    ctx.finish_dirs()?;
    progress(Progress { done: total, total });
    Ok(summary)
}

impl Ctx<'_> {
    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Refused {
            archive: self.archive.to_path_buf(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn fail(&self, entry: &str) -> impl Fn(confine::Error) -> ArchiveError + '_ {
        let entry = entry.to_string();
        move |source| ArchiveError::Entry {
            archive: self.archive.to_path_buf(),
            entry: entry.clone(),
            source: Box::new(source),
        }
    }

    fn read_err(&self) -> impl Fn(io::Error) -> ArchiveError + '_ {
        move |source| ArchiveError::Read {
            archive: self.archive.to_path_buf(),
            source,
        }
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        summary: &mut UnpackSummary,
    ) -> Result<(), ArchiveError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let path = entry_path(&raw).map_err(|r| self.refuse(&name, r))?;
        let ids = ids(entry).map_err(self.read_err())?;
        let h = entry.header();
        let kind = h.entry_type();
        let mode = h.mode().map_err(self.read_err())? & 0o7777;
        let mtime = h.mtime().map_err(self.read_err())? as i64;
        let (uid, gid) = ids;
        if path.as_os_str().is_empty() && kind != EntryType::Directory {
            return Err(self.refuse(&name, "only a directory may name the image root"));
        }
        match kind {
            EntryType::Directory => {
                self.make_dir(&path, &name)?;
                self.dirs.push(DirAttrs {
                    path,
                    entry: name,
                    mode,
                    uid,
                    gid,
                    mtime,
                });
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.parent(&path, &name)?;
                let mut file = self.replace(&path, &name, |r| r.create_file(&path, 0o600))?;
                summary.file_bytes += self.copy(entry, &mut file, &name)?;
                self.file_attrs(&file, &name, uid, gid, mode, mtime)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&name, "symlink without a target"))?
                    .into_owned();
                if !symlink_stays_inside(&path, &target) {
                    let shown = String::from_utf8_lossy(&target);
                    return Err(self.refuse(
                        &name,
                        format!("symlink target `{shown}` leads outside the image"),
                    ));
                }
                self.parent(&path, &name)?;
                let target = PathBuf::from(std::ffi::OsString::from(
                    std::os::unix::ffi::OsStrExt::from_bytes(&target[..]) as &std::ffi::OsStr,
                ));
                self.replace(&path, &name, |r| r.symlink(&target, &path))?;
                self.node_attrs(&path, &name, uid, gid, None, mtime)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&name, "hard link without a target"))?
                    .into_owned();
                let shown = String::from_utf8_lossy(&target).into_owned();
                let target = entry_path(&target)
                    .map_err(|r| self.refuse(&name, format!("hard link target `{shown}`: {r}")))?;
                if target.as_os_str().is_empty() {
                    return Err(self.refuse(&name, "hard link to the image root"));
                }
                self.parent(&path, &name)?;
                self.replace(&path, &name, |r| r.hard_link(&target, &path))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let node = match kind {
                    EntryType::Char => NodeKind::CharDevice,
                    EntryType::Block => NodeKind::BlockDevice,
                    _ => NodeKind::Fifo,
                };
                let (major, minor) = if node == NodeKind::Fifo {
                    (0, 0)
                } else {
                    let major = h.device_major().map_err(self.read_err())?.unwrap_or(0);
                    (
                        major,
                        h.device_minor().map_err(self.read_err())?.unwrap_or(0),
                    )
                };
                self.parent(&path, &name)?;
                self.replace(&path, &name, |r| r.mknod(&path, node, 0o600, major, minor))?;
                self.node_attrs(&path, &name, uid, gid, Some(mode), mtime)?;
            }
            other => {
                tracing::warn!(entry = %name, kind = ?other, "archive entry type not unpacked");
                summary.skipped += 1;
                return Ok(());
            }
        }
        summary.entries += 1;
        Ok(())
    }

    /// Makes sure the directory holding `path` exists (new ones get 0755, as tar does for
    /// directories the archive does not list).
    fn parent(&mut self, path: &Path, entry: &str) -> Result<(), ArchiveError> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        if parent.as_os_str().is_empty() || self.known_dirs.contains(parent) {
            return Ok(());
        }
        self.root
            .create_dir_all(parent, 0o755)
            .map_err(self.fail(entry))?;
        self.known_dirs.insert(parent.to_path_buf());
        Ok(())
    }

    fn make_dir(&mut self, path: &Path, entry: &str) -> Result<(), ArchiveError> {
        if path.as_os_str().is_empty() || self.known_dirs.contains(path) {
            return Ok(());
        }
        // Created owner-only; the archive's mode is applied once everything is in.
        self.root
            .create_dir_all(path, 0o700)
            .map_err(self.fail(entry))?;
        self.known_dirs.insert(path.to_path_buf());
        Ok(())
    }

    /// Runs `make`; when something is already there, removes it (never a directory) and
    /// tries once more, so a second unpack replaces what the first one left.
    fn replace<T>(
        &self,
        path: &Path,
        entry: &str,
        make: impl Fn(&Root) -> confine::Result<T>,
    ) -> Result<T, ArchiveError> {
        match make(self.root) {
            Err(e) if e.is_already_exists() => {
                self.root.remove_file(path).map_err(self.fail(entry))?;
                make(self.root).map_err(self.fail(entry))
            }
            other => other.map_err(self.fail(entry)),
        }
    }

    fn entry_io(&self, entry: &str) -> impl Fn(io::Error) -> ArchiveError + '_ {
        let entry = entry.to_string();
        move |source| ArchiveError::EntryIo {
            archive: self.archive.to_path_buf(),
            entry: entry.clone(),
            source,
        }
    }

    fn copy<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        file: &mut File,
        name: &str,
    ) -> Result<u64, ArchiveError> {
        let mut n = 0u64;
        loop {
            let got = match entry.read(&mut self.buf) {
                Ok(0) => return Ok(n),
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err((self.read_err())(e)),
            };
            file.write_all(&self.buf[..got])
                .map_err(self.entry_io(name))?;
            n += got as u64;
        }
    }

    /// Owner first: changing the owner clears setuid and setgid, so the mode comes after.
    fn file_attrs(
        &self,
        file: &File,
        entry: &str,
        uid: u32,
        gid: u32,
        mode: u32,
        mtime: i64,
    ) -> Result<(), ArchiveError> {
        let io_fail = |e: rustix::io::Errno| (self.entry_io(entry))(e.into());
        if self.opts.same_owner {
            rustix::fs::fchown(
                file,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(io_fail)?;
        }
        rustix::fs::fchmod(
            file,
            rustix::fs::Mode::from_bits_truncate(mode as rustix::fs::RawMode),
        )
        .map_err(io_fail)?;
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: mtime as _,
                tv_nsec: 0,
            },
        };
        rustix::fs::futimens(file, &times).map_err(io_fail)
    }

    fn node_attrs(
        &self,
        path: &Path,
        entry: &str,
        uid: u32,
        gid: u32,
        mode: Option<u32>,
        mtime: i64,
    ) -> Result<(), ArchiveError> {
        if self.opts.same_owner {
            self.root
                .set_owner(path, Some(uid), Some(gid))
                .map_err(self.fail(entry))?;
        }
        if let Some(mode) = mode {
            self.root.set_mode(path, mode).map_err(self.fail(entry))?;
        }
        self.root
            .set_times(path, None, Some(FileTime::from_secs(mtime)))
            .map_err(self.fail(entry))
    }

    fn finish_dirs(&mut self) -> Result<(), ArchiveError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        // Deepest first: setting a parent's mtime before its children are touched would be
        // undone by them.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for d in dirs {
            self.node_attrs(&d.path, &d.entry, d.uid, d.gid, Some(d.mode), d.mtime)?;
        }
        Ok(())
    }
}

/// Numeric owner and group, preferring the pax `uid`/`gid` records that carry ids too
/// large for the header fields.
fn ids<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<(u32, u32)> {
    let mut uid = entry.header().uid()?;
    let mut gid = entry.header().gid()?;
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let value = || ext.value().ok().and_then(|v| v.parse::<u64>().ok());
            match ext.key() {
                Ok("uid") => uid = value().unwrap_or(uid),
                Ok("gid") => gid = value().unwrap_or(gid),
                _ => {}
            }
        }
    }
    let narrow = |v: u64| {
        u32::try_from(v)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("id {v} out of range")))
    };
    Ok((narrow(uid)?, narrow(gid)?))
}

struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
