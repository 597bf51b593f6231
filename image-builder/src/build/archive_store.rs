//! Stages without an output snapshot in the store (`--store`, docs/scaling.md). Such a
//! stage (an archive stage: it packs the tree into the output directory) leaves nothing in
//! its work dataset worth sending; what later builds use is the files it wrote. So it is
//! stored as those files and its build record, under the same `stage-KEY` tag as a stage
//! with a snapshot (its key hashes its input snapshot's GUID just the same), with the
//! artifact type [`media::ARCHIVE_STAGE`]. A local miss whose key the store has fetches the
//! files, each checked against its digest, instead of running the steps.

use std::path::Path;

use super::error::BuildError;
use super::image_store::output_files;
use super::record::Record;
use super::stage_store::{
    agrees, annotations, lookup, pushed_event, tag, tolerate, Found, StoreOptions,
};
use super::Event;
use crate::store::{media, safe_name, ArtifactFile, Store, StoreError, TITLE_ANNOTATION};

/// A file layer's modification time, `SECONDS.NANOSECONDS` since the epoch. A later
/// stage's key stands for an archive it reads by its size and modification time (not its
/// bytes, `cache.rs`), so a fetched archive gets the time it had where it was packed:
/// then the stages that unpack it have the same key on every machine, and come from the
/// store too.
const MTIME_ANNOTATION: &str = "org.illumos.image-builder.mtime";

/// Pushes each file as a layer, annotated with its modification time.
pub(super) fn push_layers(
    store: &Store,
    files: &[ArtifactFile],
) -> Result<Vec<crate::store::Descriptor>, StoreError> {
    files
        .iter()
        .map(|f| {
            let mut layer = store.push_file(f)?;
            if let Some(t) = mtime_of(&f.path) {
                layer.annotations.insert(MTIME_ANNOTATION.to_string(), t);
            }
            Ok(layer)
        })
        .collect()
}

/// The modification time of `path` as [`MTIME_ANNOTATION`] writes it.
fn mtime_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(format!("{}.{:09}", m.mtime(), m.mtime_nsec()))
}

/// Gives `path` the modification time `value` ([`MTIME_ANNOTATION`]); a value that is not
/// one is ignored (the file keeps the time of its fetch).
fn set_mtime(path: &Path, value: &str) -> Result<(), BuildError> {
    let Some((secs, nanos)) = value.split_once('.') else {
        return Ok(());
    };
    let (Ok(secs), Ok(nanos)) = (secs.parse::<u64>(), nanos.parse::<u32>()) else {
        return Ok(());
    };
    if nanos >= 1_000_000_000 {
        return Ok(());
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .map_err(|e| BuildError::io(path, e))
}

/// The build record's name in the artifact; the other layers are the stage's files.
const RECORD: &str = "build.json";

/// A stage's identity in the store.
pub(super) struct ArchiveRef<'a> {
    pub key: &'a str,
    pub input_guid: Option<&'a str>,
}

/// Looks the stage up and, on a hit, fetches its files into `output_dir`: each into a
/// temporary directory there, checked against its digest, then renamed into place, so a
/// failed fetch leaves no file half written. Returns the files' names, or `None` on a miss
/// (or, without `--store-required`, when the store fails).
pub(super) fn fetch(
    opts: &StoreOptions,
    stage: &ArchiveRef,
    output_dir: &Path,
    events: &mut dyn FnMut(&Event),
) -> Result<Option<Vec<String>>, BuildError> {
    fetch_files(
        opts,
        &tag(stage.key),
        media::ARCHIVE_STAGE,
        stage,
        output_dir,
        events,
    )
}

