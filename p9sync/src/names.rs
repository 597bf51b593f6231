//! Deciding whether a name sent by the server may become a local path component.
//!
//! The server is not trusted: a name such as `..`, `a/b`, `/etc` or one containing
//! NUL would let a single directory entry escape the destination tree. Only plain
//! single components are accepted; everything else is reported and skipped.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Why a server-supplied name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Empty,
    Dot,
    DotDot,
    Slash,
    Nul,
    TooLong,
}

/// Longest name accepted (NAME_MAX on Linux and illumos ZFS).
pub const NAME_MAX: usize = 255;

/// Returns the name as an `OsStr` if it is one plain path component.
pub fn check(name: &[u8]) -> Result<&OsStr, Rejected> {
    match name {
        [] => Err(Rejected::Empty),
        b"." => Err(Rejected::Dot),
        b".." => Err(Rejected::DotDot),
        n if n.contains(&b'/') => Err(Rejected::Slash),
        n if n.contains(&0) => Err(Rejected::Nul),
        n if n.len() > NAME_MAX => Err(Rejected::TooLong),
        n => Ok(OsStr::from_bytes(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_escapes_are_refused() {
        assert_eq!(check(b"plugin.so").unwrap(), OsStr::new("plugin.so"));
        assert_eq!(check(b"...").unwrap(), OsStr::new("..."));
        assert_eq!(check(b""), Err(Rejected::Empty));
        assert_eq!(check(b"."), Err(Rejected::Dot));
        assert_eq!(check(b".."), Err(Rejected::DotDot));
        assert_eq!(check(b"../x"), Err(Rejected::Slash));
        assert_eq!(check(b"/etc"), Err(Rejected::Slash));
        assert_eq!(check(b"a\0b"), Err(Rejected::Nul));
        assert_eq!(check(&[b'a'; 256]), Err(Rejected::TooLong));
    }
}
