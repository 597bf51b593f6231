//! One build at a time per work area: an exclusive `flock` on a file named after it,
//! released when the lock (or the process) goes away.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::BuildError;

pub struct Lock {
    _held: Held,
    pub path: PathBuf,
}

/// A file whose `flock` this process holds, unlocked when dropped. Unlocked explicitly
/// rather than by closing: a child forked by another thread holds a copy of the
/// descriptor until its exec closes it (close-on-exec), and a `flock` lives as long as any
/// descriptor of its open file description does. `LOCK_UN` releases it for all of them at
/// once (flock(2)).
pub(crate) struct Held(pub(crate) File);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock);
    }
}

/// A file name for a dataset name (`rpool/images/work/g/n` -> `rpool%images%work%g%n`).
pub fn key(dataset: &str) -> String {
    dataset.replace('/', "%")
}

impl Lock {
    /// Takes the lock for `name` in `dir`, or fails at once naming the holder.
    pub fn acquire(dir: &Path, name: &str) -> Result<Lock, BuildError> {
        std::fs::create_dir_all(dir).map_err(|e| BuildError::io(dir, e))?;
        let path = dir.join(format!("{}.lock", key(name)));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| BuildError::io(&path, e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(BuildError::Locked {
                    lock: name.to_string(),
                    holder: format!("process {} ({})", holder.trim(), path.display()),
                });
            }
            Err(e) => return Err(BuildError::io(&path, e.into())),
        }
        file.set_len(0).map_err(|e| BuildError::io(&path, e))?;
        write!(file, "{}", std::process::id()).map_err(|e| BuildError::io(&path, e))?;
        Ok(Lock {
            _held: Held(file),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(dir.path(), "rpool/images/work/g/n").unwrap();
        let e = Lock::acquire(dir.path(), "rpool/images/work/g/n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "another build holds rpool/images/work/g/n: process {} (",
                std::process::id()
            )),
            "{e}"
        );
        drop(first);
        Lock::acquire(dir.path(), "rpool/images/work/g/n").unwrap();
    }

    #[test]
    fn a_dropped_lock_is_free_though_a_copy_of_its_descriptor_lives_on() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(dir.path(), "rpool/images/work/g/c").unwrap();
        // What a child forked meanwhile holds until its exec: the same open file
        // description.
        let copy = first._held.0.try_clone().unwrap();
        drop(first);
        Lock::acquire(dir.path(), "rpool/images/work/g/c").unwrap();
        drop(copy);
    }
}
