//! Owner and group names, resolved through the image's own `/etc/passwd` and `/etc/group`.
//!
//! The build host's name service describes the build host, not the image, so it is never
//! consulted. Until the image has those files (an empty root early in a build), the
//! illumos base system's standard ids stand in.

use confine::Root;

use crate::template::check::{ILLUMOS_GROUPS, ILLUMOS_USERS};

/// Why a name could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("unknown {what} {name:?}: not in the image's {file}")]
    Unknown {
        what: &'static str,
        name: String,
        file: &'static str,
    },
    #[error("unknown {what} {name:?}: the image has no {file} yet and it is not an illumos standard {what}")]
    NoFile {
        what: &'static str,
        name: String,
        file: &'static str,
    },
    #[error("cannot read the image's {file}: {source}")]
    Read {
        file: &'static str,
        #[source]
        source: confine::Error,
    },
}

/// Resolves a user name (or numeric id) to a uid.
pub fn uid(root: &Root, name: &str) -> Result<u32, IdError> {
    resolve(root, name, "/etc/passwd", "user", ILLUMOS_USERS)
}

/// Resolves a group name (or numeric id) to a gid.
pub fn gid(root: &Root, name: &str) -> Result<u32, IdError> {
    resolve(root, name, "/etc/group", "group", ILLUMOS_GROUPS)
}

fn resolve(
    root: &Root,
    name: &str,
    file: &'static str,
    what: &'static str,
    standard: &[(&str, u32)],
) -> Result<u32, IdError> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    match root.read(file) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            lookup(&text, name).ok_or(IdError::Unknown {
                what,
                name: name.to_string(),
                file,
            })
        }
        Err(e) if e.is_not_found() => standard
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, id)| *id)
            .ok_or(IdError::NoFile {
                what,
                name: name.to_string(),
                file,
            }),
        Err(source) => Err(IdError::Read { file, source }),
    }
}

/// The id (third field) of the line whose first field is `name`.
fn lookup(text: &str, name: &str) -> Option<u32> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_files_win_over_the_standard_ids() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert_eq!(uid(&root, "daemon").unwrap(), 1);
        assert_eq!(gid(&root, "other").unwrap(), 1);
        assert_eq!(uid(&root, "1234").unwrap(), 1234);
        let e = uid(&root, "svc").unwrap_err().to_string();
        assert_eq!(e, "unknown user \"svc\": the image has no /etc/passwd yet and it is not an illumos standard user");
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nsvc:x:77:12::/:\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root::0:\nstaff::10:\n").unwrap();
        assert_eq!(uid(&root, "svc").unwrap(), 77);
        assert_eq!(gid(&root, "staff").unwrap(), 10);
        let e = uid(&root, "daemon").unwrap_err().to_string();
        assert_eq!(e, "unknown user \"daemon\": not in the image's /etc/passwd");
    }
}