/// [`fetch`] of the artifact under `tag` of type `artifact_type` (an archive stage's, or
/// an image's by its key): every layer but the build record and `SHA256SUMS`, which the
/// build writes itself.
pub(super) fn fetch_files(
    opts: &StoreOptions,
    tag: &str,
    artifact_type: &str,
    stage: &ArchiveRef,
    output_dir: &Path,
    events: &mut dyn FnMut(&Event),
) -> Result<Option<Vec<String>>, BuildError> {
    let Some(Found {
        store,
        tag,
        manifest,
        digest,
    }) = lookup(opts, tag)?
    else {
        return Ok(None);
    };
    let title = |l: &crate::store::Descriptor| l.annotations.get(TITLE_ANNOTATION).cloned();
    let files: Vec<_> = manifest
        .layers
        .iter()
        .filter(|l| {
            title(l).is_none_or(|t| t != RECORD && t != "SHA256SUMS" && !t.ends_with(".build.json"))
        })
        .collect();
    let agrees = agrees(&manifest, artifact_type, stage.key, stage.input_guid)
        && !files.is_empty()
        && files
            .iter()
            .all(|l| title(l).is_some_and(|n| safe_name(&n)));
    if !agrees {
        let e = StoreError::Protocol {
            store: opts.url.to_string(),
            what: format!("manifest {tag} ({digest})"),
            reason: "not an archive stage with this key and input (artifact type, key, input \
                     GUID, or files with plain names)"
                .into(),
        };
        tolerate::<()>(opts, "the stored stage", Err(e))?;
        return Ok(None);
    }
    let tmp = tempfile::Builder::new()
        .prefix(".store-")
        .tempdir_in(output_dir)
        .map_err(|e| BuildError::io(output_dir, e))?;
    let mut names = Vec::new();
    for layer in files {
        let name = title(layer).unwrap_or_default();
        let path = tmp.path().join(&name);
        let fetched = store.fetch(layer, &path);
        if tolerate(opts, &format!("fetching {name} of {tag}"), fetched)?.is_none() {
            return Ok(None);
        }
        if let Some(t) = layer.annotations.get(MTIME_ANNOTATION) {
            set_mtime(&path, t)?;
        }
        names.push(name);
    }
    for name in &names {
        let (from, to) = (tmp.path().join(name), output_dir.join(name));
        std::fs::rename(&from, &to).map_err(|e| BuildError::io(&to, e))?;
    }
    events(&Event::StoreFiles {
        store: opts.url.to_string(),
        tag,
        digest,
        files: names.clone(),
    });
    Ok(Some(names))
}

