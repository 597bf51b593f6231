//! The store against a real registry: Debian's `docker-registry` (the CNCF distribution
//! server) listening on 127.0.0.1 with its storage in a temporary directory, and the ORAS
//! Python SDK (PyPI `oras`) as the other client. `scripts/test` installs both; without
//! them these tests say `skipped: ...`, except under CI (`CI` set), where they fail.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image_builder::store::{media, ArtifactFile, Store, StoreError, StoreUrl};

use crate::common::registry::{no_registry, skip, write_file, Registry};

const PYTHON: &str = "/usr/bin/python3";

fn no_oras() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import oras.client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    !ok && skip("the ORAS Python SDK is missing (pip install oras)")
}

fn key_annotations(key: &str) -> BTreeMap<String, String> {
    [("org.illumos.image-builder.key".to_string(), key.to_string())].into()
}

fn peer(args: &[&str]) -> String {
    let peer = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/store/oras_peer.py");
    let out = Command::new(PYTHON).arg(peer).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "oras_peer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn push_then_pull_and_oras_pulls_and_verifies_ours() {
    if no_registry() || no_oras() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(tmp.path());
    let store = Store::open(&reg.url("ib/stages")).unwrap();
    let stream: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let files = [
        write_file(tmp.path(), "stream", &stream, media::ZFS_SEND),
        write_file(tmp.path(), "record.json", b"{\"ok\":true}", media::RECORD),
    ];
    let digest = store
        .push_artifact("stage-k1", media::STAGE, &files, key_annotations("k1"))
        .unwrap();
    let out = tmp.path().join("ours");
    std::fs::create_dir(&out).unwrap();
    let (manifest, got, _) = store.pull_artifact("stage-k1", &out).unwrap().unwrap();
    assert_eq!(got, digest);
    assert_eq!(manifest.annotations["org.illumos.image-builder.key"], "k1");
    assert_eq!(std::fs::read(out.join("stream")).unwrap(), stream);
    // Pushing again (the blobs are there) keeps the same manifest.
    let again = store
        .push_artifact("stage-k1", media::STAGE, &files, key_annotations("k1"))
        .unwrap();
    assert_eq!(again, digest);

    let theirs = tmp.path().join("oras");
    std::fs::create_dir(&theirs).unwrap();
    let target = format!("127.0.0.1:{}/ib/stages:stage-k1", reg.port);
    let report: serde_json::Value =
        serde_json::from_str(&peer(&["pull", &target, theirs.to_str().unwrap()])).unwrap();
    assert_eq!(report["artifactType"], media::STAGE);
    assert_eq!(report["annotations"]["org.illumos.image-builder.key"], "k1");
    assert_eq!(
        report["files"]["stream"],
        manifest.layers[0].digest.as_str()
    );
    assert_eq!(std::fs::read(theirs.join("stream")).unwrap(), stream);
}

#[test]
fn an_artifact_pushed_by_oras_is_pulled_and_verified_by_us() {
    if no_registry() || no_oras() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(tmp.path());
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("disk.raw"), vec![0x5au8; 70_000]).unwrap();
    let sums = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(vec![0x5au8; 70_000]);
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}  disk.raw\n")
    };
    std::fs::write(src.join("SHA256SUMS"), &sums).unwrap();
    let target = format!("127.0.0.1:{}/ib/images:v1", reg.port);
    peer(&[
        "push",
        &target,
        src.join("disk.raw").to_str().unwrap(),
        src.join("SHA256SUMS").to_str().unwrap(),
    ]);
    let store = Store::open(&reg.url("ib/images")).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (manifest, _, paths) = store.pull_artifact("v1", &out).unwrap().unwrap();
    assert_eq!(manifest.annotations["pushed-by"], "oras-py");
    assert_eq!(paths.len(), 2);
    assert_eq!(
        std::fs::read(out.join("disk.raw")).unwrap(),
        vec![0x5au8; 70_000]
    );
    assert_eq!(
        std::fs::read_to_string(out.join("SHA256SUMS")).unwrap(),
        sums
    );

    // `image-builder pull` too, which also checks the file against SHA256SUMS.
    let dest = tmp.path().join("cli");
    let o = Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .args([
            "pull",
            &format!("oci://127.0.0.1:{}/ib/images:v1", reg.port),
        ])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(dest.join("disk.raw")).unwrap(),
        vec![0x5au8; 70_000]
    );
}

