//! Labelled volumes (the NoCloud `cidata` and OpenStack `config-2` disks) read in
//! userland, so no mount, no kernel file system module and no root-only tool is needed:
//! FAT12/16/32 and ISO9660 (with Rock Ridge or Joliet names).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{fat::Fat, iso::Iso};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt {kind} volume: {message}")]
    Corrupt { kind: &'static str, message: String },
}

pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// A readable file system image.
pub enum Volume<R: ReadSeek> {
    Fat(Fat<R>),
    Iso(Iso<R>),
}

impl<R: ReadSeek> Volume<R> {
    /// Recognises ISO9660 or FAT; `Ok(None)` for anything else.
    pub fn open(mut r: R) -> Result<Option<Volume<R>>, VolumeError> {
        if Iso::<R>::probe(&mut r)? {
            return Ok(Some(Volume::Iso(Iso::open(r)?)));
        }
        if Fat::<R>::probe(&mut r)? {
            return Ok(Some(Volume::Fat(Fat::open(r)?)));
        }
        Ok(None)
    }

    pub fn label(&self) -> String {
        match self {
            Volume::Fat(f) => f.label(),
            Volume::Iso(i) => i.label(),
        }
    }

    /// A file's bytes by path (`/`-separated, names compared without case), or `None`.
    pub fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, VolumeError> {
        match self {
            Volume::Fat(f) => f.read(path),
            Volume::Iso(i) => i.read(path),
        }
    }
}

pub(crate) fn read_at<R: ReadSeek>(r: &mut R, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    r.seek(SeekFrom::Start(off))?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Candidate devices: each configured path that is a file or block device, and for a
/// directory (like `/dev/dsk`) its whole-disk entries (`p0` on x86 illumos).
pub fn candidates(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let Ok(rd) = std::fs::read_dir(p) else {
                continue;
            };
            let mut v: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|e| e.to_string_lossy().ends_with("p0"))
                .collect();
            v.sort();
            out.extend(v);
        } else if p.exists() {
            out.push(p.clone());
        }
    }
    out
}

/// The first volume among `paths` whose label is `label` (case-insensitive).
pub fn find_labelled(
    paths: &[PathBuf],
    label: &str,
) -> Result<Option<(PathBuf, Volume<std::fs::File>)>, VolumeError> {
    for p in candidates(paths) {
        let Ok(f) = std::fs::File::open(&p) else {
            continue;
        };
        match Volume::open(f) {
            Ok(Some(v)) if v.label().eq_ignore_ascii_case(label) => return Ok(Some((p, v))),
            Ok(_) => {}
            Err(e) => tracing::debug!("{}: {e}", Path::new(&p).display()),
        }
    }
    Ok(None)
}
