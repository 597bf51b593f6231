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

/// One plain path component: not empty, `.` or `..`, no `/`, no NUL.
///
/// Local file-system calls take only this type, so an absolute or multi-part path
/// (which `openat` and friends would resolve outside the directory fd) cannot reach
/// them even through a bug elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a>(&'a OsStr);

impl<'a> Name<'a> {
    pub fn as_os_str(&self) -> &'a OsStr {
        self.0
    }
}

impl AsRef<OsStr> for Name<'_> {
    fn as_ref(&self) -> &OsStr {
        self.0
    }
}

/// Returns the name if it is one plain path component.
pub fn check(name: &[u8]) -> Result<Name<'_>, Rejected> {
    let plain = match name {
        [] => return Err(Rejected::Empty),
        b"." => return Err(Rejected::Dot),
        b".." => return Err(Rejected::DotDot),
        n if n.contains(&b'/') => return Err(Rejected::Slash),
        n if n.contains(&0) => return Err(Rejected::Nul),
        n if n.len() > NAME_MAX => return Err(Rejected::TooLong),
        n => OsStr::from_bytes(n),
    };
    Ok(Name(plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_escapes_are_refused() {
        assert_eq!(
            check(b"plugin.so").unwrap().as_os_str(),
            OsStr::new("plugin.so")
        );
        assert_eq!(check(b"...").unwrap().as_os_str(), OsStr::new("..."));
        assert_eq!(check(b""), Err(Rejected::Empty));
        assert_eq!(check(b"."), Err(Rejected::Dot));
        assert_eq!(check(b".."), Err(Rejected::DotDot));
        assert_eq!(check(b"../x"), Err(Rejected::Slash));
        assert_eq!(check(b"/etc"), Err(Rejected::Slash));
        assert_eq!(check(b"a\0b"), Err(Rejected::Nul));
        assert_eq!(check(&[b'a'; 256]), Err(Rejected::TooLong));
    }
}
