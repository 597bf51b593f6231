//! What an archive entry may name. These checks run before anything is written, so a
//! hostile archive is refused with the entry named instead of being half unpacked; the
//! image root's confinement is the second line of defence behind them.

use std::path::PathBuf;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The image path an entry name stands for: relative, `.` and empty components dropped.
/// Absolute names and any `..` are refused (GNU tar strips a leading `/` and skips `..`
/// members; refusing is clearer for image builds, where such members mean a broken or
/// hostile archive). An empty result names the root itself (`./`).
pub(crate) fn entry_path(raw: &[u8]) -> Result<PathBuf, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut out = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path contains `..`"),
            p => out.push(OsStr::from_bytes(p)),
        }
    }
    Ok(out)
}

/// Whether a symlink stored at `link` (an entry path) with content `target` stays inside
/// the image when resolved from where it sits. Absolute targets are resolved against the
/// image root, as they will be once the image boots, so they always stay inside.
pub(crate) fn symlink_stays_inside(link: &std::path::Path, target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return true;
    }
    let mut depth = link.components().count() as i64 - 1;
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn entry_paths() {
        assert_eq!(
            entry_path(b"./etc/passwd").unwrap(),
            Path::new("etc/passwd")
        );
        assert_eq!(entry_path(b"etc//x/./y/").unwrap(), Path::new("etc/x/y"));
        assert_eq!(entry_path(b"./").unwrap(), Path::new(""));
        assert_eq!(entry_path(b"/etc/passwd").unwrap_err(), "absolute path");
        assert_eq!(entry_path(b"../x").unwrap_err(), "path contains `..`");
        assert_eq!(
            entry_path(b"a/b/../../..").unwrap_err(),
            "path contains `..`"
        );
        assert_eq!(entry_path(b"a/..b").unwrap(), Path::new("a/..b"));
    }

    #[test]
    fn symlink_targets() {
        let at = |l: &str, t: &str| symlink_stays_inside(Path::new(l), t.as_bytes());
        assert!(at("lib/x", "../usr/lib/x"));
        assert!(at("x", "/etc/passwd"));
        assert!(at("a/b/c", "../../d"));
        assert!(!at("a/b/c", "../../../d"));
        assert!(!at("x", "../etc/passwd"));
        assert!(!at("a/b", "c/../../../x"));
        assert!(at("a/b", "c/../../x"));
    }
}
