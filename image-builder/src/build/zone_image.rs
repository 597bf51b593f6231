//! The outputs of a zone build: the root tarball, the `zfs send` stream and its manifest.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::cache::hex;
use super::error::BuildError;
use crate::archive::{self, Compression, Compressor, PackOptions};
use crate::template::model::Zone;

/// The manifest written beside a stream, in the form of an imgadm (SmartOS/Triton) image
/// manifest (version 2), so `imgadm` and tools that read its manifests can use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Manifest {
    pub v: u32,
    pub uuid: String,
    pub name: String,
    pub version: String,
    /// `zone-dataset`, or `lx-dataset` for the lx brand.
    #[serde(rename = "type")]
    pub kind: String,
    pub os: String,
    /// Creation time, ISO 8601 in UTC.
    pub published_at: String,
    pub requirements: Requirements,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Requirements {
    pub brand: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ManifestFile {
    /// The stream file's name in the output directory.
    pub path: String,
    pub sha1: String,
    pub sha256: String,
    pub size: u64,
    pub compression: String,
}

fn compression_of(z: &Zone) -> Compression {
    match z.compression_name() {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "xz" => Compression::Xz,
        _ => Compression::None,
    }
}

/// `GROUP-OUTPUT.zone.tar[.gz|.zst|.xz]`.
pub fn tarball_name(prefix: &str, z: &Zone) -> String {
    format!("{prefix}.zone.tar{}", z.suffix())
}

/// `GROUP-OUTPUT.zfs[.gz|.zst|.xz]`.
pub fn stream_name(prefix: &str, z: &Zone) -> String {
    format!("{prefix}.zfs{}", z.suffix())
}

pub fn manifest_name(prefix: &str) -> String {
    format!("{prefix}.manifest.json")
}

/// Packs the root's contents (entries `./`, `./etc`, ...: what `zoneadm install -a`
/// unpacks into the zone's `root`), numeric owners and full modes kept.
pub fn write_tarball(
    root: &confine::Root,
    path: &Path,
    source_date_epoch: Option<i64>,
) -> Result<(), BuildError> {
    let opts = PackOptions {
        source_date_epoch,
        ..PackOptions::default()
    };
    archive::pack(root, path, &opts, &mut |_| {}).map_err(|source| BuildError::Pack {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// Compresses the raw stream `raw` into `path` (via `path.partial`, renamed into place).
pub fn compress_stream(raw: &Path, path: &Path, z: &Zone) -> Result<(), BuildError> {
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let result = (|| -> io::Result<()> {
        let mut input = File::open(raw)?;
        let out = File::create(&partial)?;
        let c = compression_of(z);
        let mut w = Compressor::new(c, out, c.default_level(), archive::all_cores())?;
        io::copy(&mut input, &mut w)?;
        w.finish()?.sync_all()?;
        std::fs::rename(&partial, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        BuildError::io(path, e)
    })
}

/// Size, SHA-1 and SHA-256 of a file, in one read.
pub fn digests(path: &Path) -> Result<(u64, String, String), BuildError> {
    let mut f = File::open(path).map_err(|e| BuildError::io(path, e))?;
    let mut s1 = Sha1::new();
    let mut s256 = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| BuildError::io(path, e))?;
        if n == 0 {
            break;
        }
        s1.update(&buf[..n]);
        s256.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex(&s1.finalize()), hex(&s256.finalize())))
}

/// The manifest for the stream at `stream`.
pub fn manifest(z: &Zone, uuid: &str, stream: &Path, created: i64) -> Result<Manifest, BuildError> {
    let (size, sha1, sha256) = digests(stream)?;
    let lx = z.brand == "lx";
    Ok(Manifest {
        v: 2,
        uuid: uuid.to_string(),
        name: z.name.clone(),
        version: z
            .version
            .clone()
            .unwrap_or_else(|| crate::template::zone::DEFAULT_VERSION.to_string()),
        kind: if lx { "lx-dataset" } else { "zone-dataset" }.to_string(),
        os: if lx { "linux" } else { "illumos" }.to_string(),
        published_at: iso8601(created),
        requirements: Requirements {
            brand: z.brand.clone(),
        },
        files: vec![ManifestFile {
            path: stream
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha1,
            sha256,
            size,
            compression: z.compression_name().to_string(),
        }],
    })
}

pub fn write_manifest(m: &Manifest, path: &Path) -> Result<(), BuildError> {
    let mut bytes = serde_json::to_vec_pretty(m).unwrap_or_default();
    bytes.push(b'\n');
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    (|| -> io::Result<()> {
        let mut f = File::create(&partial)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&partial, path)
    })()
    .map_err(|e| BuildError::io(path, e))
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso8601(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from a day count (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59Z");
    }
}
