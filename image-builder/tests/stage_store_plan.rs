//! `plan -d --store`: whether the store has the stage a build would take, following a
//! chain this machine lacks through the store (recorded ZFS, a real layout directory).

use crate::stage_store::{seed, seed_store, World, GUID_ONE, WORK};

use image_builder::build::stage_store;
use image_builder::store::media;

#[test]
fn plan_asks_the_store_for_the_key_a_build_would_have() {
    use image_builder::build::stage_store::StoreStatus;
    let w = World::new(&["one"]);
    let opts = w.opts(&w.store_url(), false);
    let store = opts.store.clone().unwrap();
    let zfs = zfs::ZfsCli::new(&w, zfs::ZfsTools::in_dir("/sbin"));
    let key = w.key("s2", Some(GUID_ONE));
    let tag = stage_store::tag(&key);
    let status = |name: &str| stage_store::status(&w.plan(name), &store, &opts, &zfs).unwrap();
    assert_eq!(status("s2"), Some(StoreStatus::Miss(tag.clone())));
    seed_store(&w, &key, b"S2");
    assert_eq!(status("s2"), Some(StoreStatus::Hit(tag)));
    assert_eq!(
        status("s1"),
        Some(StoreStatus::Miss(stage_store::tag(&w.key("s1", None))))
    );
    // A machine without stage 1 follows the chain through the store: while the store
    // lacks stage 1 it cannot know stage 2's key.
    let empty = World::new(&[]);
    let zfs = zfs::ZfsCli::new(&empty, zfs::ZfsTools::in_dir("/sbin"));
    let got = stage_store::status(&empty.plan("s2"), &store, &opts, &zfs).unwrap();
    let s1_tag = stage_store::tag(&empty.key("s1", None));
    assert_eq!(
        got,
        Some(StoreStatus::Unknown(format!(
            "{WORK}@one is not here, and the key depends on its GUID; the store does not \
             have g/s1 ({s1_tag})"
        )))
    );
    // Stage 1 stored without its output GUID (as an older version pushed it): still not.
    let seeded = seed(&w, &empty.key("s1", None), None, b"S1");
    let got = stage_store::status(&empty.plan("s2"), &store, &opts, &zfs).unwrap();
    assert_eq!(
        got,
        Some(StoreStatus::Unknown(format!(
            "{WORK}@one is not here, and the key depends on its GUID; the store's g/s1 does \
             not say its output GUID"
        )))
    );
    // With it, stage 2's key is the one a build would have after receiving stage 1.
    let (mut m, _) = seeded.manifest(&s1_tag).unwrap().unwrap();
    m.annotations.insert(
        stage_store::OUTPUT_GUID_ANNOTATION.to_string(),
        GUID_ONE.to_string(),
    );
    seeded
        .push_manifest(&s1_tag, media::STAGE, m.layers, m.annotations)
        .unwrap();
    let got = stage_store::status(&empty.plan("s2"), &store, &opts, &zfs).unwrap();
    assert_eq!(got, Some(StoreStatus::Hit(stage_store::tag(&key))));
    // Nothing here changed ZFS.
    assert!(w.actions().is_empty(), "{:?}", w.actions());
    assert!(empty.actions().is_empty(), "{:?}", empty.actions());
}
