//! Every file a plugin or the state store touches goes through [`Root`], a thin layer over
//! the workspace's `confine` crate: paths are image paths, and no `..` or symbolic link
//! can lead outside the root (openat2 RESOLVE_IN_ROOT where the kernel has it, a careful
//! walk elsewhere). The root directory is opened per operation, so a `Root` can name a
//! directory that does not exist yet (reads then find nothing).

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error(transparent)]
    Confine(#[from] confine::Error),
}

/// Owner and permission bits of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub is_dir: bool,
}

/// A directory that plays the part of `/`.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_live(&self) -> bool {
        self.dir == Path::new("/")
    }

    fn open(&self) -> Result<Option<confine::Root>, RootError> {
        match confine::Root::open(&self.dir) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn open_for_write(&self) -> Result<confine::Root, RootError> {
        Ok(confine::Root::open(&self.dir)?)
    }

    /// The file's bytes, or `None` when it (or the root) does not exist.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Option<Vec<u8>>, RootError> {
        let Some(r) = self.open()? else {
            return Ok(None);
        };
        match r.read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn read_string(&self, path: impl AsRef<Path>) -> Result<Option<String>, RootError> {
        Ok(self
            .read(path)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Owner and mode of the file (not following a final symlink), if it exists.
    pub fn stat(&self, path: impl AsRef<Path>) -> Result<Option<Stat>, RootError> {
        let Some(r) = self.open()? else {
            return Ok(None);
        };
        Ok(r.try_metadata(path)?.map(|m| Stat {
            uid: m.uid,
            gid: m.gid,
            mode: m.mode,
            is_dir: m.is_dir(),
        }))
    }

    pub fn exists(&self, path: impl AsRef<Path>) -> Result<bool, RootError> {
        Ok(self.stat(path)?.is_some())
    }

    /// Creates the directory and its missing parents with `mode`.
    pub fn create_dir_all(&self, path: impl AsRef<Path>, mode: u32) -> Result<(), RootError> {
        Ok(self.open_for_write()?.create_dir_all(path, mode)?)
    }

    /// Replaces the file's content atomically (temporary file, fsync, rename, directory
    /// fsync), with `mode` and, when given, owner set before the rename, so the file
    /// never appears with the wrong owner.
    pub fn write_atomic(
        &self,
        path: impl AsRef<Path>,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), RootError> {
        use std::io::Write;
        self.open_for_write()?
            .write_atomic_with(path, mode, |f| -> io::Result<()> {
                f.write_all(bytes)?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::fchown(&*f, Some(uid), Some(gid))?;
                }
                Ok(())
            })?;
        Ok(())
    }

    pub fn set_owner(&self, path: impl AsRef<Path>, uid: u32, gid: u32) -> Result<(), RootError> {
        Ok(self
            .open_for_write()?
            .set_owner(path, Some(uid), Some(gid))?)
    }

    pub fn set_mode(&self, path: impl AsRef<Path>, mode: u32) -> Result<(), RootError> {
        Ok(self.open_for_write()?.set_mode(path, mode)?)
    }

    /// Names of the entries of a directory (empty when it does not exist).
    pub fn list(&self, path: impl AsRef<Path>) -> Result<Vec<String>, RootError> {
        let Some(r) = self.open()? else {
            return Ok(Vec::new());
        };
        match r.read_dir(path) {
            Ok(v) => Ok(v
                .into_iter()
                .map(|e| e.name.to_string_lossy().into_owned())
                .collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn remove(&self, path: impl AsRef<Path>) -> Result<(), RootError> {
        match self.open_for_write()?.remove_file(path) {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn dotdot_and_links_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path().join("root"));
        fs::create_dir_all(t.path().join("root/etc")).unwrap();
        symlink("/etc", t.path().join("root/etc/abs")).unwrap();
        symlink("../../../../outside", t.path().join("root/etc/rel")).unwrap();
        root.write_atomic("/../../etc/x", b"1", 0o644, None)
            .unwrap();
        assert_eq!(fs::read(t.path().join("root/etc/x")).unwrap(), b"1");
        assert_eq!(root.read("/etc/abs/x").unwrap().unwrap(), b"1");
        assert!(root.read("/etc/rel").unwrap().is_none());
        root.write_atomic("/outside", b"hi", 0o644, None).unwrap();
        assert_eq!(root.read("/etc/rel").unwrap().unwrap(), b"hi");
        assert!(!t.path().join("outside").exists());
    }

    #[test]
    fn a_missing_root_reads_as_empty() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path().join("none"));
        assert!(root.read("/etc/passwd").unwrap().is_none());
        assert!(root.list("/").unwrap().is_empty());
        assert!(root.write_atomic("/x", b"", 0o644, None).is_err());
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        root.create_dir_all("/var/lib/x", 0o700).unwrap();
        root.write_atomic("/var/lib/x/f", b"one", 0o600, None)
            .unwrap();
        root.write_atomic("/var/lib/x/f", b"two", 0o640, None)
            .unwrap();
        let p = t.path().join("var/lib/x/f");
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(root.stat("/var/lib/x").unwrap().unwrap().mode, 0o700);
        assert_eq!(root.list("/var/lib/x").unwrap(), ["f"]);
    }
}
