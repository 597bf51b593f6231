//! What makes a network document unusable, and the helpers that say so.

use serde_json::Value;

use super::kind_of;

/// What is wrong in a network document. `path` names the field as the document spells it
/// (`ethernets.id0.addresses`), so the error can be placed on its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("{path} must be {expected}, not {found}")]
    WrongType {
        path: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path} is missing")]
    Missing { path: String },
    #[error("{path} must be a number")]
    NotNumber { path: String },
    #[error("version 1 needs a `config` list")]
    NoConfig,
    #[error("the document is not an object")]
    NotAnObject,
    #[error("not JSON: {0}")]
    Json(String),
}

impl NetError {
    /// The field the error is about, when it is about one.
    pub fn path(&self) -> Option<&str> {
        match self {
            NetError::WrongType { path, .. }
            | NetError::Missing { path }
            | NetError::NotNumber { path } => Some(path),
            _ => None,
        }
    }
}

/// A value of the wrong type at `at` + `key` (`at` ends in `.` or is empty).
pub(super) fn wrong(at: &str, key: &str, expected: &'static str, v: &Value) -> NetError {
    wrong_at(format!("{at}{key}"), expected, kind_of(v).into())
}

pub(super) fn wrong_at(path: String, expected: &'static str, found: String) -> NetError {
    NetError::WrongType {
        path: path.trim_end_matches('.').to_string(),
        expected,
        found,
    }
}

pub(super) fn missing(at: &str, key: &str) -> NetError {
    NetError::Missing {
        path: format!("{at}{key}"),
    }
}

pub(super) fn not_number(at: &str, key: &str) -> NetError {
    NetError::NotNumber {
        path: format!("{at}{key}"),
    }
}

/// An address or netmask that does not make an `ADDR/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("{0:?} is not an IP address")]
    NotIp(String),
    #[error("{0} has no prefix length or netmask")]
    NoPrefix(String),
    #[error("prefix length {prefix} is too long for {ip}")]
    PrefixTooLong { prefix: String, ip: String },
    #[error("netmask {0} is not valid")]
    BadNetmask(String),
}
