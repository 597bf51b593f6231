//! Mirroring a remote subtree into a local directory.
//!
//! Only what differs (size, mtime, permission bits, link target) is transferred;
//! local entries the server no longer lists are deleted. Names from the server are
//! validated before they touch the local file system (see `names`).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::client::{Client, Fid};
use crate::error::{ClientError, SyncError};
use crate::local::{self, FileMeta};
use crate::msg::{Attr, GETATTR_BASIC, GETATTR_MODE};
use crate::names::{self, Name};
use crate::transport::Transport;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const ENOENT: u32 = 2;

#[derive(Debug, Clone)]
pub struct Options {
    /// Path below the attach root, `/`-separated; empty for the root itself.
    pub remote: String,
    pub dest: PathBuf,
    /// Delete local entries the server does not list.
    pub delete: bool,
    /// Deepest directory nesting followed; a server can fake an endless tree.
    pub max_depth: usize,
    /// Most entries in the whole tree (and in one directory); bounds the memory a
    /// server can make the listing use.
    pub max_entries: usize,
    /// Reads kept in flight per file (1 = strictly one request at a time).
    pub read_ahead: usize,
}

impl Options {
    pub fn new(remote: impl Into<String>, dest: impl Into<PathBuf>) -> Self {
        Options {
            remote: remote.into(),
            dest: dest.into(),
            delete: true,
            max_depth: 64,
            max_entries: 1_000_000,
            read_ahead: 4,
        }
    }
}

/// What a sync did, with the relative paths of everything it wrote or removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub copied: Vec<PathBuf>,
    pub bytes_copied: u64,
    pub links: Vec<PathBuf>,
    pub dirs_created: u64,
    pub unchanged: u64,
    pub deleted: Vec<PathBuf>,
    /// Raw names refused as path components (`..`, `a/b`, NUL, empty, too long).
    pub rejected: Vec<Vec<u8>>,
    pub skipped_special: u64,
}

struct Syncer<'a, T: Transport> {
    c: &'a mut Client<T>,
    opts: &'a Options,
    report: Report,
    entries: usize,
}

/// Splits the user's remote path into walk names, refusing `..` so a mirror is
/// always of a subtree of the export.
pub fn remote_components(remote: &str) -> Result<Vec<&[u8]>, SyncError> {
    let mut out = Vec::new();
    for part in remote.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(SyncError::BadRemotePath(part.into())),
            p => out.push(p.as_bytes()),
        }
    }
    Ok(out)
}

/// Mirrors `opts.remote` (relative to the attached `root`) into `opts.dest`.
pub fn sync<T: Transport>(
    c: &mut Client<T>,
    root: Fid,
    opts: &Options,
) -> Result<Report, SyncError> {
    let parts = remote_components(&opts.remote)?;
    let start = c.walk(root, &parts)?;
    let attr = c.getattr(start, GETATTR_BASIC)?;
    if attr.mode & S_IFMT != S_IFDIR {
        let _ = c.clunk(start);
        return Err(SyncError::NotADirectory(opts.remote.clone()));
    }
    let local_err = |e: std::io::Error| SyncError::Local {
        path: opts.dest.clone(),
        source: e,
    };
    std::fs::create_dir_all(&opts.dest).map_err(local_err)?;
    let dest = rustix::fs::open(
        &opts.dest,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| local_err(e.into()))?;
    let mut s = Syncer {
        c,
        opts,
        report: Report::default(),
        entries: 0,
    };
    let r = s.dir(start, &dest, Path::new(""), 0);
    let clunked = s.c.clunk(start);
    r?;
    clunked?;
    Ok(s.report)
}

