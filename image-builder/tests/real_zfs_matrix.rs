//! ZFS tier: `image-builder matrix -j 2` against a real OpenZFS (run by `scripts/zfs-tier`
//! inside the zfs-vm guest with `IB_ZFS_TIER=1`; elsewhere it says it is skipped).
//!
//! Two templates share a first stage on one work dataset, a third lives on another: the
//! shared stage is built once, the chains run side by side, every build has its own log.

use crate::tier;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tier::{tier, ScratchPool};
use zfs::Zfs;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "g/base.json",
        r#"{ "dataset": { "name": "w", "output_snapshot": "one" }, "steps": [
            { "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" },
            { "t": "ensure_file", "file": "/etc/base", "contents": "base\n", "owner": "root", "group": "root", "mode": "644" } ] }"#,
    ),
    (
        "g/a.json",
        r#"{ "dataset": { "name": "w", "input_snapshot": "one" }, "steps": [
            { "t": "ensure_file", "file": "/etc/a", "contents": "a\n", "owner": "root", "group": "root", "mode": "644" },
            { "t": "pack_tar", "name": "a.tar.gz" } ] }"#,
    ),
    (
        "g/b.json",
        r#"{ "dataset": { "name": "w", "input_snapshot": "one" }, "steps": [
            { "t": "ensure_file", "file": "/etc/b", "contents": "b\n", "owner": "root", "group": "root", "mode": "644" },
            { "t": "pack_tar", "name": "b.tar.gz" } ] }"#,
    ),
    (
        "g/c.json",
        r#"{ "dataset": { "name": "v", "output_snapshot": "done" }, "steps": [
            { "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" },
            { "t": "pack_tar", "name": "c.tar.gz" } ] }"#,
    ),
];

fn matrix(dir: &Path, dataset: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .current_dir(dir)
        .args(["matrix", "m.json", "-j", "2", "-d", dataset, "-T", "t"])
        .args(["--smf-at-first-boot", "--report", "report"])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let report = std::fs::read_to_string(dir.join("report/matrix.md")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{report}");
    serde_json::from_str(&std::fs::read_to_string(dir.join("report/matrix.json")).unwrap()).unwrap()
}

fn rows(v: &Value) -> Vec<(String, String, String)> {
    v["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["build"].as_str().unwrap().to_string(),
                b["work"].as_str().unwrap().to_string(),
                b["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn two_templates_share_a_stage_built_once_with_two_jobs() {
    let Some(zfs) = tier() else { return };
    let pool = ScratchPool::new(&zfs, "ibm", 256 << 20);
    pool.write_templates(TEMPLATES);
    let (dir, root) = (&pool.dir, pool.dataset());
    // The shared stage is listed twice and after its users: still built once, first.
    std::fs::write(
        dir.path().join("m.json"),
        r#"{"builds":[{"group":"g","name":"a"},{"group":"g","name":"base"},
            {"group":"g","name":"c"},{"group":"g","name":"b"},{"group":"g","name":"base"}]}"#,
    )
    .unwrap();

    let v = matrix(dir.path(), &root);
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        rows(&v),
        vec![
            s("g/base", "work/g/w", "built"),
            s("g/a", "work/g/w", "built"),
            s("g/b", "work/g/w", "built"),
            s("g/c", "work/g/v", "built"),
        ]
    );
    // Two jobs: the other chain started while the shared stage was still building.
    let num = |i: usize, k: &str| v["builds"][i][k].as_f64().unwrap();
    assert!(
        num(3, "started") < num(0, "started") + num(0, "seconds"),
        "g/c did not run beside g/base: {v:#}"
    );
    // One log per build, the shared stage's showing a single build.
    let logs: Vec<String> = v["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["log"].as_str().unwrap().to_string())
        .collect();
    let unique: std::collections::HashSet<_> = logs.iter().collect();
    assert_eq!(unique.len(), 4);
    let base_log = std::fs::read_to_string(&logs[0]).unwrap();
    assert_eq!(
        base_log.matches("\"event\":\"start\"").count(),
        1,
        "{base_log}"
    );
    assert_eq!(
        base_log.matches("\"event\":\"cache_miss\"").count(),
        1,
        "{base_log}"
    );
    for (i, name) in [(1, "a.tar.gz"), (2, "b.tar.gz"), (3, "c.tar.gz")] {
        let outs = v["builds"][i]["outputs"].as_array().unwrap();
        assert!(
            outs.iter()
                .any(|o| o.as_str().unwrap().ends_with(name)
                    && Path::new(o.as_str().unwrap()).is_file()),
            "{outs:?}"
        );
    }
    let snaps = zfs.snapshots(&format!("{root}/work/g/w")).unwrap();
    assert_eq!(snaps, vec![format!("{root}/work/g/w@one")]);
    let md = std::fs::read_to_string(dir.path().join("report/matrix.md")).unwrap();
    assert!(md.contains("| g/base | work/g/w | built |"), "{md}");

    // A second run finds the shared stage current.
    let v = matrix(dir.path(), &root);
    assert_eq!(rows(&v)[0], s("g/base", "work/g/w", "cached"));
}
