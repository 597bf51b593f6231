//! ZFS tier: the seed document's mirror test (two 256 MB files, a mirror pool, scrub,
//! status clean, destroy, files removed) run by `image-builder test --local --builtin
//! openzfs` against a real OpenZFS (inside the zfs-vm guest with `IB_ZFS_TIER=1`;
//! elsewhere this test says it is skipped), and the report it writes.

use crate::tier;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn mirror_pool_scrub_and_cleanup_on_real_openzfs() {
    if !tier::in_tier() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // A failing check after the built-in list: a pool that does not exist.
    std::fs::write(
        work.path().join("extra.json"),
        r#"{"checks":[{"name":"no-such-pool","command":"zpool status -x ib-no-such-pool","expect":{"contains":["is healthy"]}}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .current_dir(work.path())
        .args([
            "test",
            "--local",
            "--builtin",
            "openzfs",
            "--check",
            "extra.json",
        ])
        .args(["--report", "report", "guest"])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "the extra check fails");
    let json: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(work.path().join("report/report.json")).unwrap(),
    )
    .unwrap();
    let checks = json[0]["checks"].as_array().unwrap();
    let by_name = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "zfs-module",
            "mirror-files",
            "mirror-create",
            "mirror-scrub",
            "mirror-scrub-wait",
            "mirror-status",
            "mirror-destroy",
            "mirror-cleanup",
            "no-such-pool"
        ]
    );
    for c in &checks[..8] {
        assert_eq!(c["result"], "pass", "{c:#}");
    }
    let scrub = by_name("mirror-scrub-wait")["output"].as_str().unwrap();
    assert!(scrub.contains("mirror-0"), "{scrub}");
    assert!(scrub.contains("scrub repaired 0B"), "{scrub}");
    assert_eq!(
        by_name("mirror-status")["output"],
        "pool 'ibtest' is healthy\n"
    );
    let bad = by_name("no-such-pool");
    assert_eq!(bad["result"], "fail");
    assert!(
        bad["output"].as_str().unwrap().contains("no such pool"),
        "{bad:#}"
    );
    // Nothing is left: no pool, no files.
    let pools = Command::new("zpool")
        .args(["list", "-H", "-o", "name"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&pools.stdout).contains("ibtest"));
    assert!(!Path::new("/var/tmp/ibtest-a").exists());
    assert!(!Path::new("/var/tmp/ibtest-b").exists());
    let md = std::fs::read_to_string(work.path().join("report/report.md")).unwrap();
    assert!(md.contains("| mirror-scrub-wait | pass |"), "{md}");
    assert!(md.contains("| no-such-pool | fail |"), "{md}");
}
