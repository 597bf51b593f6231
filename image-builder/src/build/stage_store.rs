//! Dataset stages in a shared store (`--store`, docs/scaling.md): a stage that misses
//! locally is looked up by its cache key and, on a hit, received instead of built; a
//! stage that was built is pushed.
//!
//! A stage is stored as its `zfs send` stream: incremental from the stage's input
//! snapshot (`zfs send -i INPUT OUTPUT`, zfs-send(8)), or full for a first stage. A
//! received snapshot keeps its GUID (a send stream carries the snapshot's GUID and
//! `zfs receive` gives it to the new snapshot), so the next stage's key, which hashes
//! its input snapshot's GUID, is the same on every machine that received it.
//!
//! An unreachable store, or one that fails in any other way, is a warning and the stage
//! builds locally; with `--store-required` it is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cache::{self, KEY_PROPERTY};
use super::error::BuildError;
use super::layout;
use super::record::Record;
use super::{BuildOptions, Env, Event};
use crate::store::{media, ArtifactFile, Store, StoreError, StoreUrl};
use crate::template::{Plan, Target};

/// `--store URL` and `--store-required`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    pub url: StoreUrl,
    /// Fail instead of building locally when the store cannot be used.
    pub required: bool,
}

/// Annotations of a stored stage.
pub const KEY_ANNOTATION: &str = "org.illumos.image-builder.key";
pub const TEMPLATE_ANNOTATION: &str = "org.illumos.image-builder.template";
pub const VERSION_ANNOTATION: &str = "org.illumos.image-builder.version";
pub const INPUT_GUID_ANNOTATION: &str = "org.illumos.image-builder.input-guid";
/// The GUID of the stage's output snapshot, which a receiver's snapshot gets too: what
/// the next stage's key hashes, so `plan -d --store` can tell a stage deep in a chain this
/// machine does not have.
pub const OUTPUT_GUID_ANNOTATION: &str = "org.illumos.image-builder.output-guid";
pub const RECORD_ANNOTATION: &str = "org.illumos.image-builder.record";

/// The stream's and the record's names in a stage artifact.
const STREAM: &str = "stage.zfs";
const RECORD: &str = "build.json";

/// The tag a stage with this cache key is stored under.
pub fn tag(key: &str) -> String {
    format!("stage-{key}")
}

/// What a stage needs from the store: its work dataset's snapshots and its key.
pub(super) struct StageRef<'a> {
    /// The input snapshot (`WORK@IN`), for a stage that has one.
    pub input: Option<&'a str>,
    pub input_guid: Option<&'a str>,
    /// The output snapshot (`WORK@OUT`).
    pub output: &'a str,
    pub key: &'a str,
}

/// A store failure: an error with `--store-required`, else a warning and `None`.
pub(super) fn tolerate<T>(
    opts: &StoreOptions,
    what: &str,
    r: Result<T, StoreError>,
) -> Result<Option<T>, BuildError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(source) if opts.required => Err(BuildError::StoreRequired {
            what: what.to_string(),
            source,
        }),
        Err(e) => {
            tracing::warn!("{what}: {e} (going on without the store)");
            Ok(None)
        }
    }
}

/// A stage's manifest found in the store under its key's tag.
pub(super) struct Found {
    pub store: Store,
    pub tag: String,
    pub manifest: crate::store::Manifest,
    pub digest: String,
}

/// Looks the artifact under `tag` up: `None` on a miss, or (without `--store-required`)
/// when the store cannot be asked.
pub(super) fn lookup(opts: &StoreOptions, tag: &str) -> Result<Option<Found>, BuildError> {
    let tag = tag.to_string();
    let Some(store) = tolerate(opts, "the store", Store::open(&opts.url))? else {
        return Ok(None);
    };
    let what = format!("looking up {tag} in {}", opts.url);
    let Some(found) = tolerate(opts, &what, store.manifest(&tag))? else {
        return Ok(None);
    };
    let Some((manifest, digest)) = found else {
        tracing::info!("{} has no {tag}", opts.url);
        return Ok(None);
    };
    Ok(Some(Found {
        store,
        tag,
        manifest,
        digest,
    }))
}

/// Whether a stored stage's manifest is of this kind, key and input.
pub(super) fn agrees(
    manifest: &crate::store::Manifest,
    artifact_type: &str,
    key: &str,
    input_guid: Option<&str>,
) -> bool {
    let said = |a: &str| manifest.annotations.get(a).map(String::as_str);
    manifest.artifact_type.as_deref() == Some(artifact_type)
        && said(KEY_ANNOTATION) == Some(key)
        && said(INPUT_GUID_ANNOTATION) == input_guid
}

/// The annotations of a stored stage: its key, template, the tool's version, the build
/// record (`record`, its JSON) and the input snapshot's GUID when it has one.
pub(super) fn annotations(
    key: &str,
    input_guid: Option<&str>,
    rec: &Record,
    record: String,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        (KEY_ANNOTATION.to_string(), key.to_string()),
        (
            TEMPLATE_ANNOTATION.to_string(),
            format!("{}/{}", rec.group, rec.name),
        ),
        (
            VERSION_ANNOTATION.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (RECORD_ANNOTATION.to_string(), record),
    ]);
    if let Some(guid) = input_guid {
        annotations.insert(INPUT_GUID_ANNOTATION.to_string(), guid.to_string());
    }
    annotations
}

