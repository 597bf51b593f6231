//! Unpacking an archive into an image root.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use confine::{NodeKind, Root};
use tar::EntryType;

use super::apply::{Attrs, Target};
use super::format::{decompressor, Compression};
use super::paths::{entry_path, symlink_stays_inside};
use super::readahead::ReadAhead;
use super::sun::SunHeaders;
use super::writers::{Job, Pool};
use super::{ArchiveError, Progress};

/// Files up to this size are read into memory and handed to a writer thread; larger ones
/// are streamed by the unpacking thread itself.
const SMALL_FILE: u64 = 8 << 20;

#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Restore owners and groups (numerically). Only root may give files away, so this
    /// defaults to whether we run as root, like tar's `--same-owner`.
    pub same_owner: bool,
    /// Threads creating files while the archive is read; 0 creates them on the unpacking
    /// thread itself. More writers mostly add lock contention in the kernel (measured on a
    /// Debian root file system: four writers used more system time than one).
    pub writers: usize,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            same_owner: rustix::process::geteuid().is_root(),
            writers: 1,
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
    attrs: Attrs,
}

struct Ctx<'a> {
    t: Target<'a>,
    /// None: entries are written on the unpacking thread.
    pool: Option<&'a Pool>,
    known_dirs: HashSet<PathBuf>,
    /// Paths handed to writers since the last barrier: a second entry for one of them
    /// must wait until the first is written.
    queued: HashSet<PathBuf>,
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
    let t = Target {
        root,
        archive,
        same_owner: opts.same_owner,
    };
    let pool = Pool::default();
    std::thread::scope(|s| {
        for _ in 0..opts.writers {
            s.spawn(|| pool.work(t));
        }
        let mut ctx = Ctx {
            t,
            pool: (opts.writers > 0).then_some(&pool),
            known_dirs: HashSet::new(),
            queued: HashSet::new(),
            dirs: Vec::new(),
            buf: vec![0u8; 1 << 20],
        };
        let result = (|| {
            let mut tar = tar::Archive::new(SunHeaders::new(stream));
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
            ctx.barrier()?;
            ctx.finish_dirs()?;
            Ok(summary)
        })();
        pool.close();
        result
    })
    .inspect(|_| progress(Progress { done: total, total }))
}

impl Ctx<'_> {
    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Refused {
            archive: self.t.archive.to_path_buf(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn read_err(&self) -> impl Fn(io::Error) -> ArchiveError + '_ {
        move |source| ArchiveError::Read {
            archive: self.t.archive.to_path_buf(),
            source,
        }
    }

    /// Waits for the writers when one of them may still be writing `path`.
    fn settle(&mut self, path: &Path) -> Result<(), ArchiveError> {
        if self.queued.contains(path) {
            self.barrier()?;
        }
        Ok(())
    }

    fn barrier(&mut self) -> Result<(), ArchiveError> {
        self.queued.clear();
        match self.pool {
            Some(pool) => pool.barrier(),
            None => Ok(()),
        }
    }

    /// Waits for the writers when one of them may still be making `dir` or a directory
    /// on the way to it (a queued symlink `lib -> usr/lib` must exist before `lib/x` is
    /// placed, or `lib` would become a real directory).
    fn settle_dir(&mut self, dir: &Path) -> Result<(), ArchiveError> {
        if dir.ancestors().any(|a| self.queued.contains(a)) {
            self.barrier()?;
        }
        Ok(())
    }

    fn submit(&mut self, path: &Path, job: Job) -> Result<(), ArchiveError> {
        let Some(pool) = self.pool else {
            return job.run(self.t);
        };
        self.settle(path)?;
        self.queued.insert(path.to_path_buf());
        pool.submit(job)
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        summary: &mut UnpackSummary,
    ) -> Result<(), ArchiveError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        if entry.header().entry_type() == EntryType::new(b'E') {
            return Err(self.refuse(&name, xattr_refusal(entry)));
        }
        let path = entry_path(&raw).map_err(|r| self.refuse(&name, r))?;
        let pax = PaxAttrs::of(entry).map_err(self.read_err())?;
        let h = entry.header();
        let kind = h.entry_type();
        let attrs = Attrs {
            uid: pax.uid,
            gid: pax.gid,
            mode: h.mode().map_err(self.read_err())? & 0o7777,
            mtime: pax.mtime,
        };
        if path.as_os_str().is_empty() && kind != EntryType::Directory {
            return Err(self.refuse(&name, "only a directory may name the image root"));
        }
        match kind {
            EntryType::Directory => {
                self.make_dir(&path, &name)?;
                self.dirs.push(DirAttrs {
                    path,
                    entry: name,
                    attrs,
                });
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.parent(&path, &name)?;
                let size = entry.size();
                if size <= SMALL_FILE {
                    let mut data = Vec::with_capacity(size as usize);
                    entry.read_to_end(&mut data).map_err(self.read_err())?;
                    summary.file_bytes += data.len() as u64;
                    let job = Job::File {
                        path: path.clone(),
                        entry: name,
                        data,
                        attrs,
                    };
                    self.submit(&path, job)?;
                } else {
                    self.settle(&path)?;
                    let t = self.t;
                    let mut file = t.replace(&path, &name, |r| r.create_file(&path, 0o600))?;
                    summary.file_bytes += self.copy(entry, &mut file, &name)?;
                    t.file_attrs(&file, &name, attrs)?;
                }
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
                let job = Job::Symlink {
                    path: path.clone(),
                    entry: name,
                    target: PathBuf::from(OsStr::from_bytes(&target)),
                    attrs,
                };
                self.submit(&path, job)?;
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
                // The target must be written completely first.
                self.barrier()?;
                self.t
                    .replace(&path, &name, |r| r.hard_link(&target, &path))?;
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
                    pax.dev(h).map_err(self.read_err())?
                };
                self.parent(&path, &name)?;
                self.settle(&path)?;
                self.t
                    .replace(&path, &name, |r| r.mknod(&path, node, 0o600, major, minor))?;
                self.t.node_attrs(&path, &name, attrs, true)?;
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
        self.settle_dir(parent)?;
        self.t
            .root
            .create_dir_all(parent, 0o755)
            .map_err(self.t.fail(entry))?;
        self.known_dirs.insert(parent.to_path_buf());
        Ok(())
    }

    fn make_dir(&mut self, path: &Path, entry: &str) -> Result<(), ArchiveError> {
        if path.as_os_str().is_empty() || self.known_dirs.contains(path) {
            return Ok(());
        }
        self.settle_dir(path)?;
        // Created owner-only; the archive's mode is applied once everything is in.
        self.t
            .root
            .create_dir_all(path, 0o700)
            .map_err(self.t.fail(entry))?;
        self.known_dirs.insert(path.to_path_buf());
        Ok(())
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
                .map_err(self.t.entry_io(name))?;
            n += got as u64;
        }
    }

    fn finish_dirs(&mut self) -> Result<(), ArchiveError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        // Deepest first: setting a parent's mtime before its children are touched would be
        // undone by them.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for d in dirs {
            self.t.node_attrs(&d.path, &d.entry, d.attrs, true)?;
        }
        Ok(())
    }
}

