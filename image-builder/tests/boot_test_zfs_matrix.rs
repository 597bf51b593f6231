//! `matrix -j 2 --test` with the zfs-vm guest: two images built from the archives of two
//! stages sharing a first stage (in the embedded ZFS guest) and boot-tested on this host,
//! with one report. Skipped without the guests, as `boot_test_zfs` says.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;

use crate::boot_test_zfs::{assert_clean, image_builder, run, write, zfs_guest, GUESTS};

/// A stage shared by two others, each packing an archive that a `pool` image unpacks.
const MATRIX_TEMPLATES: &[(&str, &str)] = &[
    (
        "g/base.json",
        r#"{ "dataset": { "name": "w", "output_snapshot": "base" }, "steps": [
            { "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" },
            { "t": "ensure_file", "file": "/etc/motd", "contents": "built by image-builder\n", "owner": "root", "group": "sys", "mode": "644" } ] }"#,
    ),
    (
        "g/a.json",
        r#"{ "dataset": { "name": "w", "input_snapshot": "base" }, "steps": [
            { "t": "ensure_file", "file": "/etc/flavour-a", "contents": "a\n", "owner": "root", "group": "sys", "mode": "644" },
            { "t": "pack_tar", "name": "a.tar" } ] }"#,
    ),
    (
        "g/b.json",
        r#"{ "dataset": { "name": "w", "input_snapshot": "base" }, "steps": [
            { "t": "ensure_file", "file": "/etc/flavour-b", "contents": "b\n", "owner": "root", "group": "sys", "mode": "644" },
            { "t": "pack_tar", "name": "b.tar" } ] }"#,
    ),
    (
        "g/ia.json",
        r#"{ "pool": { "name": "rpool", "size": 128, "bename": "a", "uefi": false }, "steps": [
            { "t": "create_be" }, { "t": "unpack_tar", "name": "a.tar" }, { "t": "make_bootable" } ] }"#,
    ),
    (
        "g/ib.json",
        r#"{ "pool": { "name": "rpool", "size": 128, "bename": "b", "uefi": false }, "steps": [
            { "t": "create_be" }, { "t": "unpack_tar", "name": "b.tar" }, { "t": "make_bootable" } ] }"#,
    ),
];

#[test]
fn matrix_builds_two_images_with_a_shared_stage_and_boot_tests_both() {
    const TEST: &str = "matrix_builds_two_images_with_a_shared_stage_and_boot_tests_both";
    let Some(console) = zfs_guest(TEST) else {
        return;
    };
    let _one = GUESTS.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for (path, text) in MATRIX_TEMPLATES {
        write(&w.join("t").join(path), text);
    }
    // The images are listed before the stages whose archives they unpack.
    write(
        &w.join("m.json"),
        r#"{"builds":[{"group":"g","name":"ia","test":true},{"group":"g","name":"a"},
            {"group":"g","name":"base"},{"group":"g","name":"ib","test":true},{"group":"g","name":"b"}]}"#,
    );
    let out = run(image_builder(w)
        .args([
            "matrix",
            "m.json",
            "-j",
            "2",
            "-d",
            "ibmx/images",
            "-T",
            "t",
        ])
        .args(["--vm-output", "out", "--vm-disk-size", "1", "--test"])
        .args(&console)
        .args(["-m", "1024", "--boot-timeout", "300", "--report", "report"])
        .args(["--builtin", "pool-image"])
        .env("SOURCE_DATE_EPOCH", "1700000000"));
    let md = std::fs::read_to_string(w.join("report/matrix.md")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{md}");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(w.join("report/matrix.json")).unwrap())
            .unwrap();
    assert_eq!(v["passed"], true);

    // The builds, in chain order: every one built, the shared stage once.
    let builds = v["builds"].as_array().unwrap();
    let rows: Vec<(&str, &str, &str)> = builds
        .iter()
        .map(|b| {
            (
                b["build"].as_str().unwrap(),
                b["work"].as_str().unwrap(),
                b["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("g/ia", "job/g/ia", "built"),
            ("g/base", "work/g/w", "built"),
            ("g/a", "work/g/w", "built"),
            ("g/b", "work/g/w", "built"),
            ("g/ib", "job/g/ib", "built"),
        ]
    );
    let by = |n: &str| builds.iter().find(|b| b["build"] == n).unwrap();
    let start = |n: &str| by(n)["started"].as_f64().unwrap();
    let end = |n: &str| start(n) + by(n)["seconds"].as_f64().unwrap();
    // Each image waited for the archive it unpacks; with two jobs, the first image was
    // built beside the second stage.
    assert!(start("g/ia") >= end("g/a"), "{v:#}");
    assert!(start("g/ib") >= end("g/b"), "{v:#}");
    assert!(
        start("g/ia") < end("g/b") && start("g/b") < end("g/ia"),
        "{v:#}"
    );
    let base_log = std::fs::read_to_string(by("g/base")["log"].as_str().unwrap()).unwrap();
    assert_eq!(
        base_log.matches("\"event\":\"start\"").count(),
        1,
        "{base_log}"
    );
    let images: Vec<PathBuf> = ["g/ia", "g/ib"]
        .iter()
        .map(|n| PathBuf::from(by(n)["outputs"][0].as_str().unwrap()))
        .collect();
    assert_eq!(images, [w.join("out/g-ia.raw"), w.join("out/g-ib.raw")]);
    for i in &images {
        assert_eq!(std::fs::metadata(i).unwrap().len(), 128 << 20);
    }

    // Both images booted as data disks and passed; each holds its own stage's files.
    let tests = v["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 2);
    for (t, (image, (mine, other))) in tests.iter().zip(
        images
            .iter()
            .zip([("flavour-a", "flavour-b"), ("flavour-b", "flavour-a")]),
    ) {
        assert_eq!(t["image"], image.to_str().unwrap());
        assert_eq!(t["boot"]["result"], "pass", "{t:#}");
        assert_eq!(t["passed"], true, "{t:#}");
        let files = t["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "image-be-files")
            .unwrap()["output"]
            .as_str()
            .unwrap();
        assert!(files.contains("motd") && files.contains(mine), "{files}");
        assert!(!files.contains(other), "{files}");
        let be = if mine.ends_with('a') { "a" } else { "b" };
        let bootfs = t["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "image-bootfs")
            .unwrap()["output"]
            .as_str()
            .unwrap();
        assert!(
            bootfs.starts_with(&format!("bootfs=ibimage/ROOT/{be}\n")),
            "{bootfs}"
        );
    }
    // One Markdown report: the build table, then the test report.
    assert!(md.contains("| g/base | work/g/w | built |"), "{md}");
    assert!(md.contains("| g/ia | job/g/ia | built |"), "{md}");
    assert!(md.contains("# Boot test report"), "{md}");
    assert!(md.contains("2 of 2 image(s) passed."), "{md}");
    assert!(
        md.contains(&format!(
            "| {} | image-export | pass |",
            images[1].display()
        )),
        "{md}"
    );
    assert_clean(w);
    let test_s: f64 = tests
        .iter()
        .map(|t| {
            t["boot"]["seconds"].as_f64().unwrap()
                + t["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["seconds"].as_f64().unwrap())
                    .sum::<f64>()
        })
        .sum();
    eprintln!(
        "{TEST}: times: builds {:.1}s (last finished), boot tests {test_s:.1}s, whole test {:.1}s",
        builds
            .iter()
            .map(|b| b["started"].as_f64().unwrap() + b["seconds"].as_f64().unwrap())
            .fold(0.0, f64::max),
        t0.elapsed().as_secs_f64()
    );
}
