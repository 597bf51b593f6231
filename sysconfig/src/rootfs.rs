//! Every file a plugin or the state store touches goes through [`Root`]: paths are taken
//! relative to the configured root, and no path, `..` or symbolic link may lead outside
//! it (links are resolved as if the root were `/`, like openat2's RESOLVE_IN_ROOT). This
//! is the one module to switch when the workspace's root-confinement crate is used.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: too many levels of symbolic links")]
    Loop { path: String },
}

/// A directory that plays the part of `/`.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

const MAX_LINKS: usize = 40;

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

    /// The host path of `path` (absolute or relative, always read as inside the root),
    /// with every symbolic link on the way resolved inside the root. The last component
    /// need not exist.
    pub fn resolve(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        let shown = path.as_ref().display().to_string();
        let mut pending: Vec<std::ffi::OsString> = Vec::new();
        push_components(&mut pending, path.as_ref());
        pending.reverse();
        let mut inside: Vec<std::ffi::OsString> = Vec::new();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                inside.pop();
                continue;
            }
            let candidate = self.join(&inside).join(&part);
            match fs::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(RootError::Loop { path: shown });
                    }
                    let target = fs::read_link(&candidate).map_err(|source| RootError::Io {
                        path: shown.clone(),
                        source,
                    })?;
                    if target.is_absolute() {
                        inside.clear();
                    }
                    let mut more = Vec::new();
                    push_components(&mut more, &target);
                    for c in more.into_iter().rev() {
                        pending.push(c);
                    }
                }
                _ => inside.push(part),
            }
        }
        Ok(self.join(&inside))
    }

    fn join(&self, parts: &[std::ffi::OsString]) -> PathBuf {
        let mut p = self.dir.clone();
        for c in parts {
            p.push(c);
        }
        p
    }

    fn io(path: &Path) -> impl Fn(io::Error) -> RootError + '_ {
        move |source| RootError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// The file's bytes, or `None` when it does not exist.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Option<Vec<u8>>, RootError> {
        let p = path.as_ref();
        let host = self.resolve(p)?;
        match fs::read(&host) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io(p)(e)),
        }
    }

    pub fn read_string(&self, path: impl AsRef<Path>) -> Result<Option<String>, RootError> {
        Ok(self
            .read(path)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    pub fn exists(&self, path: impl AsRef<Path>) -> Result<bool, RootError> {
        Ok(self.resolve(path)?.symlink_metadata().is_ok())
    }

    /// Creates the directory and its missing parents with `mode`.
    pub fn create_dir_all(&self, path: impl AsRef<Path>, mode: u32) -> Result<(), RootError> {
        let p = path.as_ref();
        let mut so_far = PathBuf::from("/");
        for c in p.components() {
            if let Component::Normal(n) = c {
                so_far.push(n);
                let host = self.resolve(&so_far)?;
                if !host.is_dir() {
                    fs::create_dir(&host).map_err(Self::io(p))?;
                    fs::set_permissions(&host, fs::Permissions::from_mode(mode))
                        .map_err(Self::io(p))?;
                }
            }
        }
        Ok(())
    }

    /// Replaces the file's content atomically: a temporary file in the same directory is
    /// written, given `mode` (and owner), fsynced and renamed over the target, then the
    /// directory is fsynced, so a crash leaves either the old or the new file.
    pub fn write_atomic(
        &self,
        path: impl AsRef<Path>,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), RootError> {
        let p = path.as_ref();
        let host = self.resolve(p)?;
        let dir = host
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.clone());
        let name = host
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // O_EXCL: a planted file or link at the temporary name makes the write fail
        // instead of being followed.
        let tmp = dir.join(format!(".{name}.sysconfig-{}", std::process::id()));
        let result = (|| -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            }
            f.sync_all()?;
            fs::rename(&tmp, &host)?;
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(Self::io(p))
    }

    pub fn set_owner(&self, path: impl AsRef<Path>, uid: u32, gid: u32) -> Result<(), RootError> {
        let p = path.as_ref();
        let host = self.resolve(p)?;
        std::os::unix::fs::lchown(&host, Some(uid), Some(gid)).map_err(Self::io(p))
    }

    pub fn set_mode(&self, path: impl AsRef<Path>, mode: u32) -> Result<(), RootError> {
        let p = path.as_ref();
        let host = self.resolve(p)?;
        fs::set_permissions(&host, fs::Permissions::from_mode(mode)).map_err(Self::io(p))
    }

    /// Names of the entries of a directory (empty when it does not exist).
    pub fn list(&self, path: impl AsRef<Path>) -> Result<Vec<String>, RootError> {
        let p = path.as_ref();
        let host = self.resolve(p)?;
        let rd = match fs::read_dir(&host) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(p)(e)),
        };
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(Self::io(p))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    pub fn remove(&self, path: impl AsRef<Path>) -> Result<(), RootError> {
        let p = path.as_ref();
        let host = self.resolve(p)?;
        match fs::remove_file(&host) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Self::io(p)(e)),
            _ => Ok(()),
        }
    }
}

fn push_components(out: &mut Vec<std::ffi::OsString>, p: &Path) {
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_owned()),
            Component::ParentDir => out.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn dotdot_and_absolute_links_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path().join("root"));
        fs::create_dir_all(t.path().join("root/etc")).unwrap();
        symlink("/etc", t.path().join("root/etc/abs")).unwrap();
        symlink("../../../../outside", t.path().join("root/etc/rel")).unwrap();
        assert_eq!(
            root.resolve("/../../etc/passwd").unwrap(),
            t.path().join("root/etc/passwd")
        );
        assert_eq!(
            root.resolve("/etc/abs/x").unwrap(),
            t.path().join("root/etc/x")
        );
        root.write_atomic("/etc/rel", b"hi", 0o644, None).unwrap();
        assert!(!t.path().join("outside").exists());
        assert_eq!(fs::read(t.path().join("root/outside")).unwrap(), b"hi");
    }

    #[test]
    fn link_loops_are_an_error() {
        let t = tempfile::tempdir().unwrap();
        symlink("a", t.path().join("b")).unwrap();
        symlink("b", t.path().join("a")).unwrap();
        let err = Root::new(t.path()).read("/a").unwrap_err();
        assert!(matches!(err, RootError::Loop { .. }), "{err}");
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
        assert_eq!(
            fs::metadata(t.path().join("var/lib/x"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(root.list("/var/lib/x").unwrap(), ["f"]);
    }
}
