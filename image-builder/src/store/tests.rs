//! The store against a layout directory; tests/store_registry.rs runs the same against a
//! real registry and ORAS.

use super::*;

fn file(dir: &Path, name: &str, bytes: &[u8]) -> ArtifactFile {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    ArtifactFile {
        path,
        media_type: media::ZFS_SEND.into(),
        name: name.into(),
    }
}

fn annotations(key: &str) -> BTreeMap<String, String> {
    [("org.illumos.image-builder.key".to_string(), key.to_string())].into()
}

#[test]
fn layout_push_and_pull_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let url = StoreUrl::Layout {
        dir: tmp.path().join("store"),
    };
    let store = Store::open(&url).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let files = [
        file(&src, "stream", b"zfs stream bytes"),
        file(&src, "record.json", b"{\"a\":1}"),
    ];
    let digest = store
        .push_artifact("stage-k1", media::STAGE, &files, annotations("k1"))
        .unwrap();
    // The layout is the image-spec one.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("store/index.json")).unwrap())
            .unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"][REF_NAME_ANNOTATION],
        "stage-k1"
    );
    assert!(tmp.path().join("store/oci-layout").is_file());

    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (manifest, got, paths) = store.pull_artifact("stage-k1", &out).unwrap().unwrap();
    assert_eq!(got, digest);
    assert_eq!(manifest.artifact_type.as_deref(), Some(media::STAGE));
    assert_eq!(manifest.annotations["org.illumos.image-builder.key"], "k1");
    assert_eq!(manifest.config.digest, digest_of(EMPTY_CONFIG));
    assert_eq!(std::fs::read(&paths[0]).unwrap(), b"zfs stream bytes");
    assert_eq!(
        std::fs::read(out.join("record.json")).unwrap(),
        b"{\"a\":1}"
    );
    // By digest too; a missing tag is None, not an error.
    assert!(store.manifest(&digest).unwrap().is_some());
    assert!(store.manifest("stage-other").unwrap().is_none());
}

#[test]
fn corrupted_blob_is_refused_and_not_left_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&StoreUrl::Layout { dir: dir.clone() }).unwrap();
    let f = file(tmp.path(), "stream", b"the original bytes");
    store
        .push_artifact("t", media::STAGE, std::slice::from_ref(&f), BTreeMap::new())
        .unwrap();
    let (manifest, _) = store.manifest("t").unwrap().unwrap();
    let layer = &manifest.layers[0];
    // Same size, one byte changed.
    let mut w = layout::open_blob_for_write(&dir, &layer.digest).unwrap();
    w.write_all(b"X").unwrap();
    drop(w);
    let dest = tmp.path().join("fetched");
    let err = store.fetch(layer, &dest).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(
        !dest.exists(),
        "a refused blob was left at {}",
        dest.display()
    );
    // A longer blob than its descriptor says is refused by size.
    std::fs::write(
        dir.join("blobs/sha256").join(&layer.digest[7..]),
        b"the original bytes and more",
    )
    .unwrap();
    let err = store.fetch(layer, &dest).unwrap_err();
    assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
    assert!(!dest.exists());
}

#[test]
fn concurrent_pushes_of_one_key_and_of_different_keys_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let url = StoreUrl::Layout {
        dir: tmp.path().join("store"),
    };
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let same = file(&src, "stream", &vec![7u8; 1 << 20]);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let url = url.clone();
            let same = same.clone();
            let other = file(&src, &format!("s{i}"), format!("stream {i}").as_bytes());
            std::thread::spawn(move || {
                let store = Store::open(&url).unwrap();
                let a = store
                    .push_artifact("same", media::STAGE, &[same], annotations("k"))
                    .unwrap();
                store
                    .push_artifact(&format!("t{i}"), media::STAGE, &[other], BTreeMap::new())
                    .unwrap();
                a
            })
        })
        .collect();
    let digests: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    let store = Store::open(&url).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    store.pull_artifact("same", &out).unwrap().unwrap();
    for i in 0..6 {
        assert!(
            store.manifest(&format!("t{i}")).unwrap().is_some(),
            "t{i} lost"
        );
    }
    // No temporary file is left in the blob directory.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("store/blobs/sha256"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn unsafe_layer_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreUrl::Layout {
        dir: tmp.path().join("store"),
    })
    .unwrap();
    let f = file(tmp.path(), "x", b"x");
    let mut bad = f.clone();
    bad.name = "../escape".into();
    store
        .push_artifact("t", media::STAGE, &[bad], BTreeMap::new())
        .unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let err = store.pull_artifact("t", &out).unwrap_err();
    assert!(err.to_string().contains("title"), "{err}");
    assert!(!tmp.path().join("escape").exists());
}