/// Pushes the files a stage without an output snapshot wrote (`outputs`, names in
/// `output_dir`) and its build record, with the key, the template, the tool version, the
/// input GUID and the record in the manifest's annotations.
pub(super) fn push(
    opts: &StoreOptions,
    stage: &ArchiveRef,
    rec: &Record,
    output_dir: &Path,
    outputs: &[String],
    events: &mut dyn FnMut(&Event),
) -> Result<(), BuildError> {
    if outputs.is_empty() {
        return Ok(());
    }
    let tag = tag(stage.key);
    let what = format!("pushing {tag} to {}", opts.url);
    let Some(store) = tolerate(opts, &what, Store::open(&opts.url))? else {
        return Ok(());
    };
    let tmp = tempfile::Builder::new()
        .prefix(".store-")
        .tempdir_in(output_dir)
        .map_err(|e| BuildError::io(output_dir, e))?;
    let record = serde_json::to_string(rec).unwrap_or_default();
    let record_path = tmp.path().join(RECORD);
    std::fs::write(&record_path, &record).map_err(|e| BuildError::io(&record_path, e))?;
    let mut files = output_files(output_dir, outputs);
    files.push(ArtifactFile {
        path: record_path,
        media_type: media::RECORD.into(),
        name: RECORD.into(),
    });
    let annotations = annotations(stage.key, stage.input_guid, rec, record);
    let pushed = push_layers(&store, &files)
        .and_then(|layers| store.push_manifest(&tag, media::ARCHIVE_STAGE, layers, annotations));
    pushed_event(opts, &what, tag, pushed, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreUrl;

    fn record() -> Record {
        Record {
            group: "g".into(),
            name: "c4".into(),
            output_name: "c4".into(),
            host: "illumos".into(),
            started: 0,
            seconds: 1.0,
            cache: "miss".into(),
            key: Some("k".into()),
            inputs: None,
            steps: Vec::new(),
            outputs: vec!["c.tar".into(), "c.tar.gz".into()],
        }
    }

    /// A layout-directory store, a machine's output directory with the two archives, and
    /// the stage pushed from it.
    fn pushed(required: bool) -> (tempfile::TempDir, StoreOptions, Vec<Event>) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("c.tar"), vec![7u8; 100_000]).unwrap();
        std::fs::write(out.join("c.tar.gz"), b"gz").unwrap();
        // A time of its own, nanoseconds included, that a fetch now could not have.
        let then = std::time::UNIX_EPOCH + std::time::Duration::new(1_000_000_000, 123_456_789);
        let f = std::fs::File::options()
            .write(true)
            .open(out.join("c.tar"))
            .unwrap();
        f.set_modified(then).unwrap();
        let url = format!("file://{}/store", dir.path().display());
        let opts = StoreOptions {
            url: StoreUrl::parse(&url).unwrap(),
            required,
        };
        let stage = ArchiveRef {
            key: "k",
            input_guid: Some("123"),
        };
        let mut events = Vec::new();
        let names = ["c.tar".to_string(), "c.tar.gz".to_string()];
        push(&opts, &stage, &record(), &out, &names, &mut |e| {
            events.push(e.clone())
        })
        .unwrap();
        (dir, opts, events)
    }

    fn fetch_into(
        opts: &StoreOptions,
        key: &str,
        guid: Option<&str>,
        out: &Path,
    ) -> (Result<Option<Vec<String>>, BuildError>, Vec<Event>) {
        std::fs::create_dir_all(out).unwrap();
        let mut events = Vec::new();
        let stage = ArchiveRef {
            key,
            input_guid: guid,
        };
        let r = fetch(opts, &stage, out, &mut |e| events.push(e.clone()));
        (r, events)
    }

    /// The names in a directory, hidden ones too.
    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_pushed_archive_stage_is_fetched_on_another_machine_byte_for_byte() {
        let (dir, opts, events) = pushed(true);
        assert!(
            matches!(&events[..], [Event::StorePush { tag, .. }] if tag == "stage-k"),
            "{events:?}"
        );
        let b = dir.path().join("b");
        let (r, events) = fetch_into(&opts, "k", Some("123"), &b);
        assert_eq!(r.unwrap().unwrap(), ["c.tar", "c.tar.gz"]);
        assert!(
            matches!(&events[..], [Event::StoreFiles { files, .. }] if files.len() == 2),
            "{events:?}"
        );
        for n in ["c.tar", "c.tar.gz"] {
            assert_eq!(
                std::fs::read(b.join(n)).unwrap(),
                std::fs::read(dir.path().join("a").join(n)).unwrap()
            );
        }
        // Only the files: no record, no temporary directory.
        assert_eq!(listing(&b), ["c.tar", "c.tar.gz"]);
        // Each with the modification time it had where it was packed, to the nanosecond.
        for n in ["c.tar", "c.tar.gz"] {
            let (a, f) = (dir.path().join("a").join(n), b.join(n));
            assert_eq!(mtime_of(&f), mtime_of(&a), "{n}");
        }
    }

    #[test]
    fn another_key_or_input_is_a_miss_or_a_refusal() {
        let (dir, opts, _) = pushed(true);
        let b = dir.path().join("b");
        // Another key: no such tag.
        let (r, events) = fetch_into(&opts, "other", Some("123"), &b);
        assert_eq!(r.unwrap(), None);
        assert!(events.is_empty());
        // The key with another input GUID: the manifest does not agree.
        let (r, _) = fetch_into(&opts, "k", Some("456"), &b);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("not an archive stage with this key and input"),
            "{e}"
        );
        assert_eq!(listing(&b), Vec::<String>::new());
    }

    #[test]
    fn a_corrupted_file_is_refused_and_nothing_is_left_in_the_output_directory() {
        let (dir, opts, _) = pushed(true);
        let blobs = dir.path().join("store/blobs/sha256");
        let big = std::fs::read_dir(&blobs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap();
        let mut bytes = std::fs::read(&big).unwrap();
        bytes[50_000] ^= 1;
        std::fs::write(&big, bytes).unwrap();
        let b = dir.path().join("b");
        let (r, events) = fetch_into(&opts, "k", Some("123"), &b);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("--store-required") && e.contains("c.tar"), "{e}");
        assert!(events.is_empty());
        assert_eq!(listing(&b), Vec::<String>::new());
        // Without --store-required it is a miss: the stage builds here.
        let opts = StoreOptions {
            required: false,
            ..opts
        };
        let (r, _) = fetch_into(&opts, "k", Some("123"), &b);
        assert_eq!(r.unwrap(), None);
        assert_eq!(listing(&b), Vec::<String>::new());
    }
}
