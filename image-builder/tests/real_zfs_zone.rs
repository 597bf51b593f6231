//! ZFS tier: zone images against a real OpenZFS (run by `scripts/zfs-tier real_zfs_zone`
//! inside the zfs-vm guest with `IB_ZFS_TIER=1`; elsewhere these tests say they are
//! skipped).
//!
//! A zone template builds on a pool backed by a sparse file; its tarball unpacks (with the
//! system's tar) to the expected tree with owners and modes; its `zfs send` stream,
//! decompressed, receives into a new dataset whose tree matches the built root; the
//! manifest's sha256 and size match the stream file, and every output is in SHA256SUMS.

use crate::tier;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use image_builder::build::zone_image::Manifest;
use image_builder::build::Outcome;
use image_builder::template::Features;
use sha2::{Digest, Sha256};
use tier::{tier, ScratchPool};
use zfs::Zfs;

const TEMPLATE: &str = r##"{ "zone": { "name": "base", "brand": "sparse", "outputs": ["tarball", "stream"],
      "compression": "gzip", "version": "1.0.${release}" },
  "steps": [
    { "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" },
    { "t": "ensure_file", "file": "/etc/motd", "contents": "zone motd\n", "owner": "root", "group": "sys", "mode": "644" },
    { "t": "ensure_dir", "dir": "/opt", "owner": "root", "group": "sys", "mode": "755" },
    { "t": "ensure_dir", "dir": "/opt/app", "owner": "bin", "group": "bin", "mode": "750" },
    { "t": "ensure_file", "file": "/opt/app/run", "contents": "#!/bin/sh\n", "owner": "bin", "group": "bin", "mode": "4755" },
    { "t": "ensure_dir", "dir": "/tmp", "owner": "root", "group": "sys", "mode": "1777" },
    { "t": "ensure_symlink", "link": "/etc/release", "target": "../opt/app/run", "owner": "root", "group": "root" }
  ] }"##;

/// Path -> (kind and mode, uid, gid, contents or link target) for every entry below `dir`.
fn tree(dir: &Path) -> BTreeMap<String, (u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for e in walk(dir) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        let rel = e.strip_prefix(dir).unwrap().display().to_string();
        let body = if m.file_type().is_symlink() {
            std::fs::read_link(&e)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if m.is_file() {
            std::fs::read(&e).unwrap()
        } else {
            Vec::new()
        };
        out.insert(rel, (m.mode(), m.uid(), m.gid(), body));
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        // ZFS's control directory is not part of the tree.
        if p.file_name().is_some_and(|n| n == ".zfs") {
            continue;
        }
        let is_dir = std::fs::symlink_metadata(&p).unwrap().is_dir();
        v.push(p.clone());
        if is_dir {
            v.extend(walk(&p));
        }
    }
    v
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn a_zone_image_builds_unpacks_and_receives() {
    let Some(zfs) = tier() else { return };
    let pool = ScratchPool::new(&zfs, "ibz", 256 << 20);
    let name = pool.name.clone();
    pool.write_templates(&[("g/zone.json", TEMPLATE)]);

    let features = Features::from_directives(["release=7"]).unwrap();
    let p = pool.plan("g", "zone", &features);
    let out = pool.build_plan(&p, &pool.opts()).unwrap();
    assert_eq!(out, Outcome::Built);

    let mp = |ds: &str| PathBuf::from(zfs.get(ds, "mountpoint").unwrap().unwrap());
    let output = mp(&format!("{name}/images/output"));
    let work = format!("{name}/images/work/g/base");
    let root = mp(&work);
    assert!(zfs.exists(&format!("{work}@zone")).unwrap());
    assert!(
        !zfs.exists(&format!("{name}/images/tmp/g/zone")).unwrap(),
        "the scratch dataset is gone"
    );
    let built = tree(&root);
    let names: Vec<&str> = built.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "etc",
            "etc/motd",
            "etc/release",
            "opt",
            "opt/app",
            "opt/app/run",
            "tmp"
        ]
    );
    assert_eq!(built["opt/app/run"].0 & 0o7777, 0o4755);
    assert_eq!((built["opt/app/run"].1, built["opt/app/run"].2), (2, 2));
    assert_eq!(built["tmp"].0 & 0o7777, 0o1777);

    // The tarball, unpacked by the system's tar as root with numeric owners, is the tree.
    let unpacked = pool.dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let st = Command::new("tar")
        .args(["-x", "-z", "-p", "--numeric-owner", "-f"])
        .arg(output.join("g-zone.zone.tar.gz"))
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    let from_tar = tree(&unpacked);
    assert_eq!(from_tar, built);
    // The archive's own root entry carries the root's mode, as zoneadm expects of root/.
    let listing = Command::new("tar")
        .args(["-t", "-v", "-z", "--numeric-owner", "-f"])
        .arg(output.join("g-zone.zone.tar.gz"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing.lines().next().unwrap_or("").ends_with(" ./"),
        "{listing}"
    );
    assert!(listing.contains("-rwsr-xr-x 2/2"), "{listing}");

    // The stream, decompressed, receives into a new dataset holding the same tree.
    let gz = output.join("g-zone.zfs.gz");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(&gz).unwrap()),
        &mut raw,
    )
    .unwrap();
    let recv = format!("{name}/received");
    let mut child = Command::new("/usr/sbin/zfs")
        .args(["receive", &recv])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(tree(&mp(&recv)), built);

    // The manifest describes the stream file exactly.
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(output.join("g-zone.manifest.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(&gz).unwrap();
    assert_eq!(m.files[0].size, bytes.len() as u64);
    assert_eq!(m.files[0].sha256, hex(&Sha256::digest(&bytes)));
    assert_eq!(m.files[0].path, "g-zone.zfs.gz");
    assert_eq!((m.name.as_str(), m.version.as_str()), ("base", "1.0.7"));
    assert_eq!(m.requirements.brand, "sparse");
    assert_eq!(m.published_at, "2023-11-14T22:13:20Z");
    assert!(
        image_builder::template::zone::is_uuid(&m.uuid),
        "{}",
        m.uuid
    );

    let sums = std::fs::read_to_string(output.join("SHA256SUMS")).unwrap();
    for f in [
        "g-zone.zone.tar.gz",
        "g-zone.zfs.gz",
        "g-zone.manifest.json",
    ] {
        let want = hex(&Sha256::digest(std::fs::read(output.join(f)).unwrap()));
        assert!(
            sums.contains(&format!("{want}  {f}")),
            "{f} not in:\n{sums}"
        );
        let mode = std::fs::metadata(output.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o002, 0, "{f} is world-writable");
    }
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output.join("g-zone.build.json")).unwrap()).unwrap();
    assert_eq!(
        record["outputs"],
        serde_json::json!([
            "g-zone.zone.tar.gz",
            "g-zone.zfs.gz",
            "g-zone.manifest.json"
        ])
    );

    // A second build starts from an empty root again and makes a new image UUID.
    std::fs::write(root.join("stray"), b"left behind").unwrap();
    pool.build_plan(&p, &pool.opts()).unwrap();
    assert!(!mp(&work).join("stray").exists());
    let m2: Manifest =
        serde_json::from_slice(&std::fs::read(output.join("g-zone.manifest.json")).unwrap())
            .unwrap();
    assert_ne!(m2.uuid, m.uuid);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
