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

/// The `.partial-*` files in a layout's blob directory.
fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".partial-"))
        .collect()
}

#[test]
fn a_written_blob_is_hashed_as_it_is_written_and_named_only_once_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&StoreUrl::Layout { dir: dir.clone() }).unwrap();
    let pieces: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 300_000]).collect();
    let whole = pieces.concat();
    let digest = digest_of(&whole);
    let final_path = dir.join("blobs/sha256").join(&digest[7..]);
    let desc = store
        .push_written(tmp.path(), media::ZFS_SEND, "stage.zfs", |path| {
            // The store's file is a temporary one beside the blobs (so that the last step
            // is a rename), and the digest's name does not exist until it is complete.
            assert_eq!(path.parent(), Some(dir.join("blobs/sha256").as_path()));
            let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
            for p in &pieces {
                assert!(
                    !final_path.exists(),
                    "the blob was named before it was whole"
                );
                assert_eq!(partials(&dir).len(), 1);
                f.write_all(p)?;
                f.flush()?;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert!(!final_path.exists());
            Ok::<(), io::Error>(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(desc.digest, digest);
    assert_eq!(desc.size, whole.len() as u64);
    assert_eq!(desc.annotations[TITLE_ANNOTATION], "stage.zfs");
    assert_eq!(std::fs::read(&final_path).unwrap(), whole);
    assert!(partials(&dir).is_empty());

    // The same blob again: the new file is dropped, the stored one stays.
    let again = store
        .push_written(tmp.path(), media::ZFS_SEND, "stage.zfs", |path| {
            std::fs::write(path, &whole)
        })
        .unwrap()
        .unwrap();
    assert_eq!(again, desc);
    assert!(partials(&dir).is_empty());

    // A write that fails leaves no blob and no temporary file; its error is the caller's.
    let err = store
        .push_written(tmp.path(), media::ZFS_SEND, "x", |path| {
            std::fs::write(path, b"half a stream")?;
            Err::<(), io::Error>(io::Error::other("zfs send failed"))
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "zfs send failed");
    assert!(!dir
        .join("blobs/sha256")
        .join(&digest_of(b"half a stream")[7..])
        .exists());
    assert!(partials(&dir).is_empty());

    // The manifest goes after, and the stream reads back verified in place.
    store
        .push_manifest("t", media::STAGE, vec![desc.clone()], BTreeMap::new())
        .unwrap();
    let (m, _) = store.manifest("t").unwrap().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let blob = store.open_verified(&m.layers[0], &out).unwrap();
    assert_eq!(blob.path(), final_path, "a layout blob is read where it is");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "it was copied");
}

#[test]
fn hashing_a_file_a_child_process_writes_slowly_matches_sha256sum() {
    use runner::{Cmd, Runner, SystemRunner};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("stream");
    std::fs::File::create(&path).unwrap();
    // Pieces of odd sizes with naps between them, so the hashing thread reaches the end of
    // the file many times before the writer is done.
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do \
                  head -c $((i * 77777)) /dev/urandom; sleep 0.03; done";
    let r = SystemRunner::new();
    let (digest, size) = hash_while_written(&path, || {
        r.run(&Cmd::new("/bin/sh").args(["-c", script]).stdout_to(&path))
            .map(|_| ())
    })
    .unwrap()
    .unwrap();
    assert_eq!(size, 77777 * 55);
    let sum = r.run(&Cmd::new("sha256sum").arg(&path)).unwrap();
    let hex = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(digest, format!("sha256:{hex}"));
}

#[test]
fn a_corrupted_layout_blob_is_refused_in_place_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&StoreUrl::Layout { dir: dir.clone() }).unwrap();
    let desc = store
        .push_written(tmp.path(), media::ZFS_SEND, "s", |p| {
            std::fs::write(p, b"the original bytes")
        })
        .unwrap()
        .unwrap();
    let blob = dir.join("blobs/sha256").join(&desc.digest[7..]);
    std::fs::write(&blob, b"the original bytez").unwrap();
    let err = store.open_verified(&desc, tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
    std::fs::write(&blob, b"the original bytes and more").unwrap();
    let err = store.open_verified(&desc, tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
    // A descriptor whose digest is not a sha256 one names no file.
    let mut bad = desc.clone();
    bad.digest = "sha256:../../x".into();
    assert!(store.open_verified(&bad, tmp.path()).is_err());
}

#[test]
fn a_file_pushed_into_a_layout_is_stored_under_sha256sums_digest_and_twice_leaves_one_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let url = StoreUrl::Layout {
        dir: tmp.path().join("store"),
    };
    let store = Store::open(&url).unwrap();
    // Over one copy buffer, and not a multiple of it.
    let bytes: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
    let f = file(tmp.path(), "image.raw", &bytes);
    let first = store.push_file(&f).unwrap();
    let second = store.push_file(&f).unwrap();
    assert_eq!(first, second);
    assert_eq!(first.size, bytes.len() as u64);
    // coreutils' sha256sum is the oracle for the digest.
    let out = std::process::Command::new("sha256sum")
        .arg(&f.path)
        .output()
        .unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    assert_eq!(first.digest, format!("sha256:{}", &hex[..64]));
    let blobs = tmp.path().join("store/blobs/sha256");
    let names: Vec<String> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [hex[..64].to_string()]);
    assert_eq!(std::fs::read(blobs.join(&hex[..64])).unwrap(), bytes);
}
