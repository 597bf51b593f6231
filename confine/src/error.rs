use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, naming the image path and the root it was resolved in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open image root {}: {source}", .root.display())]
    OpenRoot {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot {op} {} in image {}: {source}", .path.display(), .root.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot {op} {} in image {}: {reason}", .path.display(), .root.display())]
    Invalid {
        op: &'static str,
        path: PathBuf,
        root: PathBuf,
        reason: &'static str,
    },
}

impl Error {
    /// The kind of the underlying I/O error, if there is one.
    pub fn kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::OpenRoot { source, .. } | Error::Io { source, .. } => Some(source.kind()),
            Error::Invalid { .. } => None,
        }
    }

    /// The raw OS error number, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::OpenRoot { source, .. } | Error::Io { source, .. } => source.raw_os_error(),
            Error::Invalid { .. } => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == Some(io::ErrorKind::NotFound)
    }

    pub fn is_already_exists(&self) -> bool {
        self.kind() == Some(io::ErrorKind::AlreadyExists)
    }

    /// The image path the failed operation was given.
    pub fn image_path(&self) -> Option<&Path> {
        match self {
            Error::OpenRoot { .. } => None,
            Error::Io { path, .. } | Error::Invalid { path, .. } => Some(path),
        }
    }
}