#[test]
fn a_corrupted_blob_in_the_registry_is_refused() {
    if no_registry() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(tmp.path());
    let store = Store::open(&reg.url("ib/stages")).unwrap();
    let f = write_file(tmp.path(), "stream", &[1u8; 4096], media::ZFS_SEND);
    store
        .push_artifact("t", media::STAGE, &[f], BTreeMap::new())
        .unwrap();
    let (manifest, _) = store.manifest("t").unwrap().unwrap();
    let layer = &manifest.layers[0];
    let data = reg.blob_data(&layer.digest);
    let mut w = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    w.seek(SeekFrom::Start(100)).unwrap();
    w.write_all(&[2u8]).unwrap();
    drop(w);
    let dest = tmp.path().join("fetched");
    let err = store.fetch(layer, &dest).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(!dest.exists(), "the refused blob was kept");
}

#[test]
fn a_written_stream_is_uploaded_while_it_is_written_and_read_back_from_a_checked_download() {
    if no_registry() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(tmp.path());
    let store = Store::open(&reg.url("ib/stages")).unwrap();
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let uploads = tmp
        .path()
        .join("storage/docker/registry/v2/repositories/ib/stages/_uploads");
    // Over two 16 MiB chunks, and not a whole number of them.
    let bytes: Vec<u8> = (0..40_000_000u32).map(|i| (i % 251) as u8).collect();
    let (first, rest) = bytes.split_at(24_000_000);
    // For a registry the file to write is a temporary one in the scratch directory, and
    // the registry has the first chunk before the writer goes on.
    let desc = store
        .push_written(&scratch, media::ZFS_SEND, "stage.zfs", |path| {
            assert_eq!(path.parent(), Some(scratch.as_path()));
            let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.write_all(first)?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !uploads_have_data(&uploads) {
                assert!(Instant::now() < deadline, "nothing uploaded while written");
                std::thread::sleep(Duration::from_millis(5));
            }
            f.write_all(rest)
        })
        .unwrap()
        .unwrap();
    assert_eq!(desc.digest, image_builder::store::digest_of(&bytes));
    assert_eq!(desc.size, bytes.len() as u64);
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    store
        .push_manifest("w", media::STAGE, vec![desc.clone()], BTreeMap::new())
        .unwrap();
    let (m, _) = store.manifest("w").unwrap().unwrap();
    let blob = store.open_verified(&m.layers[0], &scratch).unwrap();
    assert_eq!(blob.path().parent(), Some(scratch.as_path()));
    assert!(std::fs::read(blob.path()).unwrap() == bytes);
    drop(blob);
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

    // A writer that fails after its first chunk went up: its error, and no blob of what
    // it wrote (the upload is never closed).
    let blobs_before = blob_files(tmp.path());
    let err = store
        .push_written(&scratch, media::ZFS_SEND, "x", |path| {
            std::fs::write(path, &first[..20_000_000])?;
            std::thread::sleep(Duration::from_millis(200));
            Err::<(), std::io::Error>(std::io::Error::other("zfs send failed"))
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "zfs send failed");
    assert_eq!(blob_files(tmp.path()), blobs_before);
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

    // Corrupted in the registry's storage: refused, and no download left behind.
    let data = reg.blob_data(&desc.digest);
    let mut w = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    w.seek(SeekFrom::Start(1000)).unwrap();
    w.write_all(&[0xff]).unwrap();
    drop(w);
    let err = store.open_verified(&m.layers[0], &scratch).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
}

#[test]
fn a_registry_killed_during_a_push_leaves_no_tag() {
    if no_registry() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut reg = Registry::start(tmp.path());
    let big = tmp.path().join("stream");
    // 256 MiB of zeros (sparse): long enough on loopback to be killed half way.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let file = ArtifactFile {
        path: big.clone(),
        media_type: media::ZFS_SEND.into(),
        name: "stream".into(),
    };
    let url = reg.url("ib/stages");
    let pusher = {
        let file = file.clone();
        std::thread::spawn(move || {
            Store::open(&url)
                .unwrap()
                .push_artifact("half", media::STAGE, &[file], BTreeMap::new())
        })
    };
    // Kill the registry once the upload has started writing.
    let uploads = tmp
        .path()
        .join("storage/docker/registry/v2/repositories/ib/stages/_uploads");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !uploads_have_data(&uploads) {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    reg.kill();
    let result = pusher.join().unwrap();
    let err = result.expect_err("the push finished before the registry was killed");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");

    // The same storage, served again: no tag, no manifest; a new push completes.
    let reg = Registry::start(tmp.path());
    let store = Store::open(&reg.url("ib/stages")).unwrap();
    assert!(store.manifest("half").unwrap().is_none());
    let small = write_file(tmp.path(), "small", b"small", media::ZFS_SEND);
    store
        .push_artifact("half", media::STAGE, &[small], BTreeMap::new())
        .unwrap();
    assert!(store.manifest("half").unwrap().is_some());
}

/// The blob data files in the registry's storage under `top`.
fn blob_files(top: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "data") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&top.join("storage/docker/registry/v2/blobs"), &mut out);
    out.sort();
    out
}