impl<T: Transport> Syncer<'_, T> {
    fn dir(&mut self, dfid: Fid, dir: &OwnedFd, rel: &Path, depth: usize) -> Result<(), SyncError> {
        if depth > self.opts.max_depth {
            return Err(SyncError::TooDeep(self.opts.max_depth));
        }
        let entries = self.c.list(dfid, self.opts.max_entries)?;
        let mut seen: HashSet<OsString> = HashSet::new();
        for e in entries {
            // Refused names count too, so a server cannot grow the report without bound.
            self.entries += 1;
            if self.entries > self.opts.max_entries {
                return Err(SyncError::TooManyEntries(self.opts.max_entries));
            }
            let name = match names::check(&e.name) {
                Ok(n) => n,
                Err(names::Rejected::Dot | names::Rejected::DotDot) => continue,
                Err(why) => {
                    tracing::warn!(name = ?String::from_utf8_lossy(&e.name), ?why, dir = %rel.display(), "refusing server-supplied name");
                    self.report.rejected.push(e.name.clone());
                    continue;
                }
            };
            if seen.contains(name.as_os_str()) {
                tracing::warn!(name = ?name, "server listed a name twice; keeping the first");
                continue;
            }
            if self.entry(dfid, dir, rel, name, depth)? {
                seen.insert(name.as_os_str().to_owned());
            }
        }
        if self.opts.delete {
            let gone = local::names(dir).map_err(|e| self.local(rel, e))?;
            for n in gone.into_iter().filter(|n| !seen.contains(n)) {
                let Ok(name) = names::check(n.as_bytes()) else {
                    continue;
                };
                local::remove(dir, name).map_err(|e| self.local(&rel.join(&n), e))?;
                self.report.deleted.push(rel.join(&n));
            }
        }
        Ok(())
    }

    /// Mirrors one entry; returns whether it exists locally afterwards.
    fn entry(
        &mut self,
        dfid: Fid,
        dir: &OwnedFd,
        rel: &Path,
        name: Name,
        depth: usize,
    ) -> Result<bool, SyncError> {
        let fid = match self.c.walk(dfid, &[name.as_os_str().as_bytes()]) {
            Ok(f) => f,
            // Removed between readdir and walk: treat as gone.
            Err(e) if e.errno() == Some(ENOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let r = self.entry_at(fid, dir, rel, name, depth);
        let c = self.c.clunk(fid);
        let kept = r?;
        c?;
        Ok(kept)
    }

    fn entry_at(
        &mut self,
        fid: Fid,
        dir: &OwnedFd,
        rel: &Path,
        name: Name,
        depth: usize,
    ) -> Result<bool, SyncError> {
        let attr = self.c.getattr(fid, GETATTR_BASIC)?;
        if attr.valid & GETATTR_MODE == 0 {
            return Err(ClientError::Protocol("getattr reply without a valid mode".into()).into());
        }
        let path = rel.join(name.as_os_str());
        match attr.mode & S_IFMT {
            S_IFDIR => {
                let (sub, created) =
                    local::ensure_dir(dir, name).map_err(|e| self.local(&path, e))?;
                self.report.dirs_created += created as u64;
                // Keep the directory writable while filling it; its real mode (maybe
                // read-only) is applied afterwards.
                local::chmod(&sub, attr.mode | 0o700).map_err(|e| self.local(&path, e))?;
                self.dir(fid, &sub, &path, depth + 1)?;
                local::chmod(&sub, attr.mode).map_err(|e| self.local(&path, e))?;
            }
            S_IFREG => self.file(fid, dir, &path, name, &attr)?,
            S_IFLNK => return self.symlink(fid, dir, &path, name),
            _ => {
                self.report.skipped_special += 1;
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn file(
        &mut self,
        fid: Fid,
        dir: &OwnedFd,
        path: &Path,
        name: Name,
        attr: &Attr,
    ) -> Result<(), SyncError> {
        let st = local::lstat(dir, name).map_err(|e| self.local(path, e))?;
        if st.is_some_and(|st| local::same_file(&st, attr.size, attr.mtime, attr.mode)) {
            self.report.unchanged += 1;
            return Ok(());
        }
        let (_, iounit) = self.c.lopen(fid, 0)?;
        let meta = FileMeta {
            mode: attr.mode,
            atime: attr.atime,
            mtime: attr.mtime,
        };
        let want = attr.size;
        let c = &mut *self.c;
        let depth = self.opts.read_ahead;
        let mut done = 0u64;
        local::replace_file(dir, name, &meta, |f| {
            // Read no further than the size getattr announced: a server that keeps
            // sending data cannot fill the disk.
            done = c.read_to(fid, want, iounit, depth, |data| {
                f.write_all(data).map_err(|e| SyncError::Local {
                    path: path.into(),
                    source: e,
                })
            })?;
            Ok(())
        })?;
        if done != want {
            tracing::warn!(path = %path.display(), want, got = done, "file shrank while being copied");
        }
        self.report.bytes_copied += done;
        self.report.copied.push(path.to_owned());
        Ok(())
    }

    fn symlink(
        &mut self,
        fid: Fid,
        dir: &OwnedFd,
        path: &Path,
        name: Name,
    ) -> Result<bool, SyncError> {
        let target = self.c.readlink(fid)?;
        // The target is stored, never followed by the sync, so `..` in it is harmless;
        // NUL or empty cannot be represented and are refused.
        if target.is_empty() || target.contains(&0) {
            self.report.rejected.push(target);
            return Ok(false);
        }
        let st = local::lstat(dir, name).map_err(|e| self.local(path, e))?;
        if let Some(st) = st {
            if local::kind(&st) == rustix::fs::FileType::Symlink
                && local::readlink(dir, name).map_err(|e| self.local(path, e))? == target
            {
                self.report.unchanged += 1;
                return Ok(true);
            }
        }
        local::replace_symlink(dir, name, OsStr::from_bytes(&target))
            .map_err(|e| self.local(path, e))?;
        self.report.links.push(path.to_owned());
        Ok(true)
    }

    fn local(&self, rel: &Path, source: std::io::Error) -> SyncError {
        SyncError::Local {
            path: self.opts.dest.join(rel),
            source,
        }
    }
}
