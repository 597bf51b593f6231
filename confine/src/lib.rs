//! A directory opened as an image root.
//!
//! Every operation on a [`Root`] takes an image path (`/etc/passwd` and `etc/passwd` mean
//! the same file) and resolves it inside the root: `..`, absolute symlinks such as
//! `/etc -> /host/etc` and symlinked parent directories are all clamped at the image root,
//! the way they would be after `chroot(2)`. A build that writes into an image can therefore
//! never be redirected onto the host by what the image contains.
//!
//! Operations on the last component never follow it (they act on a symlink itself, like
//! `lstat`/`lchown`), except [`Root::open_read`], [`Root::read`] and [`Root::read_dir`],
//! which follow it inside the root.

mod error;
mod meta;
mod ops;
mod remove;
mod resolve;

pub use error::{Error, Result};
pub use meta::{DirEntry, FileKind, FileTime, Metadata, NodeKind};
pub use resolve::Resolver;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// An image root directory. Cheap to share between threads (`&Root` is `Sync`).
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    host: PathBuf,
    resolver: Resolver,
}

impl Root {
    /// Opens `host_dir` as an image root, choosing the resolver at run time.
    pub fn open(host_dir: impl AsRef<Path>) -> Result<Root> {
        Root::open_with(host_dir, Resolver::Auto)
    }

    /// Opens `host_dir` with a chosen resolver. [`Resolver::Openat2`] fails where the kernel
    /// lacks `openat2`; [`Resolver::Walk`] works everywhere.
    pub fn open_with(host_dir: impl AsRef<Path>, resolver: Resolver) -> Result<Root> {
        let host = host_dir.as_ref().to_path_buf();
        let fd = rustix::fs::openat(
            rustix::fs::CWD,
            &host,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::OpenRoot {
            root: host.clone(),
            source: e.into(),
        })?;
        let resolver = match resolver {
            Resolver::Auto => resolve::detect(fd.as_fd()),
            Resolver::Openat2 => match resolve::detect(fd.as_fd()) {
                Resolver::Openat2 => Resolver::Openat2,
                _ => {
                    return Err(Error::OpenRoot {
                        root: host,
                        source: std::io::Error::new(
                            std::io::ErrorKind::Unsupported,
                            "openat2 with RESOLVE_IN_ROOT is not available on this kernel",
                        ),
                    })
                }
            },
            Resolver::Walk => Resolver::Walk,
        };
        Ok(Root { fd, host, resolver })
    }

    /// The resolver in use (never [`Resolver::Auto`]).
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// Where the root lives on the host (for messages only; never used to reach files).
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    fn root_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
