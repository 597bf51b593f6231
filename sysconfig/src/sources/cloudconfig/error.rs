//! Why user-data, or a part of it, is not taken.

use super::mime;
use crate::yaml;

/// Why a `#cloud-config` part cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CloudConfigError {
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error(transparent)]
    Yaml(#[from] yaml::YamlError),
    #[error("the cloud-config is {0}, not a mapping")]
    NotAMapping(&'static str),
}

/// Why a `groups` value is ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupsError {
    #[error("{0} is not a list, a mapping or a string")]
    Shape(&'static str),
    #[error("members of {group} are {kind}")]
    Members { group: String, kind: &'static str },
    #[error("a group name is {0}")]
    Name(&'static str),
}

/// Why a `write_files` entry is skipped.
#[derive(Debug, thiserror::Error)]
pub enum WriteFileError {
    #[error("the entry is {0}, not a mapping")]
    NotAMapping(&'static str),
    #[error("path is {0}, not a string")]
    PathType(&'static str),
    #[error("no path")]
    NoPath,
    /// The entry for this path has an unusable field.
    #[error("{path}: {problem}")]
    In { path: String, problem: FileProblem },
}

/// What is wrong with one field of a `write_files` entry.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error("content is {0}, not text or binary")]
    Content(&'static str),
    #[error("encoding is {0}")]
    Encoding(&'static str),
    #[error(transparent)]
    Decode(#[from] mime::MimeError),
    #[error("permissions {0} is not a mode")]
    NotAMode(i128),
    #[error("permissions {0:o} are not a file mode")]
    ModeTooLarge(u32),
    #[error("owner is {0}, not user:group")]
    Owner(&'static str),
}
