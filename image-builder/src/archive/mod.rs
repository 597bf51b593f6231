//! Packing and unpacking image trees as `.tar`, `.tar.gz`, `.tar.zst` and `.tar.xz`.
//!
//! Owners and groups are kept as numbers (the build host's user database is not the
//! image's), with modes including setuid, setgid and sticky, hard links, symlinks, device
//! nodes, FIFOs and modification times. Unpacking goes through a [`confine::Root`] and
//! refuses entries that would land outside it. Packing sorts entries and clamps times to
//! `SOURCE_DATE_EPOCH` when given, so the same tree always gives the same bytes; gzip is
//! compressed on all cores. Archives are POSIX ustar with illumos tar's `X` extended
//! headers where ustar falls short (`ustar.rs`); reading also takes illumos tar's own
//! archives (`sun.rs`).

mod apply;
mod format;
mod gzip;
mod pack;
mod paths;
mod pgzip;
mod readahead;
mod sun;
mod unpack;
mod ustar;
mod writers;

pub use format::Compression;
pub(crate) use format::Compressor;
pub use gzip::gzip_into;
pub use pack::{pack, PackOptions, PackSummary};
pub use pgzip::ParGzEncoder;
pub use unpack::{unpack, UnpackOptions, UnpackSummary};

use std::io;
use std::path::PathBuf;

/// How far a pack or unpack has come, in bytes: file data packed so far against the total
/// to pack, or archive bytes read against the archive's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "cannot tell the format of {} from its name: expected .tar, .tar.gz, .tgz, .tar.zst or .tar.xz",
        .path.display()
    )]
    UnknownFormat { path: PathBuf },
    #[error("refusing archive entry `{entry}` in {}: {reason}", .archive.display())]
    Refused {
        archive: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("cannot read archive {}: {source}", .archive.display())]
    Read {
        archive: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot unpack entry `{entry}` of {}: {source}", .archive.display())]
    Entry {
        archive: PathBuf,
        entry: String,
        #[source]
        source: Box<confine::Error>,
    },
    #[error("cannot unpack entry `{entry}` of {}: {source}", .archive.display())]
    EntryIo {
        archive: PathBuf,
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot pack {}: {source}", .path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: Box<confine::Error>,
    },
    #[error("cannot write archive {}: {source}", .archive.display())]
    Write {
        archive: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot gzip {} into the image as {}: {source}", .src.display(), .target.display())]
    Gzip {
        src: PathBuf,
        target: PathBuf,
        #[source]
        source: Box<confine::Error>,
    },
    #[error("cannot pack {}: {reason}", .path.display())]
    BadInclude { path: PathBuf, reason: &'static str },
}

/// All cores, the default for compression threads.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
