//! ZFS tier: `--store` between two machines, on a real OpenZFS (run by `scripts/zfs-tier`
//! inside the zfs-vm guest with `IB_ZFS_TIER=1`; elsewhere these tests say they are
//! skipped). The two machines are two scratch pools; the store is an OCI image layout
//! directory inside the guest (`file://`), which takes every code path of a registry
//! store except HTTP, and keeps the guest off the network.
//!
//! Each test is `#[ignore]`d because it needs `/dev/zfs`, which a development host has
//! not: a plain `cargo test` then reports it as ignored instead of passing it untried.
//! `scripts/zfs-tier` (the ZFS tier of `.ci/run`) runs the ignored tests in the guest on
//! real OpenZFS.

use crate::tier;

use image_builder::build::cache::KEY_PROPERTY as KEY;
use image_builder::build::stage_store::{self, StoreOptions, StoreStatus};
use image_builder::build::{self, BuildOptions, Env, Event, Outcome};
use image_builder::host::Host;
use image_builder::store::StoreUrl;
use image_builder::template::Features;
use runner::SystemRunner;
use tier::{tier, ScratchPool};
use zfs::Zfs;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "g/c1.json",
        r#"{ "dataset": { "name": "c", "output_snapshot": "one" }, "steps": [
            { "t": "ensure_file", "file": "/a", "contents": "a\n", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    ),
    (
        "g/c2.json",
        r#"{ "dataset": { "name": "c", "input_snapshot": "one", "output_snapshot": "two" }, "steps": [
            { "t": "ensure_file", "file": "/b", "contents": "b\n", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    ),
    (
        "g/c3.json",
        r#"{ "dataset": { "name": "c", "input_snapshot": "two", "output_snapshot": "three" }, "steps": [
            { "t": "ensure_file", "file": "/c", "contents": "c\n", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    ),
    // An archive stage: no output snapshot, it packs the tree.
    (
        "g/c4.json",
        r#"{ "dataset": { "name": "c", "input_snapshot": "three" }, "steps": [
            { "t": "pack_tar", "name": "c.tar" } ] }"#,
    ),
    // In another group, a first stage on a dataset of its own that unpacks that archive.
    (
        "h/r.json",
        r#"{ "dataset": { "name": "r", "output_snapshot": "done" }, "steps": [
            { "t": "unpack_tar", "name": "c.tar" } ] }"#,
    ),
];

fn build(pool: &ScratchPool, name: &str, store: &StoreUrl) -> (Outcome, Vec<Event>) {
    let (outcome, events) = try_build(pool, name, store, true);
    (outcome.unwrap_or_else(|e| panic!("{name}: {e}")), events)
}

fn try_build(
    pool: &ScratchPool,
    name: &str,
    store: &StoreUrl,
    required: bool,
) -> (Result<Outcome, build::BuildError>, Vec<Event>) {
    let (group, name) = name.split_once('/').unwrap_or(("g", name));
    let p = pool.plan(group, name, &Features::default());
    let opts = BuildOptions {
        store: Some(StoreOptions {
            url: store.clone(),
            required,
        }),
        ..pool.opts()
    };
    let runner = SystemRunner::new();
    let env = Env {
        host: Host::Linux,
        runner: &runner,
        zfs: pool.zfs,
    };
    let mut events = Vec::new();
    let outcome = build::build(&p, &opts, &env, &mut |e| {
        eprintln!("{}", serde_json::to_string(e).unwrap());
        events.push(e.clone());
    });
    (outcome, events)
}

/// What `plan -d DATASET --store URL` says of `g/NAME` on `pool`.
fn status_on(pool: &ScratchPool, name: &str, store: &StoreUrl) -> Option<StoreStatus> {
    let p = pool.plan("g", name, &Features::default());
    let opts = StoreOptions {
        url: store.clone(),
        required: true,
    };
    stage_store::status(&p, &opts, &pool.opts(), pool.zfs).unwrap()
}

