//! Writing an image tree into an archive.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use confine::{FileKind, Metadata, Root};
use tar::EntryType;

use super::format::{Compression, Compressor};
use super::ustar::{self, Head};
use super::{all_cores, ArchiveError, Progress};

#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Image paths to pack, each with everything below it, named in the archive as given
    /// (`etc` gives `etc/`, `etc/passwd`, ...). Empty packs the whole root as `./`.
    pub include: Vec<PathBuf>,
    /// Latest modification time to record (the caller's `SOURCE_DATE_EPOCH`); later times
    /// are clamped to it.
    pub source_date_epoch: Option<i64>,
    /// Compression threads; 0 means all cores.
    pub threads: usize,
    /// Compression level; `None` uses the format's usual default.
    pub level: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackSummary {
    pub entries: u64,
    pub file_bytes: u64,
    pub archive_bytes: u64,
    /// Sockets cannot be archived and are left out, as GNU tar does.
    pub skipped_sockets: u64,
}

struct Item {
    image_path: PathBuf,
    name: Vec<u8>,
    meta: Metadata,
}

/// Packs `opts.include` (or the whole root) from `root` into `archive`, compressed as its
/// name says. The archive is written beside its final name and renamed into place, so a
/// failed pack leaves no partial archive behind.
pub fn pack(
    root: &Root,
    archive: &Path,
    opts: &PackOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<PackSummary, ArchiveError> {
    let compression = Compression::from_name(archive)?;
    let write_err = |source: io::Error| ArchiveError::Write {
        archive: archive.to_path_buf(),
        source,
    };
    let partial = partial_name(archive);
    let file = File::create(&partial).map_err(write_err)?;
    // The archive may be written inside the tree it packs; never pack it into itself.
    let own = file
        .metadata()
        .map(|m| (m.dev(), m.ino()))
        .map_err(write_err)?;
    let result = (|| {
        let mut summary = PackSummary::default();
        let items = collect(root, opts, own, &mut summary)?;
        let total = total_bytes(&items);
        let threads = if opts.threads == 0 {
            all_cores()
        } else {
            opts.threads
        };
        let level = opts.level.unwrap_or(compression.default_level());
        let out = Compressor::new(compression, file, level, threads).map_err(write_err)?;
        let mut builder = tar::Builder::new(out);
        write_items(
            root,
            &items,
            opts.source_date_epoch,
            &mut builder,
            &mut summary,
            total,
            progress,
        )
        .map_err(|e| match e {
            Failure::Source(e) => *e,
            Failure::Write(e) => write_err(e),
        })?;
        builder.finish().map_err(write_err)?;
        let file = builder
            .into_inner()
            .map_err(write_err)?
            .finish()
            .map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        summary.archive_bytes = file.metadata().map_err(write_err)?.len();
        std::fs::rename(&partial, archive).map_err(write_err)?;
        progress(Progress { done: total, total });
        Ok(summary)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn partial_name(archive: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(archive.file_name().unwrap_or_default());
    name.push(".partial");
    archive.with_file_name(name)
}

/// Walks each include depth first, children in byte order of their names, so the order
/// depends on the tree alone and every directory precedes what it holds.
fn collect(
    root: &Root,
    opts: &PackOptions,
    own: (u64, u64),
    summary: &mut PackSummary,
) -> Result<Vec<Item>, ArchiveError> {
    let mut items = Vec::new();
    let includes: Vec<(PathBuf, Vec<u8>)> = if opts.include.is_empty() {
        vec![(PathBuf::new(), b".".to_vec())]
    } else {
        let mut v = Vec::new();
        for inc in &opts.include {
            // Includes are image paths: `/etc` and `etc` are the same directory.
            let bytes = inc.as_os_str().as_bytes();
            let relative = &bytes[bytes.iter().take_while(|b| **b == b'/').count()..];
            let rel =
                super::paths::entry_path(relative).map_err(|reason| ArchiveError::BadInclude {
                    path: inc.clone(),
                    reason,
                })?;
            let name = if rel.as_os_str().is_empty() {
                b".".to_vec()
            } else {
                rel.as_os_str().as_bytes().to_vec()
            };
            v.push((rel, name));
        }
        v
    };
    for (rel, name) in includes {
        let src_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ArchiveError::Source {
                path,
                source: Box::new(source),
            }
        };
        let meta = root.metadata(&rel).map_err(src_err(&rel))?;
        let mut stack = vec![Item {
            image_path: rel,
            name,
            meta,
        }];
        while let Some(item) = stack.pop() {
            if (item.meta.dev, item.meta.ino) == own {
                continue;
            }
            if item.meta.kind == FileKind::Socket {
                summary.skipped_sockets += 1;
                tracing::warn!(path = %item.image_path.display(), "socket left out of the archive");
                continue;
            }
            if item.meta.is_dir() {
                let children = root
                    .read_dir(&item.image_path)
                    .map_err(src_err(&item.image_path))?;
                for child in children.into_iter().rev() {
                    // Below `./` names go without the prefix, as the tar crate writes short
                    // names anyway; GNU tar applies a directory's mtime once an entry
                    // outside it appears, and compares by name, so the spelling must agree.
                    let mut name = if item.name == b"." {
                        Vec::new()
                    } else {
                        let mut n = item.name.clone();
                        n.push(b'/');
                        n
                    };
                    name.extend_from_slice(child.name.as_bytes());
                    stack.push(Item {
                        image_path: item.image_path.join(&child.name),
                        name,
                        meta: child.metadata,
                    });
                }
            }
            items.push(item);
        }
    }
    Ok(items)
}

fn total_bytes(items: &[Item]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .filter(|i| i.meta.is_file() && (i.meta.nlink < 2 || seen.insert((i.meta.dev, i.meta.ino))))
        .map(|i| i.meta.size)
        .sum()
}

enum Failure {
    Source(Box<ArchiveError>),
    Write(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Write(e)
    }
}

fn write_items(
    root: &Root,
    items: &[Item],
    sde: Option<i64>,
    builder: &mut tar::Builder<Compressor>,
    summary: &mut PackSummary,
    total: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), Failure> {
    let mut first_link: HashMap<(u64, u64), &[u8]> = HashMap::new();
    let mut done = 0u64;
    let mut reported = 0u64;
    for item in items {
        let m = &item.meta;
        let mtime = match sde {
            Some(limit) => m.mtime.secs.min(limit),
            None => m.mtime.secs,
        };
        let head = |kind, name, link, size, dev| entry_head(m, mtime, kind, name, link, size, dev);
        let source_err = |source| {
            Failure::Source(Box::new(ArchiveError::Source {
                path: item.image_path.clone(),
                source: Box::new(source),
            }))
        };
        match m.kind {
            FileKind::Dir => {
                let mut dir_name = item.name.clone();
                if dir_name.last() != Some(&b'/') {
                    dir_name.push(b'/');
                }
                let h = head(EntryType::Directory, &dir_name, b"", 0, None);
                append(builder, &h, io::empty())?;
            }
            FileKind::File => {
                let key = (m.dev, m.ino);
                if m.nlink > 1 {
                    if let Some(first) = first_link.get(&key) {
                        let h = head(EntryType::Link, &item.name, first, 0, None);
                        append(builder, &h, io::empty())?;
                        summary.entries += 1;
                        continue;
                    }
                    first_link.insert(key, &item.name);
                }
                let file = root.open_read(&item.image_path).map_err(source_err)?;
                // A file that shrinks while being read would misalign the archive: fail.
                let data = Exact {
                    inner: file.take(m.size),
                    left: m.size,
                };
                let h = head(EntryType::Regular, &item.name, b"", m.size, None);
                append(builder, &h, data)?;
                done += m.size;
                summary.file_bytes += m.size;
                if done - reported >= 1 << 22 {
                    reported = done;
                    progress(Progress { done, total });
                }
            }
            FileKind::Symlink => {
                let target = root.read_link(&item.image_path).map_err(source_err)?;
                let target = target.as_os_str().as_bytes();
                let h = head(EntryType::Symlink, &item.name, target, 0, None);
                append(builder, &h, io::empty())?;
            }
            FileKind::CharDevice | FileKind::BlockDevice | FileKind::Fifo => {
                let (kind, dev) = match m.kind {
                    FileKind::CharDevice => (EntryType::Char, Some((m.rdev_major, m.rdev_minor))),
                    FileKind::BlockDevice => (EntryType::Block, Some((m.rdev_major, m.rdev_minor))),
                    _ => (EntryType::Fifo, None),
                };
                let dev = dev.map(|(a, b)| (u64::from(a), u64::from(b)));
                append(builder, &head(kind, &item.name, b"", 0, dev), io::empty())?;
            }
            FileKind::Socket | FileKind::Unknown => continue,
        }
        summary.entries += 1;
    }
    Ok(())
}

fn entry_head<'a>(
    m: &Metadata,
    mtime: i64,
    kind: EntryType,
    name: &'a [u8],
    link: &'a [u8],
    size: u64,
    dev: Option<(u64, u64)>,
) -> Head<'a> {
    Head {
        kind,
        name,
        link,
        mode: m.mode,
        uid: u64::from(m.uid),
        gid: u64::from(m.gid),
        mtime,
        size,
        dev,
    }
}

/// Writes one entry: its extended header when it needs one, its header, its data.
fn append(builder: &mut tar::Builder<Compressor>, h: &Head, data: impl Read) -> io::Result<()> {
    if h.name.len() > 1024 || h.link.len() > 1024 {
        // tar.c, get_xdata: longer extended paths are "Extended header path too long".
        tracing::warn!(
            entry = %String::from_utf8_lossy(h.name),
            "name or link target over 1024 bytes: illumos tar will not unpack this entry"
        );
    }
    let blocks = ustar::blocks(h);
    if let Some((x, records)) = &blocks.extended {
        builder.append(x, &records[..])?;
    }
    builder.append(&blocks.header, data)
}

/// Reads exactly `left` bytes or fails.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being packed",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
