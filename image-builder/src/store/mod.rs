//! A content-addressed store of build stages and images: an OCI registry
//! (`oci://HOST[:PORT]/REPO`, the OCI distribution API) or an OCI image layout directory
//! (`file:///DIR`). What goes in is an OCI artifact: an image manifest with an empty
//! config, one layer per file and annotations; see docs/scaling.md.
//!
//! Every blob is pushed before the manifest that names it, so an interrupted push leaves
//! no tag pointing at a missing blob, and every blob read back is checked against its
//! sha256 digest and size before the caller sees it.

mod auth;
mod layout;
mod registry;
mod stream;
mod tls;
pub mod url;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use stream::{hash_while_written, VerifiedBlob};
pub use url::{ArtifactRef, StoreUrl};

/// The OCI image manifest media type, which artifacts use too (image-spec 1.1).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The empty config of an artifact, and its bytes' digest (`{}`).
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// A layer's file name, as ORAS and other OCI tools read it.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The tag a layout directory's index records for each manifest.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Media types of what image-builder stores.
pub mod media {
    /// A dataset stage: its `zfs send` stream and build record.
    pub const STAGE: &str = "application/vnd.illumos.image-builder.stage.v1";
    /// A stage without an output snapshot, stored as the files it wrote to the output
    /// directory (the archives it packs) and its build record.
    pub const ARCHIVE_STAGE: &str = "application/vnd.illumos.image-builder.archive-stage.v1";
    /// A `zfs send` stream (incremental from the stage's input snapshot, or full).
    pub const ZFS_SEND: &str = "application/vnd.illumos.image-builder.zfs-send.v1";
    /// A build record (`build::record`), JSON.
    pub const RECORD: &str = "application/vnd.illumos.image-builder.record.v1+json";
    /// A finished image build: its output files, `SHA256SUMS` and build record.
    pub const IMAGE: &str = "application/vnd.illumos.image-builder.image.v1";
    /// `SHA256SUMS` lines (`HEX  NAME`) for the image's files.
    pub const SHA256SUMS: &str = "application/vnd.illumos.image-builder.sha256sums.v1";
    /// A whole-disk image (`pool`; `.raw`, and `.partonly` for the ZFS partition alone).
    pub const DISK_RAW: &str = "application/vnd.illumos.image-builder.disk.raw.v1";
    pub const DISK_QCOW2: &str = "application/vnd.illumos.image-builder.disk.qcow2.v1";
    pub const DISK_VMDK: &str = "application/vnd.illumos.image-builder.disk.vmdk.v1";
    pub const DISK_VHD: &str = "application/vnd.illumos.image-builder.disk.vhd.v1";
    /// A FAT file system image (`pcfs`).
    pub const PCFS: &str = "application/vnd.illumos.image-builder.pcfs.v1";
    /// A UFS file system image (`ufs`).
    pub const UFS: &str = "application/vnd.illumos.image-builder.ufs.v1";
    /// An ISO 9660 image (`iso`).
    pub const ISO: &str = "application/vnd.illumos.image-builder.iso.v1";
    /// A gzip'd tar archive (a zone image's root, or a packed archive).
    pub const TAR_GZIP: &str = "application/vnd.illumos.image-builder.tar.v1+gzip";
}

/// Failures of a store. `Unreachable` is the one a build may degrade on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {url}: {why}")]
    BadUrl { url: String, why: String },
    #[error("store {store} cannot be reached: {reason}")]
    Unreachable { store: String, reason: String },
    #[error("store {store}: {what} answered HTTP {status}{}", detail(body))]
    Http {
        store: String,
        what: String,
        status: u16,
        body: String,
    },
    #[error("store {store}: {what}: {reason}")]
    Protocol {
        store: String,
        what: String,
        reason: String,
    },
    #[error("store {store}: {what} has digest {actual}, not {expected}: refused")]
    DigestMismatch {
        store: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("store {store}: {what} is {actual} bytes, not {expected}: refused")]
    SizeMismatch {
        store: String,
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("store {store}: manifest {reference} does not parse: {reason}")]
    BadManifest {
        store: String,
        reference: String,
        reason: String,
    },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{var} {}: {reason}", file.display())]
    Certificates {
        var: &'static str,
        file: PathBuf,
        reason: String,
    },
    #[error("credentials for {host} in {}: {reason}", file.display())]
    Credentials {
        host: String,
        file: PathBuf,
        reason: String,
    },
}

