//! Large blobs without extra passes over their bytes: a blob written by a command (a `zfs
//! send` stream on its standard output) straight into a file the store provides, hashed
//! while it is written; and a blob read as a file, which for a layout directory is the
//! store's own blob file, checked in place.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::{hex, Descriptor, Store, StoreError, TITLE_ANNOTATION};

/// The read size of a hashing pass: large, so that the pass costs few system calls.
const CHUNK: usize = 1 << 20;

/// How long the hashing thread waits at the end of a file that is still being written.
const NAP: Duration = Duration::from_millis(2);

/// The digest and size of everything `r` gives.
pub(super) fn hash_reader(r: &mut dyn Read) -> io::Result<(String, u64)> {
    let done = AtomicBool::new(true);
    let mut f = Follower::new(r, &done);
    drain(&mut f)
}

/// Reads `f` to its end in large reads; its digest and size.
fn drain(f: &mut Follower<'_>) -> io::Result<(String, u64)> {
    let mut buf = vec![0u8; CHUNK];
    while f.read(&mut buf)? > 0 {}
    Ok(f.digest())
}

/// Sets the flag when dropped, so the follower stops even if `write` panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A reader of a file that a command may still be writing, hashing what it gives: it
/// reads up to the end, naps there while the writer is not done, and ends at the end once
/// it is. A writer that failed makes it fail, so that what reads it does not take a
/// truncated blob for a whole one.
///
/// Each read sees a prefix of what was written: reads and writes of a regular file are
/// atomic with respect to each other (POSIX.1-2017 XSH 2.9.7, "Thread Interactions with
/// Regular File Operations"), and a read at the end of the file returns 0 bytes rather than
/// waiting. The end is final only once the writer is done, that is once the command has
/// exited, so the flag is read before the read that finds the end.
pub struct Follower<'a> {
    file: &'a mut dyn Read,
    /// Set once the writer has returned.
    done: &'a AtomicBool,
    /// Set when it returned a failure.
    failed: Option<&'a AtomicBool>,
    hash: Sha256,
    len: u64,
}

impl<'a> Follower<'a> {
    fn new(file: &'a mut dyn Read, done: &'a AtomicBool) -> Self {
        Follower {
            file,
            done,
            failed: None,
            hash: Sha256::new(),
            len: 0,
        }
    }

    /// The digest and size of what it gave so far (all of it once it has ended).
    pub fn digest(&self) -> (String, u64) {
        (
            format!("sha256:{}", hex(&self.hash.clone().finalize())),
            self.len,
        )
    }
}

impl Read for Follower<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let finished = self.done.load(Ordering::Acquire);
            if finished && self.failed.is_some_and(|f| f.load(Ordering::Acquire)) {
                return Err(io::Error::other("the command writing the blob failed"));
            }
            match self.file.read(buf) {
                Ok(0) if finished => return Ok(0),
                Ok(0) => std::thread::sleep(NAP),
                Ok(n) => {
                    self.hash.update(&buf[..n]);
                    self.len += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs `write`, which writes the file at `path` from its start (a command with its
/// standard output sent there), and meanwhile hashes the file as it grows. The file must
/// exist (empty) before; when it cannot be opened `write` is not run. `Err` is `write`'s
/// failure; `Ok(Err)` a failure to read the file.
pub fn hash_while_written<E>(
    path: &Path,
    write: impl FnOnce() -> Result<(), E>,
) -> Result<io::Result<(String, u64)>, E> {
    Ok(read_while_written(path, write, drain)?.and_then(|r| r))
}

/// Runs `write` as [`hash_while_written`] does, and meanwhile `read`, in a thread, with a
/// [`Follower`] of the file. `Err` is `write`'s failure (then `read` saw the follower fail,
/// not end); `Ok(Err)` a failure to open the file; otherwise what `read` returned.
pub(super) fn read_while_written<E, T: Send>(
    path: &Path,
    write: impl FnOnce() -> Result<(), E>,
    read: impl FnOnce(&mut Follower<'_>) -> T + Send,
) -> Result<io::Result<T>, E> {
    let mut file = match File::open(path) {
        Ok(f) => io::BufReader::with_capacity(CHUNK, f),
        Err(e) => return Ok(Err(e)),
    };
    let done = AtomicBool::new(false);
    // Until `write` returns Ok: a `write` that panics failed too.
    let failed = AtomicBool::new(true);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut f = Follower {
                failed: Some(&failed),
                ..Follower::new(&mut file, &done)
            };
            read(&mut f)
        });
        let written = {
            let _stop = SetOnDrop(&done);
            let w = write();
            failed.store(w.is_err(), Ordering::Release);
            w
        };
        let read = reader
            .join()
            .map_err(|_| io::Error::other("the thread reading the blob panicked"));
        written.map(|()| read)
    })
}

