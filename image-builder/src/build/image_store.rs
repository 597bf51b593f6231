//! Finished images in the store (`--store`, docs/scaling.md): after a pool, pcfs, ufs, iso
//! or zone build, its output files are pushed as one artifact under `image-GROUP-OUTPUT`,
//! with the lines of `SHA256SUMS` that name them and the build record.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::BuildError;
use sha2::{Digest as _, Sha256};

use super::archive_store::{fetch_files, push_layers, ArchiveRef};
use super::cache;
use super::stage_store::{
    pushed_event, StoreOptions, KEY_ANNOTATION, RECORD_ANNOTATION, TEMPLATE_ANNOTATION,
    VERSION_ANNOTATION,
};
use super::BuildOptions;
use super::Event;
use crate::store::{media, ArtifactFile, Store};
use crate::template::Plan;

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

/// Which image a push is: its group, its output name (`-N`, or the template's name) and,
/// when it has one, its key.
pub struct ImageId<'a> {
    pub group: &'a str,
    pub output_name: &'a str,
    pub key: Option<&'a str>,
}

/// Pushes `outputs` (names in `output_dir`) with their `SHA256SUMS` lines and the build
/// record at `record`. A store failure is a warning, or with `--store-required` an error.
pub fn push(
    opts: &StoreOptions,
    output_dir: &Path,
    image: &ImageId,
    outputs: &[String],
    record: &Path,
    events: &mut dyn FnMut(&Event),
) -> Result<(), BuildError> {
    let ImageId {
        group,
        output_name,
        key,
    } = *image;
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
    // With the build's key, the image is also tagged by it, for a later build with the
    // same inputs to fetch (`fetch`).
    let mut annotations = annotations;
    if let Some(k) = key {
        annotations.insert(KEY_ANNOTATION.to_string(), k.to_string());
    }
    let tag = tag(group, output_name);
    let pushed = Store::open(&opts.url).and_then(|s| {
        let layers = push_layers(&s, &files)?;
        let digest = s.push_manifest(&tag, media::IMAGE, layers.clone(), annotations.clone())?;
        if let Some(k) = key {
            s.push_manifest(&keyed_tag(k), media::IMAGE, layers, annotations)?;
        }
        Ok(digest)
    });
    pushed_event(
        opts,
        &format!("pushing {tag} to {}", opts.url),
        tag,
        pushed,
        events,
    )
}

/// The tag an image build's outputs are also stored under: `image-KEY`, by its key.
pub fn keyed_tag(key: &str) -> String {
    format!("image-{key}")
}

/// An image build's key: what a dataset stage's key hashes (the tool, the target, the
/// steps, the features and the files they read, `cache::inputs`), and the names and
/// formats of the files it writes (`-N`, `--format`).
pub(super) fn key(
    plan: &Plan,
    opts: &BuildOptions,
    output_name: &str,
    output_dir: &Path,
) -> Result<String, BuildError> {
    let inputs = cache::inputs(plan, opts, output_dir, None).map_err(BuildError::Sources)?;
    let formats: Vec<&str> = opts.formats.iter().map(|f| f.extension()).collect();
    let canonical = serde_json::to_vec(&serde_json::json!({
        "stage": inputs.key(),
        "output_name": output_name,
        "formats": formats,
    }))
    .unwrap_or_default();
    Ok(cache::hex(&Sha256::digest(&canonical)))
}

/// Looks the image with `key` up and, on a hit, fetches its files into `output_dir`, each
/// checked against its digest and given the modification time it had: an image build
/// with the same inputs is not run again. `None` on a miss.
pub(super) fn fetch(
    opts: &StoreOptions,
    key: &str,
    output_dir: &Path,
    events: &mut dyn FnMut(&Event),
) -> Result<Option<Vec<String>>, BuildError> {
    let image = ArchiveRef {
        key,
        input_guid: None,
    };
    fetch_files(
        opts,
        &keyed_tag(key),
        media::IMAGE,
        &image,
        output_dir,
        events,
    )
}