fn detail(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        let cut: String = body.chars().take(300).collect();
        format!(": {cut}")
    }
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A content descriptor (image-spec `descriptor.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// An image manifest (image-spec `manifest.md`), as artifacts use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// The layer whose title annotation is `name`.
    pub fn layer(&self, name: &str) -> Option<&Descriptor> {
        self.layers
            .iter()
            .find(|l| l.annotations.get(TITLE_ANNOTATION).map(String::as_str) == Some(name))
    }
}

/// One file of an artifact: its path, media type, and the name it is stored under.
#[derive(Debug, Clone)]
pub struct ArtifactFile {
    pub path: PathBuf,
    pub media_type: String,
    pub name: String,
}

/// What each kind of store does; `Store` adds hashing, verification and ordering.
trait Backend: Send + Sync {
    fn has_blob(&self, digest: &str) -> Result<bool, StoreError>;
    /// Store `size` bytes read from `body` under `digest` (already computed).
    fn put_blob(&self, digest: &str, size: u64, body: &mut dyn Read) -> Result<(), StoreError>;
    /// Whether [`Backend::stage`] gives a file of the store itself, which
    /// [`Backend::commit`] renames into place (rather than one it then copies).
    fn stages_in_place(&self) -> bool {
        false
    }
    /// A new empty file to write a blob into, which [`Backend::commit`] then stores: by
    /// default a temporary file in `tmp_dir`.
    fn stage(&self, tmp_dir: &Path) -> Result<tempfile::NamedTempFile, StoreError> {
        tempfile::Builder::new()
            .prefix(".stage-")
            .tempfile_in(tmp_dir)
            .map_err(|e| StoreError::io(tmp_dir, e))
    }
    /// Store a staged file, complete, under its `digest` (already computed): by default
    /// upload it with [`Backend::put_blob`], unless the store has the blob. The staged file
    /// is gone afterwards, stored or not.
    fn commit(
        &self,
        staged: tempfile::NamedTempFile,
        digest: &str,
        size: u64,
    ) -> Result<(), StoreError> {
        if self.has_blob(digest)? {
            return Ok(());
        }
        let mut f = staged
            .reopen()
            .map_err(|e| StoreError::io(staged.path(), e))?;
        self.put_blob(digest, size, &mut f)
    }
    /// Whether [`Backend::put_streamed`] takes a blob while it is written.
    fn streams(&self) -> bool {
        false
    }
    /// Store the blob `body` gives, as it gives it, under the digest it has once read to
    /// its end ([`stream::Follower::digest`]); called only when [`Backend::streams`].
    fn put_streamed(&self, body: &mut stream::Follower<'_>) -> Result<(), StoreError> {
        let _ = body;
        Err(StoreError::Protocol {
            store: "this store".into(),
            what: "a streamed upload".into(),
            reason: "not supported".into(),
        })
    }
    /// The blob as a file on this machine (unverified), for a store that keeps its blobs
    /// as files: by default `None`.
    fn blob_file(&self, _digest: &str) -> Result<Option<PathBuf>, StoreError> {
        Ok(None)
    }
    /// Copy the blob's bytes, as stored, into `out` (unverified: `Store` checks them).
    fn get_blob(&self, digest: &str, out: &mut dyn Write) -> Result<(), StoreError>;
    fn put_manifest(&self, tag: &str, digest: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// The manifest's bytes, or `None` when the tag or digest is not there.
    fn get_manifest(&self, reference: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// An open store.
pub struct Store {
    url: StoreUrl,
    backend: Box<dyn Backend>,
}

/// `sha256:HEX` of some bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest and size of a file's bytes.
pub fn digest_file(path: &Path) -> Result<(String, u64), StoreError> {
    let mut f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    stream::hash_reader(&mut f).map_err(|e| StoreError::io(path, e))
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }
    fn finish(self) -> (String, u64) {
        (format!("sha256:{}", hex(&self.hash.finalize())), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Store {
    /// Open a store: a layout directory is created when missing; a registry is asked
    /// for its API version (`GET /v2/`), which also settles authentication.
    pub fn open(url: &StoreUrl) -> Result<Store, StoreError> {
        Store::open_with_env(url, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// [`Store::open`] with the environment (credentials, `SSL_CERT_FILE`, `SSL_CERT_DIR`)
    /// read through `env` instead of from the process's.
    pub fn open_with_env(
        url: &StoreUrl,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Store, StoreError> {
        let backend: Box<dyn Backend> = match url {
            StoreUrl::Layout { dir } => Box::new(layout::Layout::open(dir)?),
            StoreUrl::Registry { .. } => Box::new(registry::Registry::open(url, env)?),
        };
        Ok(Store {
            url: url.clone(),
            backend,
        })
    }

    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// Push a file as a blob (skipped when the store has it) and describe it. Into a store
    /// whose staged files are its own (a layout directory) the file is copied once, hashed
    /// on the way, and the copy renamed to its digest; for another (a registry) it is
    /// hashed first, since the upload names its digest, and uploaded only when missing.
    pub fn push_file(&self, file: &ArtifactFile) -> Result<Descriptor, StoreError> {
        let (digest, size) = if self.backend.stages_in_place() {
            let mut src = File::open(&file.path).map_err(|e| StoreError::io(&file.path, e))?;
            let staged = self.backend.stage(Path::new("."))?;
            let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, staged.as_file()));
            io::copy(&mut src, &mut w)
                .and_then(|_| w.flush())
                .map_err(|e| StoreError::io(staged.path(), e))?;
            let (digest, size) = w.finish();
            self.backend.commit(staged, &digest, size)?;
            (digest, size)
        } else {
            let (digest, size) = digest_file(&file.path)?;
            if !self.backend.has_blob(&digest)? {
                let mut f = File::open(&file.path).map_err(|e| StoreError::io(&file.path, e))?;
                self.backend.put_blob(&digest, size, &mut f)?;
            }
            (digest, size)
        };
        let mut annotations = BTreeMap::new();
        annotations.insert(TITLE_ANNOTATION.to_string(), file.name.clone());
        Ok(Descriptor {
            media_type: file.media_type.clone(),
            digest,
            size,
            annotations,
            artifact_type: None,
        })
    }

    fn push_bytes(&self, bytes: &[u8], media_type: &str) -> Result<Descriptor, StoreError> {
        let digest = digest_of(bytes);
        if !self.backend.has_blob(&digest)? {
            self.backend
                .put_blob(&digest, bytes.len() as u64, &mut &bytes[..])?;
        }
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
            artifact_type: None,
        })
    }

    /// Push an artifact: every file's blob and the empty config first, then the
    /// manifest under `tag`. Returns the manifest's digest. Pushing the same artifact
    /// twice, or from two machines at once, stores the same bytes under the same names.
    pub fn push_artifact(
        &self,
        tag: &str,
        artifact_type: &str,
        files: &[ArtifactFile],
        annotations: BTreeMap<String, String>,
    ) -> Result<String, StoreError> {
        self.check_tag(tag)?;
        let layers = files
            .iter()
            .map(|f| self.push_file(f))
            .collect::<Result<Vec<_>, _>>()?;
        self.push_manifest(tag, artifact_type, layers, annotations)
    }

    fn check_tag(&self, tag: &str) -> Result<(), StoreError> {
        if url::valid_tag(tag) {
            return Ok(());
        }
        Err(StoreError::BadUrl {
            url: format!("{}:{tag}", self.url),
            why: format!("{tag:?} is not a tag"),
        })
    }

    /// Push the empty config and the manifest of an artifact whose layers are pushed
    /// already ([`Store::push_file`], [`Store::push_written`]) under `tag`. Returns the
    /// manifest's digest.
    pub fn push_manifest(
        &self,
        tag: &str,
        artifact_type: &str,
        layers: Vec<Descriptor>,
        annotations: BTreeMap<String, String>,
    ) -> Result<String, StoreError> {
        self.check_tag(tag)?;
        let config = self.push_bytes(EMPTY_CONFIG, EMPTY_MEDIA_TYPE)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_string()),
            artifact_type: Some(artifact_type.to_string()),
            config,
            layers,
            annotations,
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|e| StoreError::BadManifest {
            store: self.url.to_string(),
            reference: tag.to_string(),
            reason: e.to_string(),
        })?;
        let digest = digest_of(&bytes);
        self.backend.put_manifest(tag, &digest, &bytes)?;
        tracing::debug!(store = %self.url, tag, %digest, "pushed");
        Ok(digest)
    }

    /// The manifest under a tag or digest and its digest, or `None` when it is not
    /// there. A manifest asked for by digest must have that digest.
    pub fn manifest(&self, reference: &str) -> Result<Option<(Manifest, String)>, StoreError> {
        let Some(bytes) = self.backend.get_manifest(reference)? else {
            return Ok(None);
        };
        let digest = digest_of(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(StoreError::DigestMismatch {
                store: self.url.to_string(),
                what: "the manifest".into(),
                expected: reference.to_string(),
                actual: digest,
            });
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::BadManifest {
                store: self.url.to_string(),
                reference: reference.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Some((manifest, digest)))
    }

    /// How messages name a blob; refuses a descriptor whose digest is no sha256 one.
    fn blob_what(&self, desc: &Descriptor) -> Result<String, StoreError> {
        let what = match desc.annotations.get(TITLE_ANNOTATION) {
            Some(name) => format!("blob {} ({name})", desc.digest),
            None => format!("blob {}", desc.digest),
        };
        if !url::valid_digest(&desc.digest) {
            return Err(StoreError::Protocol {
                store: self.url.to_string(),
                what,
                reason: "not a sha256 digest".into(),
            });
        }
        Ok(what)
    }

    /// Whether a blob's size and (when known) digest are the descriptor's.
    fn check(
        &self,
        desc: &Descriptor,
        what: &str,
        digest: Option<String>,
        size: u64,
    ) -> Result<(), StoreError> {
        if size != desc.size {
            return Err(StoreError::SizeMismatch {
                store: self.url.to_string(),
                what: what.to_string(),
                expected: desc.size,
                actual: size,
            });
        }
        match digest {
            Some(actual) if actual != desc.digest => Err(StoreError::DigestMismatch {
                store: self.url.to_string(),
                what: what.to_string(),
                expected: desc.digest.clone(),
                actual,
            }),
            _ => Ok(()),
        }
    }

    /// Copy a blob into `dest`, checking its size and digest; on a mismatch `dest` is
    /// removed and the blob refused.
    pub fn fetch(&self, desc: &Descriptor, dest: &Path) -> Result<(), StoreError> {
        let what = self.blob_what(desc)?;
        let file = File::create(dest).map_err(|e| StoreError::io(dest, e))?;
        let mut w = HashingWriter::new(LimitWriter {
            inner: io::BufWriter::with_capacity(1 << 20, file),
            left: desc.size,
        });
        let result = self
            .backend
            .get_blob(&desc.digest, &mut w)
            .and_then(|()| w.flush().map_err(|e| StoreError::io(dest, e)));
        let over = w.inner.left == u64::MAX;
        let (digest, size) = w.finish();
        let checked = match result {
            Err(_) if over => self.check(desc, &what, None, desc.size + 1),
            Err(e) => Err(e),
            Ok(()) => self.check(desc, &what, Some(digest), size),
        };
        if checked.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        checked
    }

    /// Fetch every layer of an artifact into `dir` under its title, verified.
    pub fn pull_artifact(
        &self,
        reference: &str,
        dir: &Path,
    ) -> Result<Option<(Manifest, String, Vec<PathBuf>)>, StoreError> {
        let Some((manifest, digest)) = self.manifest(reference)? else {
            return Ok(None);
        };
        let mut paths = Vec::new();
        for layer in &manifest.layers {
            let name = layer
                .annotations
                .get(TITLE_ANNOTATION)
                .filter(|n| safe_name(n))
                .ok_or_else(|| StoreError::Protocol {
                    store: self.url.to_string(),
                    what: format!("layer {}", layer.digest),
                    reason: "no file name (title annotation), or one with a / or ..".into(),
                })?;
            let path = dir.join(name);
            self.fetch(layer, &path)?;
            paths.push(path);
        }
        Ok(Some((manifest, digest, paths)))
    }
}

/// A plain file name: not empty, no `/`, not `.` or `..`.
pub(crate) fn safe_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".." && !name.contains('\0')
}

/// A writer that fails once more than `left` bytes come (and marks `left` as
/// `u64::MAX`), so a blob larger than its descriptor says is never written in full.
struct LimitWriter<W> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for LimitWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == u64::MAX || buf.len() as u64 > self.left {
            self.left = u64::MAX;
            return Err(io::Error::other("more bytes than the descriptor's size"));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;