/// A blob whose bytes matched its descriptor, as a file to read: a layout directory's own
/// blob file, or a registry's blob fetched into a temporary file (removed on drop).
#[derive(Debug)]
pub struct VerifiedBlob {
    path: PathBuf,
    _fetched: Option<tempfile::TempPath>,
}

impl VerifiedBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store {
    /// Pushes a blob that `write` writes into the file it is given (a command's standard
    /// output), hashing it while it is written, and describes it. The file is the
    /// backend's: in a layout directory a temporary file beside the blobs, renamed to its
    /// digest once complete; for a registry a temporary file in `tmp_dir`, uploaded while
    /// it is written (in chunks, as it grows) and removed afterwards. `Err` is `write`'s
    /// failure; `Ok(Err)` the store's, and then (like when the store cannot give a file)
    /// nothing is stored.
    pub fn push_written<E>(
        &self,
        tmp_dir: &Path,
        media_type: &str,
        name: &str,
        write: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<Result<Descriptor, StoreError>, E> {
        let staged = match self.backend.stage(tmp_dir) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let path = staged.path().to_path_buf();
        let (digest, size) = if self.backend.streams() {
            // Uploaded as it is written; the staged file goes when `staged` is dropped.
            let upload = |f: &mut Follower<'_>| self.backend.put_streamed(f).map(|()| f.digest());
            match read_while_written(&path, || write(&path), upload)? {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return Ok(Err(e)),
                Err(e) => return Ok(Err(StoreError::io(&path, e))),
            }
        } else {
            let (digest, size) = match hash_while_written(&path, || write(&path))? {
                Ok(d) => d,
                Err(e) => return Ok(Err(StoreError::io(&path, e))),
            };
            if let Err(e) = self.backend.commit(staged, &digest, size) {
                return Ok(Err(e));
            }
            (digest, size)
        };
        Ok(Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            annotations: [(TITLE_ANNOTATION.to_string(), name.to_string())].into(),
            artifact_type: None,
        }))
    }

    /// A blob as a file whose size and digest have been checked against `desc`: in a layout
    /// directory the blob file itself ([`Store::verified_in_place`]); from a registry the
    /// blob fetched into a temporary file in `tmp_dir` ([`Store::fetch_verified`]).
    pub fn open_verified(
        &self,
        desc: &Descriptor,
        tmp_dir: &Path,
    ) -> Result<VerifiedBlob, StoreError> {
        match self.verified_in_place(desc)? {
            Some(blob) => Ok(blob),
            None => self.fetch_verified(desc, tmp_dir),
        }
    }

    /// The blob file itself, read once to check it and not copied, for a store that keeps
    /// its blobs as files on this machine (a layout directory); `None` for one that does
    /// not.
    ///
    /// A layout's blob file is checked in place: blobs are only ever renamed into place
    /// whole under the digest of what they hold, so what is checked is what a later reader
    /// of the same name reads, as long as nothing edits the store's files in place.
    pub fn verified_in_place(&self, desc: &Descriptor) -> Result<Option<VerifiedBlob>, StoreError> {
        let what = self.blob_what(desc)?;
        let Some(path) = self.backend.blob_file(&desc.digest)? else {
            return Ok(None);
        };
        let mut f = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        let len = f.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        self.check(desc, &what, None, len)?;
        // One byte more than the descriptor says, to see a file that grew meanwhile.
        let (digest, size) = hash_reader(&mut (&mut f).take(desc.size.saturating_add(1)))
            .map_err(|e| StoreError::io(&path, e))?;
        self.check(desc, &what, Some(digest), size)?;
        Ok(Some(VerifiedBlob {
            path,
            _fetched: None,
        }))
    }

    /// The blob fetched into a temporary file in `tmp_dir` and checked on the way
    /// ([`Store::fetch`]).
    pub fn fetch_verified(
        &self,
        desc: &Descriptor,
        tmp_dir: &Path,
    ) -> Result<VerifiedBlob, StoreError> {
        let tmp = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempfile_in(tmp_dir)
            .map_err(|e| StoreError::io(tmp_dir, e))?
            .into_temp_path();
        self.fetch(desc, &tmp)?;
        Ok(VerifiedBlob {
            path: tmp.to_path_buf(),
            _fetched: Some(tmp),
        })
    }
}
