//! Error types, one per layer, so callers can tell a broken server from a local fault.

use std::path::PathBuf;

/// A message that cannot be encoded or does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("message truncated: wanted {wanted} more bytes, {left} left")]
    Truncated { wanted: usize, left: usize },
    #[error("{0} unexpected trailing bytes after the message")]
    Trailing(usize),
    #[error("size field says {field} bytes but the message has {actual}")]
    SizeMismatch { field: u32, actual: usize },
    #[error("message type {0} is not a 9P2000.L message this client understands")]
    UnknownType(u8),
    #[error("string of {0} bytes does not fit a 9P string (max 65535)")]
    StringTooLong(usize),
    #[error("walk of {0} names exceeds the 16-name limit of one Twalk")]
    TooManyWalkNames(usize),
    #[error("message of {size} bytes exceeds the negotiated msize {msize}")]
    TooBig { size: usize, msize: u32 },
}

/// A failure moving bytes to or from the server.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("timed out waiting for the 9P server after {0:?}")]
    Timeout(std::time::Duration),
    #[error("the 9P server closed the connection")]
    Closed,
    #[error("server announced a {size}-byte message; the limit is {max} bytes")]
    Oversize { size: u32, max: u32 },
    #[error("server announced a {0}-byte message, shorter than a 9P header")]
    Undersize(u32),
    #[error("{0} is already open: vio9p allows one opener at a time (another p9sync running?)")]
    Busy(PathBuf),
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("9P transport I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A failed 9P request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("malformed reply from the 9P server: {0}")]
    Codec(#[from] CodecError),
    #[error("server error on {op}: {}", errno_text(*errno))]
    Remote { op: &'static str, errno: u32 },
    #[error("protocol violation by the 9P server: {0}")]
    Protocol(String),
    #[error("server speaks {0:?}, not 9P2000.L")]
    Version(String),
    #[error("no free fids left (server leaks or client bug)")]
    FidsExhausted,
    #[error("fid {0} was already clunked")]
    StaleFid(u32),
    #[error("session unusable after an earlier transport failure; reconnect")]
    Poisoned,
}

impl ClientError {
    /// The Linux errno the server sent, if this is an Rlerror.
    pub fn errno(&self) -> Option<u32> {
        match self {
            ClientError::Remote { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// A failed sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{path}: {source}")]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("remote path {0:?} is not a directory")]
    NotADirectory(String),
    #[error("remote path component {0:?} is not allowed (use plain names)")]
    BadRemotePath(String),
    #[error("remote tree deeper than {0} levels; refusing to follow (loop on the server?)")]
    TooDeep(usize),
    #[error("remote tree has more than {0} entries; refusing to continue")]
    TooManyEntries(usize),
}

/// Linux errno values (9P2000.L sends Linux numbers whatever the host).
fn errno_text(e: u32) -> String {
    let name = match e {
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        9 => "EBADF",
        12 => "ENOMEM",
        13 => "EACCES",
        17 => "EEXIST",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        28 => "ENOSPC",
        36 => "ENAMETOOLONG",
        40 => "ELOOP",
        71 => "EPROTO",
        95 => "EOPNOTSUPP",
        _ => return format!("errno {e}"),
    };
    format!("{name} (errno {e})")
}