fn uploads_have_data(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .filter_map(|e| e.ok())
        .any(|e| std::fs::metadata(e.path().join("data")).is_ok_and(|m| m.len() > 0))
}

#[test]
fn two_pushes_of_one_key_at_once_are_harmless() {
    if no_registry() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(tmp.path());
    let bytes: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let f = write_file(tmp.path(), "stream", &bytes, media::ZFS_SEND);
    let pushes: Vec<_> = (0..2)
        .map(|_| {
            let (url, f) = (reg.url("ib/stages"), f.clone());
            std::thread::spawn(move || {
                Store::open(&url)
                    .unwrap()
                    .push_artifact("stage-k", media::STAGE, &[f], key_annotations("k"))
                    .unwrap()
            })
        })
        .collect();
    let digests: Vec<String> = pushes.into_iter().map(|p| p.join().unwrap()).collect();
    assert_eq!(digests[0], digests[1]);
    let store = Store::open(&reg.url("ib/stages")).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (_, got, _) = store.pull_artifact("stage-k", &out).unwrap().unwrap();
    assert_eq!(got, digests[0]);
    let mut back = Vec::new();
    std::fs::File::open(out.join("stream"))
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, bytes);
}

#[test]
fn a_registry_that_is_not_there_is_unreachable() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = StoreUrl::parse(&format!("oci://127.0.0.1:{port}/ib/stages")).unwrap();
    let err = Store::open(&url).err().expect("a closed port answered");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

#[test]
fn credentials_come_from_the_environment_or_an_auth_file_and_never_show() {
    if no_registry() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // An artifact pushed while the registry is open, then the same storage served with
    // htpasswd authentication (distribution's `auth.htpasswd`: bcrypt hashes, Basic).
    let mut open = Registry::start(tmp.path());
    let f = write_file(tmp.path(), "disk.raw", b"image bytes", media::DISK_RAW);
    Store::open(&open.url("ib/images"))
        .unwrap()
        .push_artifact("v1", media::IMAGE, &[f], BTreeMap::new())
        .unwrap();
    open.kill();
    let hash = Command::new(PYTHON)
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt; print(crypt.crypt('pw-9f3a', crypt.mksalt(crypt.METHOD_BLOWFISH)))",
        ])
        .output()
        .unwrap();
    assert!(hash.status.success());
    let htpasswd = tmp.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}", String::from_utf8(hash.stdout).unwrap()),
    )
    .unwrap();
    let reg = Registry::start_with(
        tmp.path(),
        &format!(
            "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            htpasswd.display()
        ),
    );
    let home = tempfile::tempdir().unwrap();
    let r = format!("oci://127.0.0.1:{}/ib/images:v1", reg.port);
    let pull = |env: &[(&str, &str)], dest: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_image-builder"));
        c.args(["-vv", "pull", &r])
            .arg(tmp.path().join(dest))
            .env_remove("IMAGE_BUILDER_STORE_USERNAME")
            .env_remove("IMAGE_BUILDER_STORE_PASSWORD")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .env_remove("XDG_RUNTIME_DIR")
            .env("HOME", home.path());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // No credentials: the challenge says what to set.
    let o = pull(&[], "none");
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("IMAGE_BUILDER_STORE_USERNAME"), "{e}");
    // Wrong ones: refused by the registry.
    let o = pull(
        &[
            ("IMAGE_BUILDER_STORE_USERNAME", "alice"),
            ("IMAGE_BUILDER_STORE_PASSWORD", "wrong-7c1d"),
        ],
        "wrong",
    );
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("HTTP 401"), "{e}");
    assert!(!e.contains("wrong-7c1d"), "the password was printed: {e}");
    // From the environment.
    let o = pull(
        &[
            ("IMAGE_BUILDER_STORE_USERNAME", "alice"),
            ("IMAGE_BUILDER_STORE_PASSWORD", "pw-9f3a"),
        ],
        "env",
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(!e.contains("pw-9f3a"), "the password was printed: {e}");
    assert_eq!(
        std::fs::read(tmp.path().join("env/disk.raw")).unwrap(),
        b"image bytes"
    );
    // From ~/.docker/config.json, as `docker login` writes it.
    std::fs::create_dir(home.path().join(".docker")).unwrap();
    std::fs::write(
        home.path().join(".docker/config.json"),
        format!(
            r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"YWxpY2U6cHctOWYzYQ=="}}}}}}"#,
            reg.port
        ),
    )
    .unwrap();
    let o = pull(&[], "file");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(
        !e.contains("pw-9f3a") && !e.contains("YWxpY2U6cHctOWYzYQ"),
        "{e}"
    );
}