/// Owner, group, modification time and device numbers, preferring the extended header's
/// records (POSIX pax, or illumos tar's `X`, whose `SUN.devmajor` and `SUN.devminor` carry
/// device numbers too large for the header) to the header fields.
struct PaxAttrs {
    uid: u32,
    gid: u32,
    mtime: i64,
    devmajor: Option<u32>,
    devminor: Option<u32>,
}

impl PaxAttrs {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<PaxAttrs> {
        let h = entry.header();
        let (mut uid, mut gid) = (h.uid()?, h.gid()?);
        let mut mtime = h.mtime()? as i64;
        let (mut devmajor, mut devminor) = (None, None);
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let value = || ext.value().ok();
                let number = || value().and_then(|v| v.parse::<u64>().ok());
                match ext.key() {
                    Ok("uid") => uid = number().unwrap_or(uid),
                    Ok("gid") => gid = number().unwrap_or(gid),
                    // Seconds, with a fraction illumos tar always writes (`gen_date`).
                    Ok("mtime") => {
                        let secs = value().map(|v| v.split('.').next().unwrap_or(v));
                        mtime = secs.and_then(|v| v.parse::<i64>().ok()).unwrap_or(mtime);
                    }
                    Ok("SUN.devmajor") => devmajor = number().map(narrow).transpose()?,
                    Ok("SUN.devminor") => devminor = number().map(narrow).transpose()?,
                    _ => {}
                }
            }
        }
        Ok(PaxAttrs {
            uid: narrow(uid)?,
            gid: narrow(gid)?,
            mtime,
            devmajor,
            devminor,
        })
    }

    fn dev(&self, h: &tar::Header) -> io::Result<(u32, u32)> {
        let major = match self.devmajor {
            Some(v) => v,
            None => h.device_major()?.unwrap_or(0),
        };
        let minor = match self.devminor {
            Some(v) => v,
            None => h.device_minor()?.unwrap_or(0),
        };
        Ok((major, minor))
    }
}

fn narrow(v: u64) -> io::Result<u32> {
    u32::try_from(v)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("id {v} out of range")))
}

/// Why an illumos extended-attribute entry (typeflag `E`) is refused, naming the file and
/// the attribute when its header says. Layout from illumos-gate `usr/src/head/archives.h`:
/// `struct xattr_hdr` (`h_version[7]`, `h_size[10]`, `h_component_len[10]`,
/// `h_link_component_len[10]`), then `struct xattr_buf` (`h_namesz[7]`, `h_typeflag`,
/// `h_names`: the file's path, NUL, the attribute's name, NUL).
fn xattr_refusal<R: Read>(entry: &mut tar::Entry<'_, R>) -> String {
    let mut data = Vec::new();
    let _ = entry.take(1 << 16).read_to_end(&mut data);
    let names = (data.len() > 45 && data[..7].split(|b| *b == 0).next() == Some(b"1.0"))
        .then(|| {
            let mut parts = data[45..].split(|b| *b == 0);
            Some((parts.next()?, parts.next()?))
        })
        .flatten()
        .filter(|(file, attr)| !file.is_empty() && !attr.is_empty());
    let what = match names {
        Some((file, attr)) => {
            let (file, attr) = (String::from_utf8_lossy(file), String::from_utf8_lossy(attr));
            let kind = if attr.starts_with("SUNWattr_") {
                "extended system attributes"
            } else {
                "extended attribute"
            };
            format!("{kind} `{attr}` of `{file}`")
        }
        None => "an extended attribute".to_string(),
    };
    format!(
        "{what} (tar typeflag E, written by illumos tar's `@` or `/` modifier) cannot be \
         restored: image-builder does not unpack extended attributes; pack the archive without them"
    )
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
