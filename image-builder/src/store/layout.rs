//! An OCI image layout directory (image-spec `image-layout.md`): `oci-layout`,
//! `index.json` and `blobs/sha256/HEX`. Tags are the `org.opencontainers.image.ref.name`
//! annotations of `index.json`'s manifests, as ORAS and skopeo write them.
//!
//! Blobs are written to a temporary file in `blobs/sha256/` and renamed into place, so a
//! blob name never holds partial bytes; a blob written by a command (`Backend::stage`) is
//! written into such a temporary file too and renamed once complete and hashed. `index.json` is rewritten the same way while an
//! exclusive `flock(2)` is held on `oci-layout` (a file that never changes), so two
//! pushes at once each add their tag and neither loses the other's.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{Backend, StoreError, MANIFEST_MEDIA_TYPE, REF_NAME_ANNOTATION};
use crate::build::lock::Held;

pub(super) struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub(super) fn open(dir: &Path) -> Result<Layout, StoreError> {
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| StoreError::io(&blobs, e))?;
        let layout = Layout {
            dir: dir.to_path_buf(),
        };
        layout.create_if_missing("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let _lock = layout.lock()?;
        layout.create_if_missing("index.json", br#"{"schemaVersion":2,"manifests":[]}"#)?;
        Ok(layout)
    }

    fn create_if_missing(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.dir.join(name);
        if path.exists() {
            return Ok(());
        }
        self.write_atomic(&self.dir, name, &mut &bytes[..])
    }

    /// Write into a temporary file in `dir`, then rename it to `dir/name`.
    fn write_atomic(&self, dir: &Path, name: &str, body: &mut dyn Read) -> Result<(), StoreError> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(dir)
            .map_err(|e| StoreError::io(dir, e))?;
        io::copy(body, tmp.as_file_mut()).map_err(|e| StoreError::io(tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| StoreError::io(tmp.path(), e))?;
        let dest = dir.join(name);
        tmp.persist(&dest)
            .map_err(|e| StoreError::io(&dest, e.error))?;
        Ok(())
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        if !super::url::valid_digest(digest) {
            return Err(StoreError::Protocol {
                store: self.name(),
                what: format!("blob {digest:?}"),
                reason: "not a sha256 digest".into(),
            });
        }
        Ok(self.dir.join("blobs").join("sha256").join(&digest[7..]))
    }

    fn name(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    /// An exclusive lock on `oci-layout`, released when dropped.
    fn lock(&self) -> Result<Held, StoreError> {
        let path = self.dir.join("oci-layout");
        let f = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| StoreError::io(&path, e.into()))?;
        Ok(Held(f))
    }

    fn read_index(&self) -> Result<Value, StoreError> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
        let index: Value = serde_json::from_slice(&bytes).map_err(|e| StoreError::Protocol {
            store: self.name(),
            what: "index.json".into(),
            reason: format!("does not parse: {e}"),
        })?;
        if !index.get("manifests").is_some_and(Value::is_array) {
            return Err(StoreError::Protocol {
                store: self.name(),
                what: "index.json".into(),
                reason: "has no manifests array".into(),
            });
        }
        Ok(index)
    }
}

impl Backend for Layout {
    fn has_blob(&self, digest: &str) -> Result<bool, StoreError> {
        Ok(self.blob_path(digest)?.is_file())
    }

    fn put_blob(&self, digest: &str, _size: u64, body: &mut dyn Read) -> Result<(), StoreError> {
        let path = self.blob_path(digest)?;
        let dir = path.parent().unwrap_or(&self.dir).to_path_buf();
        self.write_atomic(&dir, &digest[7..], body)
    }

    fn stages_in_place(&self) -> bool {
        true
    }

    /// A temporary file beside the blobs, on the same file system, so that
    /// [`Backend::commit`] is a rename.
    fn stage(&self, _tmp_dir: &Path) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = self.dir.join("blobs").join("sha256");
        tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&dir)
            .map_err(|e| StoreError::io(&dir, e))
    }

    /// The staged file, flushed to stable storage, renamed to its digest (rename(2) is
    /// atomic: the name holds the old bytes or all the new ones); dropped when the blob is
    /// there already.
    fn commit(
        &self,
        staged: tempfile::NamedTempFile,
        digest: &str,
        _size: u64,
    ) -> Result<(), StoreError> {
        let dest = self.blob_path(digest)?;
        if dest.is_file() {
            return Ok(());
        }
        staged
            .as_file()
            .sync_all()
            .map_err(|e| StoreError::io(staged.path(), e))?;
        staged
            .persist(&dest)
            .map_err(|e| StoreError::io(&dest, e.error))?;
        Ok(())
    }

    fn blob_file(&self, digest: &str) -> Result<Option<PathBuf>, StoreError> {
        self.blob_path(digest).map(Some)
    }

    fn get_blob(&self, digest: &str, out: &mut dyn Write) -> Result<(), StoreError> {
        let path = self.blob_path(digest)?;
        let mut f = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        io::copy(&mut f, out).map_err(|e| StoreError::io(&path, e))?;
        Ok(())
    }

    fn put_manifest(&self, tag: &str, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if !self.has_blob(digest)? {
            self.put_blob(digest, bytes.len() as u64, &mut &bytes[..])?;
        }
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let manifests = index["manifests"]
            .as_array_mut()
            .expect("checked in read_index");
        manifests.retain(|m| m["annotations"][REF_NAME_ANNOTATION].as_str() != Some(tag));
        manifests.push(json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": digest,
            "size": bytes.len(),
            "annotations": { REF_NAME_ANNOTATION: tag },
        }));
        let text = serde_json::to_vec_pretty(&index).unwrap_or_default();
        self.write_atomic(&self.dir, "index.json", &mut &text[..])
    }

    fn get_manifest(&self, reference: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let digest = if reference.starts_with("sha256:") {
            reference.to_string()
        } else {
            let index = self.read_index()?;
            let found = index["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .find(|m| m["annotations"][REF_NAME_ANNOTATION].as_str() == Some(reference))
                .and_then(|m| m["digest"].as_str().map(str::to_string));
            match found {
                Some(d) => d,
                None => return Ok(None),
            }
        };
        let path = self.blob_path(&digest)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }
}

/// Open options for tests that corrupt a stored blob in place.
#[cfg(test)]
pub(super) fn open_blob_for_write(dir: &Path, digest: &str) -> io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("blobs").join("sha256").join(&digest[7..]))
}
