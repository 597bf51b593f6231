//! Finished images in the store (`--store`, docs/scaling.md): after a pool, pcfs, ufs, iso
//! or zone build, its output files are pushed as one artifact under `image-GROUP-OUTPUT`,
//! with the lines of `SHA256SUMS` that name them and the build record.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::BuildError;
use super::stage_store::{
    tolerate, StoreOptions, RECORD_ANNOTATION, TEMPLATE_ANNOTATION, VERSION_ANNOTATION,
};
use super::Event;
use crate::store::{media, ArtifactFile, Store};

/// The tag an image build's outputs are stored under: `image-GROUP-OUTPUT`, with
/// characters a tag cannot hold replaced by `_`.
pub fn tag(group: &str, output_name: &str) -> String {
    let raw = format!("image-{group}-{output_name}");
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect()
}

/// The media type of an output file, by its name.
pub fn media_type(name: &str) -> &'static str {
    let ext = |e: &str| name.ends_with(e);
    if name == "SHA256SUMS" {
        media::SHA256SUMS
    } else if ext(".build.json") {
        media::RECORD
    } else if ext(".raw") || ext(".partonly") {
        media::DISK_RAW
    } else if ext(".qcow2") {
        media::DISK_QCOW2
    } else if ext(".vmdk") {
        media::DISK_VMDK
    } else if ext(".vhd") {
        media::DISK_VHD
    } else if ext(".pcfs") {
        media::PCFS
    } else if ext(".ufs") {
        media::UFS
    } else if ext(".iso") {
        media::ISO
    } else if ext(".tar.gz") || ext(".tgz") {
        media::TAR_GZIP
    } else if ext(".zfs") {
        media::ZFS_SEND
    } else {
        "application/octet-stream"
    }
}

/// The files `outputs` (names in `output_dir`) as artifact layers, by their media type.
pub(super) fn output_files(output_dir: &Path, outputs: &[String]) -> Vec<ArtifactFile> {
    outputs
        .iter()
        .map(|n| ArtifactFile {
            path: output_dir.join(n),
            media_type: media_type(n).into(),
            name: n.clone(),
        })
        .collect()
}

/// Pushes `outputs` (names in `output_dir`) with their `SHA256SUMS` lines and the build
/// record at `record`. A store failure is a warning, or with `--store-required` an error.
pub fn push(
    opts: &StoreOptions,
    output_dir: &Path,
    group: &str,
    output_name: &str,
    outputs: &[String],
    record: &Path,
    events: &mut dyn FnMut(&Event),
) -> Result<(), BuildError> {
    if outputs.is_empty() {
        return Ok(());
    }
    let tmp = tempfile::Builder::new()
        .prefix(".store-")
        .tempdir_in(output_dir)
        .map_err(|e| BuildError::io(output_dir, e))?;
    let sums_path = output_dir.join("SHA256SUMS");
    let sums = std::fs::read_to_string(&sums_path).unwrap_or_default();
    let ours: String = sums
        .lines()
        .filter(|l| {
            let name = l.split_once("  ").map(|(_, n)| n.trim_start_matches('*'));
            name.is_some_and(|n| outputs.iter().any(|o| o == n))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let ours_path = tmp.path().join("SHA256SUMS");
    std::fs::write(&ours_path, &ours).map_err(|e| BuildError::io(&ours_path, e))?;
    let record_text = std::fs::read_to_string(record).map_err(|e| BuildError::io(record, e))?;
    let record_name = record
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "build.json".into());
    let mut files = output_files(output_dir, outputs);
    files.push(ArtifactFile {
        path: ours_path,
        media_type: media::SHA256SUMS.into(),
        name: "SHA256SUMS".into(),
    });
    files.push(ArtifactFile {
        path: record.to_path_buf(),
        media_type: media::RECORD.into(),
        name: record_name,
    });
    let annotations = BTreeMap::from([
        (
            TEMPLATE_ANNOTATION.to_string(),
            format!("{group}/{output_name}"),
        ),
        (
            VERSION_ANNOTATION.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (RECORD_ANNOTATION.to_string(), record_text),
    ]);
    let tag = tag(group, output_name);
    let pushed = Store::open(&opts.url)
        .and_then(|s| s.push_artifact(&tag, media::IMAGE, &files, annotations));
    if let Some(digest) = tolerate(opts, &format!("pushing {tag} to {}", opts.url), pushed)? {
        events(&Event::StorePush {
            store: opts.url.to_string(),
            tag,
            digest,
        });
    }
    Ok(())
}