fn count(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| f(e)).count()
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn a_second_machine_receives_a_three_stage_chain_without_running_a_step() {
    let Some(zfs) = tier() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = StoreUrl::parse(&format!("file://{}/store", dir.path().display())).unwrap();

    // Machine A builds the chain and pushes every stage.
    let a = ScratchPool::new(&zfs, "iba", 256 << 20);
    a.write_templates(TEMPLATES);
    for name in ["c1", "c2", "c3"] {
        let (outcome, events) = build(&a, name, &store);
        assert_eq!(outcome, Outcome::Built, "{name}");
        assert_eq!(
            count(&events, |e| matches!(e, Event::StorePush { .. })),
            1,
            "{name}: {events:?}"
        );
    }

    // Machine B, an empty pool with the same templates: every stage comes from the store.
    let b = ScratchPool::new(&zfs, "ibb", 256 << 20);
    b.write_templates(TEMPLATES);
    for name in ["c1", "c2", "c3"] {
        let (outcome, events) = build(&b, name, &store);
        assert_eq!(outcome, Outcome::Cached, "{name}: {events:?}");
        assert_eq!(
            count(&events, |e| matches!(e, Event::StepStart { .. })),
            0,
            "{name} ran a step: {events:?}"
        );
        assert_eq!(
            count(&events, |e| matches!(e, Event::StoreHit { .. })),
            1,
            "{name}: {events:?}"
        );
    }
    // The received snapshots have A's GUIDs and keys, and B's tree holds A's files.
    let (wa, wb) = (
        format!("{}/work/g/c", a.dataset()),
        format!("{}/work/g/c", b.dataset()),
    );
    for s in ["one", "two", "three"] {
        for prop in ["guid", "org.illumos.image-builder:key"] {
            let va = zfs.get(&format!("{wa}@{s}"), prop).unwrap();
            let vb = zfs.get(&format!("{wb}@{s}"), prop).unwrap();
            assert!(va.is_some(), "{wa}@{s} has no {prop}");
            assert_eq!(va, vb, "{prop} of @{s}");
        }
    }
    let root = b.mountpoint(&wb);
    for (f, text) in [("a", "a\n"), ("b", "b\n"), ("c", "c\n")] {
        assert_eq!(std::fs::read_to_string(root.join(f)).unwrap(), text);
    }
    // A second build on B is a plain local cache hit: nothing asked of the store.
    let (outcome, events) = build(&b, "c3", &store);
    assert_eq!(outcome, Outcome::Cached);
    assert!(
        events.iter().any(|e| matches!(e, Event::CacheHit { .. })),
        "{events:?}"
    );
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn a_corrupted_stream_in_the_store_is_refused_and_nothing_is_received() {
    let Some(zfs) = tier() else { return };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("store");
    let store = StoreUrl::parse(&format!("file://{}", layout.display())).unwrap();
    let a = ScratchPool::new(&zfs, "iba", 256 << 20);
    a.write_templates(TEMPLATES);
    let (outcome, _) = build(&a, "c1", &store);
    assert_eq!(outcome, Outcome::Built);

    // One byte of the stored stream changed (the build record is the small blob).
    let blobs = layout.join("blobs/sha256");
    let stream = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&stream).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&stream, &bytes).unwrap();

    // --store-required: refused before zfs receive, nothing built, no snapshot.
    let b = ScratchPool::new(&zfs, "ibb", 256 << 20);
    b.write_templates(TEMPLATES);
    let work = format!("{}/work/g/c", b.dataset());
    let (outcome, events) = try_build(&b, "c1", &store, true);
    let e = outcome.unwrap_err().to_string();
    assert!(e.contains("refused"), "{e}");
    assert_eq!(
        count(&events, |e| matches!(e, Event::StepStart { .. })),
        0,
        "{events:?}"
    );
    assert!(!zfs.exists(&format!("{work}@one")).unwrap());

    // Without it the stage builds locally: its snapshot is B's own, not A's.
    let (outcome, events) = try_build(&b, "c1", &store, false);
    assert_eq!(outcome.unwrap(), Outcome::Built, "{events:?}");
    let wa = format!("{}/work/g/c@one", a.dataset());
    assert_ne!(
        zfs.get(&wa, "guid").unwrap(),
        zfs.get(&format!("{work}@one"), "guid").unwrap()
    );
    assert_eq!(
        count(&events, |e| matches!(e, Event::StoreHit { .. })),
        0,
        "{events:?}"
    );
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn a_machine_with_nothing_takes_what_a_build_starts_from_from_the_store() {
    let Some(zfs) = tier() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = StoreUrl::parse(&format!("file://{}/store", dir.path().display())).unwrap();

    // Machine A builds the chain and its archive stage, and pushes each.
    let a = ScratchPool::new(&zfs, "iba", 256 << 20);
    a.write_templates(TEMPLATES);
    for name in ["c1", "c2", "c3", "c4", "h/r"] {
        let (outcome, events) = build(&a, name, &store);
        assert_eq!(outcome, Outcome::Built, "{name}");
        assert_eq!(
            count(&events, |e| matches!(e, Event::StorePush { .. })),
            1,
            "{name}: {events:?}"
        );
    }

    // Machine C has nothing, and builds h/r, which unpacks g/c4's archive: it receives
    // c1-c3 (c4's input) and fetches c4's archive, which keeps its modification time, so
    // h/r has A's key and is received too. No step runs.
    let c = ScratchPool::new(&zfs, "ibc", 256 << 20);
    c.write_templates(TEMPLATES);
    // plan -d --store follows the chain through the store: C would receive A's c3.
    let a_key = zfs
        .get(&format!("{}/work/g/c@three", a.dataset()), KEY)
        .unwrap()
        .unwrap();
    assert_eq!(
        status_on(&c, "c3", &store),
        Some(StoreStatus::Hit(format!("stage-{a_key}")))
    );
    let (outcome, events) = build(&c, "h/r", &store);
    assert_eq!(outcome, Outcome::Cached, "{events:?}");
    let received: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::StoreHit { snapshot, .. } => snapshot.rsplit_once('@').map(|(_, s)| s),
            _ => None,
        })
        .collect();
    assert_eq!(received, ["one", "two", "three", "done"], "{events:?}");
    let fetched: Vec<&Vec<String>> = events
        .iter()
        .filter_map(|e| match e {
            Event::StoreFiles { files, .. } => Some(files),
            _ => None,
        })
        .collect();
    assert_eq!(fetched, [&vec!["c.tar".to_string()]], "{events:?}");
    assert_eq!(
        count(&events, |e| matches!(e, Event::StepStart { .. })),
        0,
        "{events:?}"
    );
    assert_eq!(
        std::fs::read(c.output_dir().join("c.tar")).unwrap(),
        std::fs::read(a.output_dir().join("c.tar")).unwrap()
    );
    let root = c.mountpoint(&format!("{}/work/h/r", c.dataset()));
    for (f, text) in [("a", "a\n"), ("b", "b\n"), ("c", "c\n")] {
        assert_eq!(std::fs::read_to_string(root.join(f)).unwrap(), text);
    }

    // An edit of c2 on C rebuilds c2 and c3 there, and leaves c1 as received from A.
    c.write_templates(&[(
        "g/c2.json",
        r#"{ "dataset": { "name": "c", "input_snapshot": "one", "output_snapshot": "two" }, "steps": [
            { "t": "ensure_file", "file": "/b", "contents": "B\n", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    )]);
    let one = |p: &ScratchPool| zfs.get(&format!("{}/work/g/c@one", p.dataset()), "guid");
    for name in ["c2", "c3"] {
        let (outcome, events) = build(&c, name, &store);
        assert_eq!(outcome, Outcome::Built, "{name}: {events:?}");
        assert_eq!(
            count(&events, |e| matches!(e, Event::StepStart { .. })),
            1,
            "{name}: {events:?}"
        );
        assert_eq!(
            count(&events, |e| matches!(e, Event::StoreHit { .. })),
            0,
            "{name}: {events:?}"
        );
    }
    assert_eq!(one(&c).unwrap(), one(&a).unwrap());
    let tree = c.mountpoint(&format!("{}/work/g/c", c.dataset()));
    assert_eq!(std::fs::read_to_string(tree.join("b")).unwrap(), "B\n");

    // Machine D, with a store that lacks them: the error names the stage to build first,
    // and the fetch leaves no work dataset behind.
    let empty = tempfile::tempdir().unwrap();
    let nothing = StoreUrl::parse(&format!("file://{}/store", empty.path().display())).unwrap();
    let d = ScratchPool::new(&zfs, "ibd", 256 << 20);
    d.write_templates(TEMPLATES);
    match status_on(&d, "c3", &nothing) {
        Some(StoreStatus::Unknown(why)) => assert!(
            why.contains("@one is not here") && why.contains("the store does not have g/c1"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    let (outcome, events) = try_build(&d, "c3", &nothing, false);
    let e = outcome.unwrap_err().to_string();
    assert!(
        e.contains("g/c3 needs") && e.contains("g/c1 is neither here nor in"),
        "{e}"
    );
    assert_eq!(
        count(&events, |e| matches!(e, Event::StepStart { .. })),
        0,
        "{events:?}"
    );
    assert!(!zfs.exists(&format!("{}/work/g/c", d.dataset())).unwrap());
}
