//! The `zone` target: validation, and a whole build with the ZFS commands pinned by the
//! recorder while the steps, tarball, manifest and sums are written to real files.

use std::path::{Path, PathBuf};

use image_builder::build::zone_image::Manifest;
use image_builder::build::{self, BuildOptions, Env, Outcome};
use image_builder::host::Host;
use image_builder::steps::SmfSeeding;
use image_builder::template::{plan, Features, Plan, PlanOptions, Target};
use runner::{Output, Recorder};
use sha2::{Digest, Sha256};
use zfs::{ZfsCli, ZfsTools};

fn plan_of(dir: &Path, text: &str) -> Plan {
    let p = dir.join("g/z.json");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    let f = Features::from_directives(["release=r151"]).unwrap();
    plan(dir, "g", "z", &f, &PlanOptions::default())
}

fn errors(p: &Plan) -> Vec<String> {
    p.errors().map(|e| e.to_string()).collect()
}

#[test]
fn a_zone_template_validates_and_expands() {
    let d = tempfile::tempdir().unwrap();
    let p = plan_of(
        d.path(),
        r#"{ "zone": { "name": "base-${release}", "brand": "sparse", "outputs": ["stream"], "version": "2.${release}" },
            "steps": [ { "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" } ] }"#,
    );
    assert!(p.is_valid(), "{:?}", errors(&p));
    let Some(Target::Zone(z)) = &p.target else {
        panic!("not a zone target: {:?}", p.target)
    };
    assert_eq!(z.name, "base-r151");
    assert_eq!(z.version.as_deref(), Some("2.r151"));
}

#[test]
fn steps_that_make_no_sense_in_a_zone_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = plan_of(
        d.path(),
        r#"{ "zone": { "name": "z", "brand": "ipkg" },
            "steps": [ { "t": "create_be" }, { "t": "make_bootable" }, { "t": "devfsadm" } ] }"#,
    );
    let e = errors(&p);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].contains("create_be only works in a pool template, not in a zone template"),
        "{e:?}"
    );
    assert!(
        e[1].contains("make_bootable only works in a pool template, not in a zone template"),
        "{e:?}"
    );
    assert!(
        e[2].contains("devfsadm makes no sense in a zone template"),
        "{e:?}"
    );
}

#[test]
fn bad_zone_fields_are_named() {
    let d = tempfile::tempdir().unwrap();
    let p = plan_of(
        d.path(),
        r#"{ "zone": { "name": "a/b", "brand": "bhyve", "compression": "bzip3",
                       "outputs": ["tarball", "tarball"], "uuid": "NOT-A-UUID" }, "steps": [] }"#,
    );
    let e = errors(&p).join("\n");
    for want in [
        "zone.name: invalid zone image name \"a/b\"",
        "zone.brand: a bhyve zone boots a disk image, not a file tree: build a \"pool\" image for it",
        "zone.compression: unknown compression \"bzip3\"",
        "zone.outputs: Tarball is listed twice",
        "zone.uuid: \"NOT-A-UUID\" is not a UUID",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let p = plan_of(
        d.path(),
        r#"{ "zone": { "name": "z", "brand": "sparse", "outputs": ["iso"] }, "steps": [] }"#,
    );
    assert!(
        errors(&p).join("\n").contains("zone.outputs"),
        "{:?}",
        errors(&p)
    );
}

