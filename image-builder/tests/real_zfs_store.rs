//! ZFS tier: `--store` between two machines, on a real OpenZFS (run by `scripts/zfs-tier`
//! inside the zfs-vm guest with `IB_ZFS_TIER=1`; elsewhere these tests say they are
//! skipped). The two machines are two scratch pools; the store is an OCI image layout
//! directory inside the guest (`file://`), which takes every code path of a registry
//! store except HTTP, and keeps the guest off the network.

use crate::tier;

use image_builder::build::stage_store::StoreOptions;
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
];

fn build(pool: &ScratchPool, name: &str, store: &StoreUrl) -> (Outcome, Vec<Event>) {
    let p = pool.plan("g", name, &Features::default());
    let opts = BuildOptions {
        store: Some(StoreOptions {
            url: store.clone(),
            required: true,
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
    })
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    (outcome, events)
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
