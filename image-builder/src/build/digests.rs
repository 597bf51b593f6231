//! Remembered SHA-256 digests of the source files a stage key hashes, so that an
//! unchanged 50-step stage does not read every file it installs again on each build.
//!
//! An entry is keyed by the file's device and inode and holds its size, modification and
//! change times (to the nanosecond) and when it was hashed. It is used only when all of
//! them match the file now and the file's change time is more than [`SETTLE`] before the
//! moment it was hashed: a file written in the same instant as it was read (the "racy"
//! case git's index has too) is hashed again on the next build. Any write to a file moves
//! its change time (stat(2), POSIX `st_ctim`), which nothing but the kernel sets, so an
//! edited file never matches an old entry.
//!
//! The digests live in one JSON file beside the build journals (the output dataset's
//! `.image-builder/digests.json`), written atomically; two builds at once may each lose
//! the other's new entries, which only costs a hash on a later build.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::cache::hex;

/// How long before it was hashed a file must have last changed for the entry to count.
pub const SETTLE: u128 = 2_000_000_000;

/// The most entries kept; the least recently hashed go first.
const MAX_ENTRIES: usize = 20_000;

const FILE: &str = "digests.json";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Entry {
    size: u64,
    /// Modification and change times, nanoseconds since the epoch.
    mtime: u128,
    ctime: u128,
    /// When the file was read for `sha256`, nanoseconds since the epoch.
    hashed: u128,
    sha256: String,
}

/// The digests of one build: loaded from the state directory, saved back when changed.
#[derive(Debug, Default)]
pub struct Digests {
    path: Option<PathBuf>,
    entries: BTreeMap<String, Entry>,
    changed: bool,
    /// Files hashed (read) and files answered from an entry, for the debug log.
    pub hashed: usize,
    pub remembered: usize,
}

fn nanos(secs: i64, nsec: i64) -> u128 {
    (secs.max(0) as u128) * 1_000_000_000 + nsec.max(0) as u128
}

fn now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Digests {
    /// The digests remembered in `state_dir` (none when it has no readable file).
    pub fn load(state_dir: &Path) -> Digests {
        let path = state_dir.join(FILE);
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Digests {
            path: Some(path),
            entries,
            ..Digests::default()
        }
    }

    /// Digests that are neither loaded nor saved: every file is hashed.
    pub fn none() -> Digests {
        Digests::default()
    }

    /// The SHA-256 (hex) of the file's bytes, from its entry when that still holds.
    pub fn sha256(&mut self, path: &Path) -> io::Result<String> {
        let before = std::fs::metadata(path)?;
        let id = format!("{}:{}", before.dev(), before.ino());
        let (mtime, ctime) = (
            nanos(before.mtime(), before.mtime_nsec()),
            nanos(before.ctime(), before.ctime_nsec()),
        );
        if let Some(e) = self.entries.get(&id) {
            if e.size == before.len()
                && e.mtime == mtime
                && e.ctime == ctime
                && ctime + SETTLE < e.hashed
            {
                self.remembered += 1;
                return Ok(e.sha256.clone());
            }
        }
        let hashed = now();
        let mut h = Sha256::new();
        io::copy(&mut std::fs::File::open(path)?, &mut h)?;
        let sha256 = hex(&h.finalize());
        self.hashed += 1;
        // A file that changed while it was read is not remembered.
        let after = std::fs::metadata(path)?;
        if after.ino() == before.ino()
            && after.len() == before.len()
            && nanos(after.ctime(), after.ctime_nsec()) == ctime
        {
            self.entries.insert(
                id,
                Entry {
                    size: before.len(),
                    mtime,
                    ctime,
                    hashed,
                    sha256: sha256.clone(),
                },
            );
            self.changed = true;
        }
        Ok(sha256)
    }

    /// Writes the digests back when any was added (best effort: a failure only means
    /// hashing again next time).
    pub fn save(mut self) {
        let Some(path) = self.path.take().filter(|_| self.changed) else {
            return;
        };
        if self.entries.len() > MAX_ENTRIES {
            let mut by_age: Vec<(u128, String)> = self
                .entries
                .iter()
                .map(|(k, e)| (e.hashed, k.clone()))
                .collect();
            by_age.sort();
            for (_, k) in by_age.iter().take(self.entries.len() - MAX_ENTRIES) {
                self.entries.remove(k);
            }
        }
        let write = || -> io::Result<()> {
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut tmp = tempfile::Builder::new()
                .prefix(".digests-")
                .tempfile_in(dir)?;
            serde_json::to_writer(tmp.as_file_mut(), &self.entries)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::debug!("not saving file digests to {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    /// Pretends every entry was hashed long after its file last changed.
    fn settle(d: &mut Digests) {
        for e in d.entries.values_mut() {
            e.hashed += 10 * SETTLE;
        }
    }

    #[test]
    fn an_unchanged_file_is_read_once_and_an_edit_is_seen() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"one").unwrap();
        let mut d = Digests::load(t.path());
        assert_eq!(d.sha256(&f).unwrap(), sha(b"one"));
        settle(&mut d);
        d.save();

        let mut d = Digests::load(t.path());
        assert_eq!(d.sha256(&f).unwrap(), sha(b"one"));
        assert_eq!((d.hashed, d.remembered), (0, 1));

        // Same size, and the modification time put back: the change time still moves.
        // (`settle` stood for time passing; let a clock tick pass for real too, as file
        // times have the kernel's coarse clock granularity.)
        std::thread::sleep(std::time::Duration::from_millis(50));
        let m = std::fs::metadata(&f).unwrap();
        std::fs::write(&f, b"two").unwrap();
        let times = std::fs::FileTimes::new().set_modified(m.modified().unwrap());
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_times(times)
            .unwrap();
        assert_eq!(d.sha256(&f).unwrap(), sha(b"two"));
        assert_eq!((d.hashed, d.remembered), (1, 1));
    }

    #[test]
    fn a_file_changed_just_before_it_was_hashed_is_hashed_again() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"racy").unwrap();
        let mut d = Digests::load(t.path());
        d.sha256(&f).unwrap();
        d.save();
        let mut d = Digests::load(t.path());
        assert_eq!(d.sha256(&f).unwrap(), sha(b"racy"));
        assert_eq!((d.hashed, d.remembered), (1, 0));
    }

    #[test]
    fn a_replaced_file_and_an_unreadable_store_are_hashed() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"old").unwrap();
        let mut d = Digests::load(t.path());
        d.sha256(&f).unwrap();
        settle(&mut d);
        d.save();
        // A new file under the old name (rename over it, as editors save).
        std::fs::write(t.path().join("g"), b"new").unwrap();
        std::fs::rename(t.path().join("g"), &f).unwrap();
        let mut d = Digests::load(t.path());
        assert_eq!(d.sha256(&f).unwrap(), sha(b"new"));
        assert_eq!(d.hashed, 1);

        std::fs::write(t.path().join(FILE), b"not json").unwrap();
        let mut d = Digests::load(t.path());
        assert_eq!(d.sha256(&f).unwrap(), sha(b"new"));
        assert_eq!(d.hashed, 1);
        let mut none = Digests::none();
        assert_eq!(none.sha256(&f).unwrap(), sha(b"new"));
        none.save();
    }
}
