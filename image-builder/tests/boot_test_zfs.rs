//! `image-builder test` on the zfs-vm guest in console mode (`scripts/zfs-vm
//! console-args`): Debian's kernel with a real OpenZFS, the host's tools over 9P, and a
//! root shell on the serial console. A `pool` image built by the tool itself, through the
//! embedded ZFS guest (`build --vm`), is attached as a data disk; the `pool-image` list
//! imports its pool read-only under a temporary name and looks at it, the `openzfs` list
//! runs the seed document's mirror-and-scrub test, and one extra check must fail. The
//! matrix case (`matrix -j 2 --test`) is in `boot_test_zfs_matrix`.
//!
//! Without the zfs-vm guest (`scripts/zfs-vm setup`) or QEMU these tests say they are
//! skipped, unless `IB_REQUIRE_GUESTS` is set (as `scripts/test` does after setting the
//! guests up): then a missing guest fails them.

use crate::guest;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

/// One guest at a time: two TCG guests on a small machine only slow each other down.
pub(crate) static GUESTS: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    guest::repo().to_path_buf()
}

fn harness() -> PathBuf {
    repo().join("scripts/zfs-vm")
}

/// The cache root the harness uses, computed as it does.
fn zfs_vm_cache() -> PathBuf {
    if let Some(c) = std::env::var_os("ZFS_VM_CACHE") {
        return PathBuf::from(c);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default()
        .join("image-builder/zfs-vm")
}

/// The `image-builder test` options that boot the zfs-vm guest with a console shell, or
/// `None` (the test is skipped) when the guest or a tool is missing.
pub(crate) fn zfs_guest(test: &str) -> Option<Vec<String>> {
    guest::need_tools(
        test,
        &[
            "qemu-system-x86_64",
            "ssh-keygen",
            "mcopy",
            "mkfs.vfat",
            "sfdisk",
        ],
    )?;
    let out = Command::new(harness())
        .arg("console-args")
        .env("ZFS_VM_CACHE", zfs_vm_cache())
        .output()
        .unwrap();
    if !out.status.success() {
        return guest::skip(
            test,
            format!(
                "the zfs-vm guest is not set up (run scripts/zfs-vm setup): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        );
    }
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect(),
    )
}

/// A `pool` image whose root is written by the steps themselves (no tarball): passwd and
/// group naming a user of its own, files with owners and modes, a stand-in UEFI loader.
const IMAGE: &str = r#"{
  "pool": { "name": "rpool", "size": 352, "bename": "oi", "uefi": true },
  "steps": [
    { "t": "create_be" },
    { "t": "create_dataset", "name": "export", "mountpoint": "/export" },
    { "t": "create_dataset", "name": "export/home", "mountpoint": "/export/home" },
    { "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" },
    { "t": "ensure_file", "file": "/etc/passwd", "owner": "root", "group": "sys", "mode": "644",
      "contents": "root:x:0:0::/root:/usr/bin/bash\nsvc:x:77:12::/var/svc:/bin/false\n" },
    { "t": "ensure_file", "file": "/etc/group", "owner": "root", "group": "sys", "mode": "644",
      "contents": "root::0:\nsys::3:\nsvcgrp::12:\n" },
    { "t": "ensure_file", "file": "/etc/motd", "owner": "root", "group": "sys", "mode": "644",
      "contents": "built by image-builder\n" },
    { "t": "ensure_file", "file": "/etc/svc.conf", "owner": "77", "group": "12", "mode": "640",
      "contents": "owned by svc\n" },
    { "t": "ensure_dir", "dir": "/boot", "owner": "root", "group": "sys", "mode": "755" },
    { "t": "ensure_file", "file": "/boot/loader64.efi", "owner": "root", "group": "sys", "mode": "444",
      "contents": "MZ illumos loader64.efi stand-in\n" },
    { "t": "make_bootable" }
  ]
}"#;

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub(crate) fn run(c: &mut Command) -> Output {
    let out = c.output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `image-builder` with the environment the embedded guest and the VM need: the pool
/// image in `work/cache` (removed with `work`), the zfs-vm cache where it is set up,
/// temporary files in `work/tmp` (checked empty afterwards).
pub(crate) fn image_builder(work: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_image-builder"));
    std::fs::create_dir_all(work.join("tmp")).unwrap();
    c.current_dir(work)
        .env("XDG_CACHE_HOME", work.join("cache"))
        .env("ZFS_VM_CACHE", zfs_vm_cache())
        .env("IMAGE_BUILDER_ZFS_VM", harness())
        .env("IMAGE_BUILDER_VM_TIMEOUT", "900")
        // No warm guest left running after the test: it stops as soon as its command ends.
        .env("IMAGE_BUILDER_VM_IDLE", "0")
        .env("TMPDIR", work.join("tmp"))
        .env_remove("XDG_RUNTIME_DIR")
        .env("NO_COLOR", "1");
    c
}

/// Nothing of the test run (seed, key, VM run directory) is left in its temporary
/// directory.
pub(crate) fn assert_clean(work: &Path) {
    let left: Vec<_> = std::fs::read_dir(work.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A check after the built-in lists that must fail: the image's pool was exported.
const EXTRA: &str = r#"{"checks":[
  {"name":"exported-pool-gone","command":"zpool status -x ibimage","expect":{"contains":["is healthy"]}}
]}"#;

#[test]
fn a_built_pool_image_is_checked_on_real_openzfs_over_the_console() {
    const TEST: &str = "a_built_pool_image_is_checked_on_real_openzfs_over_the_console";
    let Some(console) = zfs_guest(TEST) else {
        return;
    };
    let _one = GUESTS.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write(&w.join("t/g/img.json"), IMAGE);
    write(&w.join("extra.json"), EXTRA);

    // The image, built by the tool in the embedded ZFS guest.
    let out = run(image_builder(w).args([
        "build",
        "--vm",
        "-d",
        "ibbt/images",
        "-g",
        "g",
        "-n",
        "img",
        "-T",
        "t",
        "--vm-output",
        "out",
        "--vm-disk-size",
        "1",
    ]));
    assert_eq!(out.status.code(), Some(0), "the embedded build failed");
    let built = t0.elapsed();
    let image = w.join("out/g-img.raw");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 352 << 20);
    let sums = std::fs::read_to_string(w.join("out/SHA256SUMS")).unwrap();
    let sum = sha256(&image);
    assert!(sums.contains(&format!("{sum}  g-img.raw")), "{sums}");

    // The image as a data disk of the zfs-vm guest, checked over its console.
    let t1 = Instant::now();
    let out = run(image_builder(w)
        .arg("test")
        .arg(&image)
        .args(&console)
        .args(["-m", "1024", "--boot-timeout", "300", "--report", "report"])
        .args(["--builtin", "pool-image", "--builtin", "openzfs"])
        .args(["--check", "extra.json"]));
    let tested = t1.elapsed();
    assert_eq!(out.status.code(), Some(1), "the extra check fails");
    let json: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(w.join("report/report.json")).unwrap())
            .unwrap();
    let md = std::fs::read_to_string(w.join("report/report.md")).unwrap();
    assert_eq!(json.len(), 1);
    let r = &json[0];
    assert_eq!(r["image"], image.to_str().unwrap());
    assert_eq!(r["boot"]["result"], "pass", "{r:#}");
    assert_eq!(r["passed"], false);
    let checks = r["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "image-find",
            "image-import",
            "image-health",
            "image-bootfs",
            "image-root",
            "image-be",
            "image-datasets",
            "image-be-files",
            "image-export",
            "zfs-module",
            "mirror-files",
            "mirror-create",
            "mirror-scrub",
            "mirror-scrub-wait",
            "mirror-status",
            "mirror-destroy",
            "mirror-cleanup",
            "exported-pool-gone",
        ]
    );
    for c in &checks[..17] {
        assert_eq!(c["result"], "pass", "{c:#}");
    }
    let output = |n: &str| {
        checks.iter().find(|c| c["name"] == n).unwrap()["output"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // The pool as the tool wrote it: on-disk name rpool, found on the image's ZFS
    // partition (the second, after the ESP), imported under the temporary name.
    let find = output("image-find");
    assert!(find.contains("pool: rpool"), "{find}");
    assert!(find.contains("vda2"), "{find}");
    assert_eq!(output("image-import"), "imported rpool as ibimage\n");
    assert_eq!(output("image-health"), "ibimage\tONLINE\n");
    assert!(
        output("image-bootfs").starts_with("bootfs=ibimage/ROOT/oi\nibimage/ROOT/oi\n"),
        "{}",
        output("image-bootfs")
    );
    let be = output("image-be");
    for want in [
        "canmount\tnoauto\n",
        "mountpoint\tlegacy\n",
        "org.opensolaris.libbe:policy\tstatic\n",
        "org.opensolaris.libbe:uuid\t",
    ] {
        assert!(be.contains(want), "{want:?} in {be}");
    }
    let datasets: Vec<String> = output("image-datasets")
        .lines()
        .map(|l| l.split('\t').take(3).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        datasets[1..],
        [
            "ibimage/ROOT off legacy",
            "ibimage/ROOT/oi noauto legacy",
            "ibimage/export on /mnt/ibimage/export",
            "ibimage/export/home on /mnt/ibimage/export/home",
        ],
        "{datasets:?}"
    );
    assert!(datasets[0].starts_with("ibimage "), "{datasets:?}");
    // The boot environment's files, owners and modes, read from the data disk.
    let files = output("image-be-files");
    for want in ["boot\n", "etc\n"] {
        assert!(files.contains(want), "{want:?} in {files}");
    }
    let etc: Vec<(String, String)> = files
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f.last().unwrap().to_string(),
                format!("{} {} {} {}", f[0], f[2], f[3], f[4]),
            )
        })
        .collect();
    let entry = |n: &str| etc.iter().find(|(f, _)| f == n).map(|(_, e)| e.as_str());
    assert_eq!(entry("motd"), Some("-rw-r--r-- 0 3 23"), "{files}");
    assert_eq!(entry("svc.conf"), Some("-rw-r----- 77 12 13"), "{files}");

    // The seed document's mirror test on the same guest.
    let scrub = output("mirror-scrub-wait");
    assert!(scrub.contains("mirror-0"), "{scrub}");
    assert!(scrub.contains("scrub repaired 0B"), "{scrub}");
    assert_eq!(output("mirror-status"), "pool 'ibtest' is healthy\n");

    // The failing check: failed, with zpool's own words.
    let bad = checks.last().unwrap();
    assert_eq!(bad["result"], "fail");
    assert_eq!(bad["status"], 1);
    assert!(
        bad["output"].as_str().unwrap().contains("no such pool"),
        "{bad:#}"
    );
    assert_eq!(
        bad["reason"],
        "exit status 1, expected 0; output lacks \"is healthy\""
    );
    let row = |check: &str, result: &str| format!("| {} | {check} | {result} |", image.display());
    for (c, res) in [
        ("boot", "pass"),
        ("image-import", "pass"),
        ("mirror-scrub-wait", "pass"),
        ("exported-pool-gone", "fail"),
    ] {
        assert!(md.contains(&row(c, res)), "{c} {res}: {md}");
    }
    assert!(
        md.contains("### ") && md.contains("/ exported-pool-gone"),
        "{md}"
    );
    assert!(md.contains("no such pool"), "{md}");

    // The console transcript is kept beside the report.
    let log = PathBuf::from(r["console_log"].as_str().unwrap());
    assert_eq!(log, w.join("report/g-img.console.log"));
    let transcript = std::fs::read_to_string(&log).unwrap();
    assert!(transcript.contains("zfs-vm: console shell"), "{transcript}");
    // The guest's writes went to a throw-away overlay.
    assert_eq!(sha256(&image), sum, "the image changed");
    assert_clean(w);

    let boot = r["boot"]["seconds"].as_f64().unwrap();
    let checks_s: f64 = checks.iter().map(|c| c["seconds"].as_f64().unwrap()).sum();
    eprintln!(
        "{TEST}: times: embedded build {:.1}s, boot to prompt {boot:.1}s, checklist {checks_s:.1}s, test command {:.1}s, whole test {:.1}s",
        built.as_secs_f64(),
        tested.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// The README's main job on a host without `/dev/zfs`: the shipped `example/hello` stage
/// and `example/pool` image built through the embedded ZFS guest, then `inspect` of the
/// image, which also runs itself in the guest (`--vm`, the default on such a host), reading
/// the image from the host's file system.
#[test]
fn readme_main_job_builds_the_example_pool_and_inspects_it_in_the_guest() {
    const TEST: &str = "readme_main_job_builds_the_example_pool_and_inspects_it_in_the_guest";
    if zfs_guest(TEST).is_none() {
        return;
    }
    let _one = GUESTS.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for name in ["hello", "pool"] {
        let out = run(image_builder(w)
            .args(["build", "--vm", "-d", "ibrd/images", "-g", "example", "-n"])
            .arg(name)
            .args(["--vm-output", "out", "--vm-disk-size", "1"]));
        assert_eq!(out.status.code(), Some(0), "example/{name} failed");
    }
    let built = t0.elapsed();
    assert_eq!(
        std::fs::metadata(w.join("out/example-pool.raw"))
            .unwrap()
            .len(),
        256 << 20
    );
    let out = run(image_builder(w).args(["inspect", "--vm", "--json", "out/example-pool.raw"]));
    assert_eq!(out.status.code(), Some(0), "inspect failed");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["pool"], "rpool");
    assert_eq!(r["bootfs"], "ROOT/hello");
    assert_eq!(r["partitions"].as_array().unwrap().len(), 2, "{r:#}");
    let datasets: Vec<(&str, &str)> = r["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap(),
                d["mountpoint"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        datasets,
        [
            ("", "/rpool"),
            ("ROOT", "legacy"),
            ("ROOT/hello", "legacy"),
            ("export", "/export"),
            ("export/home", "/export/home"),
        ]
    );
    // A file that is not there fails on the host, before a guest boots.
    let t1 = Instant::now();
    let out = run(image_builder(w).args(["inspect", "--vm", "out/missing.raw"]));
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("out/missing.raw"),
        "the message names the file"
    );
    assert!(
        t1.elapsed().as_secs() < 5,
        "a guest booted for a missing file"
    );
    assert_clean(w);
    eprintln!(
        "{TEST}: times: two embedded builds {:.1}s, whole test {:.1}s",
        built.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