/// Looks the stage up in the store and receives it on a hit: the stream is verified
/// against its digest (in place in a layout directory, fetched from a registry into the
/// directory `tmp_dir` gives, asked for only then) before `zfs receive` reads it, the
/// received output snapshot is given the key. The work dataset must be at the input
/// snapshot (or, for a first stage, exist empty): `zfs receive -F` rolls it back to its
/// newest snapshot, which an incremental stream's source must be. `Ok(false)` is a miss.
pub(super) fn receive(
    opts: &StoreOptions,
    env: &Env,
    stage: &StageRef,
    tmp_dir: &mut dyn FnMut() -> Result<PathBuf, BuildError>,
    events: &mut dyn FnMut(&Event),
) -> Result<bool, BuildError> {
    let Some(Found {
        store,
        tag,
        manifest,
        digest,
    }) = lookup(opts, &tag(stage.key))?
    else {
        return Ok(false);
    };
    // The tag is the key, but what the manifest says must agree before anything is
    // received.
    let agrees = agrees(&manifest, media::STAGE, stage.key, stage.input_guid);
    let layer = manifest
        .layer(STREAM)
        .filter(|l| l.media_type == media::ZFS_SEND);
    let (true, Some(layer)) = (agrees, layer) else {
        let e = StoreError::Protocol {
            store: opts.url.to_string(),
            what: format!("manifest {tag} ({digest})"),
            reason: "not a stage with this key and input (artifact type, key, input GUID or \
                     stream layer)"
                .into(),
        };
        tolerate::<()>(opts, "the stored stage", Err(e))?;
        return Ok(false);
    };
    // A layout directory's blob is checked in place and received from where it is; a
    // registry's is fetched into tmp_dir and checked on the way.
    let blob = match store.verified_in_place(layer) {
        Ok(Some(b)) => Ok(b),
        Ok(None) => store.fetch_verified(layer, &tmp_dir()?),
        Err(e) => Err(e),
    };
    let Some(blob) = tolerate(opts, &format!("fetching {tag}"), blob)? else {
        return Ok(false);
    };
    // zfs-receive(8): -F rolls back to the newest snapshot first (the input snapshot, or
    // for a first stage the empty file system the stream replaces).
    let received = env.zfs.receive(stage.output, blob.path(), true);
    drop(blob);
    if let Err(e) = received {
        if opts.required {
            return Err(e.into());
        }
        tracing::warn!("receiving {tag}: {e}; building locally");
        return Ok(false);
    }
    env.zfs.set(stage.output, KEY_PROPERTY, stage.key)?;
    events(&Event::StoreHit {
        store: opts.url.to_string(),
        tag,
        digest,
        snapshot: stage.output.to_string(),
    });
    Ok(true)
}