/// Answers the ZFS queries of a build whose datasets are directories in `base`.
fn script(rec: &Recorder, base: &Path) {
    rec.always(
        "/sbin/zfs list -H -p -o name -t all rpool/images",
        Output::ok("rpool/images\n"),
    );
    for (ds, dir) in [
        ("rpool/images/output", "output"),
        ("rpool/images/tmp/g/z", "tmp"),
        ("rpool/images/work/g/base", "work"),
    ] {
        rec.always(
            &format!("/sbin/zfs get -H -p -o value,source mountpoint {ds}"),
            Output::ok(format!("{}\tlocal\n", base.join(dir).display())),
        );
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    rec.always(
        "/sbin/zfs get -H -p -o value,source mounted",
        Output::ok("yes\t-\n"),
    );
}

fn opts(templates: &Path) -> BuildOptions {
    BuildOptions {
        svccfg: PathBuf::from("/nonexistent/svccfg"),
        smf: SmfSeeding::AtFirstBoot,
        source_date_epoch: Some(1_700_000_000),
        ..BuildOptions::new("rpool/images", templates)
    }
}

#[test]
fn a_zone_build_runs_these_zfs_commands_and_writes_its_outputs() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("fs");
    let p = plan_of(
        &d.path().join("t"),
        r#"{ "zone": { "name": "base", "brand": "sparse", "outputs": ["tarball", "stream"],
                       "compression": "gzip", "version": "1.2.3",
                       "uuid": "8e9da1c2-0000-4000-8000-000000000001" },
            "steps": [ { "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" },
                       { "t": "ensure_file", "file": "/etc/motd", "contents": "hi\n", "owner": "root", "group": "sys", "mode": "644" } ] }"#,
    );
    assert!(p.is_valid(), "{:?}", errors(&p));
    // zfs(8) create, snapshot, destroy and send to a file print nothing on success;
    // the test pins each of them, the queries get rules (script).
    let rec = Recorder::new().allow_unmatched();
    script(&rec, &base);
    // The recorder does not run zfs send: the stream it would write is put in place.
    let stream_bytes = b"not really a zfs stream, but bytes to compress".repeat(100);
    std::fs::write(base.join("tmp/zone.zfs"), &stream_bytes).unwrap();
    let zfs = ZfsCli::new(&rec, ZfsTools::new("/sbin/zfs", "/sbin/zpool"));
    let env = Env {
        host: Host::Illumos,
        runner: &rec,
        zfs: &zfs,
    };
    let out = build::build(&p, &opts(&d.path().join("t")), &env, &mut |_| {}).unwrap();
    assert_eq!(out, Outcome::Built);
    let lines: Vec<String> = rec
        .lines()
        .into_iter()
        .filter(|l| !l.contains(" get ") && !l.contains(" list "))
        .collect();
    assert_eq!(
        lines,
        [
            "/sbin/zfs create rpool/images/output",
            "/sbin/zfs create -p -o sync=disabled rpool/images/tmp/g/z",
            "/sbin/zfs create -p rpool/images/work/g/base",
            "/sbin/zfs snapshot rpool/images/work/g/base@zone",
            "/sbin/zfs send rpool/images/work/g/base@zone",
            "/sbin/zfs destroy -r rpool/images/tmp/g/z",
        ]
    );
    let send = rec
        .calls()
        .into_iter()
        .find(|c| c.display().contains(" send "))
        .unwrap();
    assert_eq!(
        send.get_stdout_file(),
        Some(base.join("tmp/zone.zfs").as_path())
    );

    let output = base.join("output");
    // The tarball holds the root's contents, as zoneadm install -a unpacks it in root/.
    let tgz = std::fs::File::open(output.join("g-z.zone.tar.gz")).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let mut seen = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        seen.push(format!(
            "{} {:o} {}:{}",
            e.path().unwrap().display(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap()
        ));
    }
    assert_eq!(
        seen,
        ["./ 755 0:0", "etc/ 755 0:3", "etc/motd 644 0:3"],
        "{seen:?}"
    );

    // The stream is the sent bytes, gzip-compressed, and the manifest describes it.
    let gz = std::fs::read(output.join("g-z.zfs.gz")).unwrap();
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&gz[..]),
        &mut unpacked,
    )
    .unwrap();
    assert_eq!(unpacked, stream_bytes);
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(output.join("g-z.manifest.json")).unwrap()).unwrap();
    assert_eq!(m.uuid, "8e9da1c2-0000-4000-8000-000000000001");
    assert_eq!((m.name.as_str(), m.version.as_str()), ("base", "1.2.3"));
    assert_eq!(m.kind, "zone-dataset");
    assert_eq!(m.requirements.brand, "sparse");
    assert_eq!(m.published_at, "2023-11-14T22:13:20Z");
    assert_eq!(m.files[0].size, gz.len() as u64);
    assert_eq!(m.files[0].sha256, hex(&Sha256::digest(&gz)));
    assert_eq!(m.files[0].compression, "gzip");

    let sums = std::fs::read_to_string(output.join("SHA256SUMS")).unwrap();
    for f in ["g-z.zone.tar.gz", "g-z.zfs.gz", "g-z.manifest.json"] {
        let want = hex(&Sha256::digest(std::fs::read(output.join(f)).unwrap()));
        assert!(
            sums.contains(&format!("{want}  {f}")),
            "{f} not in:\n{sums}"
        );
    }
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output.join("g-z.build.json")).unwrap()).unwrap();
    assert_eq!(
        record["outputs"],
        serde_json::json!(["g-z.zone.tar.gz", "g-z.zfs.gz", "g-z.manifest.json"])
    );
}

#[test]
fn a_failing_zone_build_destroys_its_root_and_scratch() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("fs");
    let p = plan_of(
        &d.path().join("t"),
        r#"{ "zone": { "name": "base", "brand": "ipkg" },
            "steps": [ { "t": "unpack_tar", "name": "missing.tar" } ] }"#,
    );
    assert!(p.is_valid(), "{:?}", errors(&p));
    // zfs(8) create and destroy print nothing on success; the test pins them.
    let rec = Recorder::new().allow_unmatched();
    // Missing when the build looks, present when the cleanup looks.
    for ds in ["rpool/images/tmp/g/z", "rpool/images/work/g/base"] {
        let list = format!("/sbin/zfs list -H -p -o name -t all {ds}");
        rec.on(&list, Output::ok(""));
        rec.on(&list, Output::ok(format!("{ds}\n")));
    }
    script(&rec, &base);
    let zfs = ZfsCli::new(&rec, ZfsTools::new("/sbin/zfs", "/sbin/zpool"));
    let env = Env {
        host: Host::Illumos,
        runner: &rec,
        zfs: &zfs,
    };
    let err = build::build(&p, &opts(&d.path().join("t")), &env, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("missing.tar"), "{err}");
    let changes: Vec<String> = rec
        .lines()
        .into_iter()
        .filter(|l| l.contains(" destroy ") || l.contains(" create ") || l.contains(" snapshot "))
        .collect();
    // Undone newest first: the root, then the scratch dataset; no snapshot was taken.
    assert_eq!(
        changes,
        [
            "/sbin/zfs create rpool/images/output",
            "/sbin/zfs create -p -o sync=disabled rpool/images/tmp/g/z",
            "/sbin/zfs create -p rpool/images/work/g/base",
            "/sbin/zfs destroy -r rpool/images/work/g/base",
            "/sbin/zfs destroy -r rpool/images/tmp/g/z",
        ]
    );
    assert!(!base.join("output/g-z.zone.tar").exists());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
