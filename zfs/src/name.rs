//! Checks on names before they reach a command line, and the parent relation `exists`
//! walks. The checks are deliberately narrow: they refuse what `zfs`/`zpool` would misread
//! (a leading `-` is an option, whitespace splits `-H` output), not everything ZFS refuses.

use crate::error::{Result, ZfsError};

fn invalid(kind: &'static str, name: &str, why: &'static str) -> ZfsError {
    ZfsError::InvalidName {
        kind,
        name: name.to_string(),
        why,
    }
}

fn check_common(kind: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(kind, name, "empty"));
    }
    if name.starts_with('-') {
        return Err(invalid(kind, name, "starts with '-'"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            kind,
            name,
            "contains whitespace or a control character",
        ));
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Err(invalid(kind, name, "has an empty component"));
    }
    Ok(())
}

/// A pool name: no `/`, `@` or `#`.
pub fn pool(name: &str) -> Result<()> {
    check_common("pool", name)?;
    if name.contains(['/', '@', '#']) {
        return Err(invalid("pool", name, "contains '/', '@' or '#'"));
    }
    Ok(())
}

/// A file system or volume: `pool/a/b`, no snapshot part.
pub fn dataset(name: &str) -> Result<()> {
    check_common("dataset", name)?;
    if name.contains(['@', '#']) {
        return Err(invalid("dataset", name, "contains '@' or '#'"));
    }
    Ok(())
}

/// A snapshot: `pool/a@snap`, exactly one `@` with something on both sides.
pub fn snapshot(name: &str) -> Result<()> {
    check_common("snapshot", name)?;
    match name.split_once('@') {
        Some((ds, snap)) if !ds.is_empty() && !snap.is_empty() && !snap.contains(['@', '/']) => {
            dataset(ds).map_err(|_| invalid("snapshot", name, "has an invalid dataset part"))
        }
        _ => Err(invalid("snapshot", name, "is not DATASET@NAME")),
    }
}

/// A snapshot that goes into a list of them (`zfs destroy DATASET@A,B`): a snapshot
/// whose name has no `,` (which separates the list) or `%` (which makes a range).
pub fn listed_snapshot(name: &str) -> Result<()> {
    snapshot(name)?;
    if name.contains([',', '%']) {
        return Err(invalid("snapshot", name, "contains ',' or '%'"));
    }
    Ok(())
}

/// Any dataset-like name: file system, volume or snapshot.
pub fn any(name: &str) -> Result<()> {
    if name.contains('@') {
        snapshot(name)
    } else {
        dataset(name)
    }
}

/// A property name (`compression`, `org.example:key`); `=` would corrupt `zfs set`.
pub fn property(name: &str) -> Result<()> {
    check_common("property", name)?;
    if name.contains(['=', '/']) {
        return Err(invalid("property", name, "contains '=' or '/'"));
    }
    Ok(())
}

/// Where to look for `name` when asking whether it exists.
#[derive(Debug, PartialEq, Eq)]
pub enum Parent<'a> {
    /// `name` is a pool's root data set: look among the pools.
    Pool,
    /// `name` is a child or a snapshot of this data set.
    Dataset(&'a str),
}

pub fn parent(name: &str) -> Parent<'_> {
    if let Some((ds, _)) = name.split_once('@') {
        return Parent::Dataset(ds);
    }
    match name.rsplit_once('/') {
        Some((p, _)) => Parent::Dataset(p),
        None => Parent::Pool,
    }
}

/// The data set part of a snapshot name (the name itself otherwise).
pub fn parent_dataset(name: &str) -> &str {
    name.split_once('@').map_or(name, |(ds, _)| ds)
}

/// The pool a dataset or snapshot lives in.
pub fn pool_of(name: &str) -> &str {
    let end = name.find(['/', '@']).unwrap_or(name.len());
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        pool("rpool").unwrap();
        dataset("rpool/ROOT/openindiana").unwrap();
        snapshot("rpool/images/work/oi/strap@stage-1").unwrap();
        property("org.illumos.image-builder:key").unwrap();
        any("rpool@x").unwrap();
    }

    #[test]
    fn refuses_what_a_command_line_would_misread() {
        for bad in ["", "-f", "a b", "a\tb", "a/", "/a", "a//b", "a@b"] {
            assert!(dataset(bad).is_err(), "{bad:?} accepted as a dataset");
        }
        for bad in ["a", "a@", "@b", "a@b@c", "a@b/c", "-a@b"] {
            assert!(snapshot(bad).is_err(), "{bad:?} accepted as a snapshot");
        }
        assert!(pool("rpool/x").is_err());
        assert!(property("a=b").is_err());
        let e = dataset("-r").unwrap_err().to_string();
        assert_eq!(e, "invalid dataset name `-r`: starts with '-'");
    }

    #[test]
    fn parents_and_pools() {
        assert_eq!(parent("rpool"), Parent::Pool);
        assert_eq!(parent("rpool/a/b"), Parent::Dataset("rpool/a"));
        assert_eq!(parent("rpool/a@s"), Parent::Dataset("rpool/a"));
        assert_eq!(parent("rpool@s"), Parent::Dataset("rpool"));
        assert_eq!(pool_of("rpool/a@s"), "rpool");
        assert_eq!(pool_of("rpool@s"), "rpool");
        assert_eq!(pool_of("rpool"), "rpool");
    }
}