/// Pushes a stage just built: its `zfs send` stream (written into the store's own
/// temporary file, or for a registry into `tmp_dir` and uploaded) and build
/// record, with the key, the template, the tool version, the input GUID and the record in
/// the manifest's annotations.
pub(super) fn push(
    opts: &StoreOptions,
    env: &Env,
    stage: &StageRef,
    rec: &Record,
    tmp_dir: &Path,
    events: &mut dyn FnMut(&Event),
) -> Result<(), BuildError> {
    let tag = tag(stage.key);
    let what = format!("pushing {tag} to {}", opts.url);
    let Some(store) = tolerate(opts, &what, Store::open(&opts.url))? else {
        return Ok(());
    };
    // The stream goes once from `zfs send` into the store's file (see
    // `Store::push_written`), hashed as it is written.
    let sent = store.push_written(tmp_dir, media::ZFS_SEND, STREAM, |path| match stage.input {
        Some(input) => env.zfs.send_incremental(input, stage.output, path),
        None => env.zfs.send(stage.output, path),
    })?;
    let Some(stream) = tolerate(opts, &what, sent)? else {
        return Ok(());
    };
    let record = serde_json::to_string(rec).unwrap_or_default();
    let record_path = tmp_dir.join(RECORD);
    std::fs::write(&record_path, &record).map_err(|e| BuildError::io(&record_path, e))?;
    let mut annotations = annotations(stage.key, stage.input_guid, rec, record);
    // Only `plan` reads it: a stage pushed without it is still a stage.
    match env.zfs.get(stage.output, "guid") {
        Ok(Some(guid)) => {
            annotations.insert(OUTPUT_GUID_ANNOTATION.to_string(), guid);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("pushing {tag} without its output GUID: {e}"),
    }
    let record_file = ArtifactFile {
        path: record_path.clone(),
        media_type: media::RECORD.into(),
        name: RECORD.into(),
    };
    // Both blobs are in the store before the manifest that names them.
    let pushed = store
        .push_file(&record_file)
        .and_then(|r| store.push_manifest(&tag, media::STAGE, vec![stream, r], annotations));
    let _ = std::fs::remove_file(&record_path);
    pushed_event(opts, &what, tag, pushed, events)
}

/// The end of a push: its result tolerated as [`tolerate`] says and, when the manifest is
/// in, the `store_push` event.
pub(super) fn pushed_event(
    opts: &StoreOptions,
    what: &str,
    tag: String,
    pushed: Result<String, StoreError>,
    events: &mut dyn FnMut(&Event),
) -> Result<(), BuildError> {
    if let Some(digest) = tolerate(opts, what, pushed)? {
        events(&Event::StorePush {
            store: opts.url.to_string(),
            tag,
            digest,
        });
    }
    Ok(())
}

/// What `plan -d --store` says of a dataset stage that misses locally.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "store", content = "detail", rename_all = "lowercase")]
pub enum StoreStatus {
    /// The store has the stage under this tag: a build would receive it.
    Hit(String),
    /// The store has no stage under this tag.
    Miss(String),
    /// The store cannot be asked, or the key cannot be known yet, and why.
    Unknown(String),
}

/// Whether the store has the stage `plan` would build. The key needs the input
/// snapshot's GUID, so a stage whose input snapshot is not here yet is `Unknown`.
pub fn status(
    plan: &Plan,
    store: &StoreOptions,
    opts: &BuildOptions,
    zfs: &dyn zfs::Zfs,
) -> Result<Option<StoreStatus>, BuildError> {
    let Some(Target::Dataset(target)) = &plan.target else {
        return Ok(None);
    };
    if target.output_snapshot.is_none() {
        return Ok(None);
    }
    let stage = layout::Stage::new(plan, target, opts);
    let output_dir = if zfs.exists(&stage.layout.root)? {
        stage.output_dir(zfs)?
    } else {
        std::path::PathBuf::from("/nonexistent")
    };
    let opened = match Store::open(&store.url) {
        Ok(s) => s,
        Err(e) => return Ok(Some(StoreStatus::Unknown(e.to_string()))),
    };
    let chain = Chain {
        opts,
        zfs,
        store: &opened,
        output_dir: &output_dir,
    };
    let input_guid = match chain.input_guid(plan, 0)? {
        Ok(g) => g,
        Err(why) => return Ok(Some(StoreStatus::Unknown(why))),
    };
    let key = cache::inputs(plan, opts, &output_dir, input_guid)
        .map_err(BuildError::Sources)?
        .key();
    let tag = tag(&key);
    Ok(Some(match opened.manifest(&tag) {
        Ok(Some(_)) => StoreStatus::Hit(tag),
        Ok(None) => StoreStatus::Miss(tag),
        Err(e) => StoreStatus::Unknown(e.to_string()),
    }))
}

/// What `status` asks to follow a chain of stages back through the store.
struct Chain<'a> {
    opts: &'a BuildOptions,
    zfs: &'a dyn zfs::Zfs,
    store: &'a Store,
    output_dir: &'a Path,
}

/// How deep `status` follows a chain before it gives up (a circle of stages).
const DEEPEST: usize = 64;

impl Chain<'_> {
    /// The GUID of `plan`'s input snapshot: here, or, when this machine lacks it, the one
    /// the store says the stage making it has (a build would receive that stage, and its
    /// snapshot keeps that GUID). `Ok(Err(why))` when it cannot be told.
    fn input_guid(
        &self,
        plan: &Plan,
        depth: usize,
    ) -> Result<Result<Option<String>, String>, BuildError> {
        let Some(Target::Dataset(target)) = &plan.target else {
            return Ok(Ok(None));
        };
        let Some(input) = &target.input_snapshot else {
            return Ok(Ok(None));
        };
        let snap = layout::Stage::new(plan, target, self.opts).snap(input);
        if self.zfs.exists(&snap)? {
            return Ok(Ok(self.zfs.get(&snap, "guid")?));
        }
        let not_here = format!("{snap} is not here, and the key depends on its GUID");
        let mut makers = super::prereq::snapshot_makers(plan, self.opts);
        let (Some(maker), true, true) = (makers.pop(), makers.is_empty(), depth < DEEPEST) else {
            return Ok(Err(format!(
                "{not_here}; no one template of {} makes it",
                plan.group
            )));
        };
        let maker_guid = match self.input_guid(&maker, depth + 1)? {
            Ok(g) => g,
            Err(why) => return Ok(Err(why)),
        };
        let key = cache::inputs(&maker, self.opts, self.output_dir, maker_guid)
            .map_err(BuildError::Sources)?
            .key();
        let maker_name = format!("{}/{}", maker.group, maker.name);
        Ok(match self.store.manifest(&tag(&key)) {
            Ok(Some((m, _))) => match m.annotations.get(OUTPUT_GUID_ANNOTATION) {
                Some(guid) => Ok(Some(guid.clone())),
                None => Err(format!(
                    "{not_here}; the store's {maker_name} does not say its output GUID"
                )),
            },
            Ok(None) => Err(format!(
                "{not_here}; the store does not have {maker_name} ({})",
                tag(&key)
            )),
            Err(e) => Err(e.to_string()),
        })
    }
}
