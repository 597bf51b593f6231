//! Writing one unpacked entry into the image: shared by the unpacking thread and the
//! writer threads.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use confine::{FileTime, Root};

use super::ArchiveError;

/// Where entries go and how.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub root: &'a Root,
    pub archive: &'a Path,
    pub same_owner: bool,
}

/// Owner, group, permission bits and modification time from the archive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: i64,
}

impl<'a> Target<'a> {
    pub(crate) fn fail(&self, entry: &str) -> impl Fn(confine::Error) -> ArchiveError + 'a {
        let (entry, archive) = (entry.to_string(), self.archive);
        move |source| ArchiveError::Entry {
            archive: archive.to_path_buf(),
            entry: entry.clone(),
            source: Box::new(source),
        }
    }

    pub(crate) fn entry_io(&self, entry: &str) -> impl Fn(io::Error) -> ArchiveError + 'a {
        let (entry, archive) = (entry.to_string(), self.archive);
        move |source| ArchiveError::EntryIo {
            archive: archive.to_path_buf(),
            entry: entry.clone(),
            source,
        }
    }

    /// Runs `make`; when something is already there, removes it (never a directory) and
    /// tries once more, so a second unpack replaces what the first one left.
    pub(crate) fn replace<T>(
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

    /// A whole regular file from memory.
    pub(crate) fn write_file(
        &self,
        path: &Path,
        entry: &str,
        data: &[u8],
        attrs: Attrs,
    ) -> Result<(), ArchiveError> {
        let mut file = self.replace(path, entry, |r| r.create_file(path, 0o600))?;
        file.write_all(data).map_err(self.entry_io(entry))?;
        self.file_attrs(&file, entry, attrs)
    }

    pub(crate) fn symlink(
        &self,
        path: &Path,
        entry: &str,
        target: &Path,
        attrs: Attrs,
    ) -> Result<(), ArchiveError> {
        self.replace(path, entry, |r| r.symlink(target, path))?;
        self.node_attrs(path, entry, attrs, false)
    }

    /// Owner first: changing the owner clears setuid and setgid, so the mode comes after.
    pub(crate) fn file_attrs(
        &self,
        file: &File,
        entry: &str,
        a: Attrs,
    ) -> Result<(), ArchiveError> {
        let io_fail = |e: rustix::io::Errno| (self.entry_io(entry))(e.into());
        if self.same_owner {
            rustix::fs::fchown(
                file,
                Some(rustix::fs::Uid::from_raw(a.uid)),
                Some(rustix::fs::Gid::from_raw(a.gid)),
            )
            .map_err(io_fail)?;
        }
        rustix::fs::fchmod(
            file,
            rustix::fs::Mode::from_bits_truncate(a.mode as rustix::fs::RawMode),
        )
        .map_err(io_fail)?;
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: a.mtime as _,
                tv_nsec: 0,
            },
        };
        rustix::fs::futimens(file, &times).map_err(io_fail)
    }

    /// Attributes by path (symlinks are not followed); `with_mode` is false for symlinks,
    /// whose own mode cannot be set.
    pub(crate) fn node_attrs(
        &self,
        path: &Path,
        entry: &str,
        a: Attrs,
        with_mode: bool,
    ) -> Result<(), ArchiveError> {
        if self.same_owner {
            self.root
                .set_owner(path, Some(a.uid), Some(a.gid))
                .map_err(self.fail(entry))?;
        }
        if with_mode {
            self.root.set_mode(path, a.mode).map_err(self.fail(entry))?;
        }
        self.root
            .set_times(path, None, Some(FileTime::from_secs(a.mtime)))
            .map_err(self.fail(entry))
    }
}
