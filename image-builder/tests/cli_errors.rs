//! Exit statuses and error reports: what is refused before anything starts, a template
//! error from every command that reads it, and errors as JSON with `--json`.

use std::path::Path;

use crate::cli::{assert_no_panic, run, stderr};

#[test]
fn build_in_zone_is_refused_off_illumos_before_anything_starts() {
    if Path::new("/usr/sbin/zoneadm").exists() {
        eprintln!("skipped: this host has zones");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("g")).unwrap();
    std::fs::write(
        dir.path().join("g/z.json"),
        r#"{ "zone": { "name": "z", "brand": "sparse" }, "steps": [] }"#,
    )
    .unwrap();
    let t = dir.path().display().to_string();
    let o = run(&[
        "build",
        "--in-zone",
        "ib1",
        "-d",
        "nosuchpool/images",
        "-T",
        &t,
        "-g",
        "g",
        "-n",
        "z",
    ]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: --in-zone needs an illumos host with zones; this is a Linux host\n"
    );
}

#[test]
fn build_in_zone_refuses_the_targets_a_zone_cannot_build_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("g")).unwrap();
    let t = dir.path().display().to_string();
    for (name, json, said) in [
        (
            "p",
            r#"{ "pool": { "name": "rpool", "size": 64 }, "steps": [] }"#,
            "a pool image: it needs a lofi device and zpool create on it",
        ),
        (
            "u",
            r#"{ "ufs": { "size": 16, "inode_density": 4096 }, "steps": [] }"#,
            "a ufs image",
        ),
        (
            "f",
            r#"{ "pcfs": { "label": "ESP", "size": 33 }, "steps": [] }"#,
            "a pcfs image",
        ),
        (
            "h",
            r#"{ "iso": { "boot_uefi": "boot/efiboot.img",
                          "hybrid": { "stage1": "boot/pmbr", "stage2": "boot/isoboot" } },
                 "steps": [] }"#,
            "a hybrid iso image",
        ),
    ] {
        std::fs::write(dir.path().join(format!("g/{name}.json")), json).unwrap();
        let o = run(&[
            "build",
            "--in-zone",
            "ib1",
            "-d",
            "nosuchpool/images",
            "-T",
            &t,
            "-g",
            "g",
            "-n",
            name,
        ]);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let e = stderr(&o);
        assert!(
            e.starts_with(&format!("error: --in-zone cannot build {said}"))
                && e.contains("only dataset, zone and (non-hybrid) iso targets build"),
            "{name}: {e}"
        );
    }
}

/// A file that cannot be read is a failure of the work (1), not bad usage (2).
#[test]
fn inspect_of_a_missing_image_exits_1() {
    let o = run(&["inspect", "/nonexistent/disk.raw"]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.starts_with("error: ") && e.contains("/nonexistent/disk.raw"),
        "{e}"
    );
}

/// A template tree with one template whose step type does not exist.
pub(crate) fn bad_template_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("g")).unwrap();
    std::fs::write(
        dir.path().join("g/bad.json"),
        r#"{ "dataset": { "name": "bad" }, "steps": [ { "t": "no_such_step" } ] }"#,
    )
    .unwrap();
    dir
}

/// The same template error exits 2 from every command that reads the template, and
/// nothing is started.
#[test]
fn a_template_error_exits_2_from_validate_plan_build_and_matrix() {
    let dir = bad_template_tree();
    let t = dir.path().display().to_string();
    let matrix = dir.path().join("m.json");
    std::fs::write(
        &matrix,
        r#"{ "builds": [ { "group": "g", "name": "bad" } ] }"#,
    )
    .unwrap();
    let m = matrix.display().to_string();
    let tpl = ["-T", t.as_str(), "-g", "g", "-n", "bad"];
    let runs: [Vec<&str>; 5] = [
        [&["validate"][..], &tpl].concat(),
        [&["plan"][..], &tpl].concat(),
        [&["plan", "-d", "nosuchpool/images"][..], &tpl].concat(),
        [&["build", "-d", "nosuchpool/images"][..], &tpl].concat(),
        vec!["matrix", &m, "-d", "nosuchpool/images", "-T", &t],
    ];
    for args in runs {
        let o = run(&args);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("no_such_step"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

/// With `--json`, the error that ends a command is one JSON object on standard output
/// (the event `error`, a kind, the fields it names and the message), beside the usual line
/// on standard error; the exit status is the same as without it.
#[test]
fn json_errors_are_objects_with_a_kind_and_fields() {
    let dir = bad_template_tree();
    let t = dir.path().display().to_string();
    let o = run(&[
        "build",
        "--json",
        "-d",
        "nosuchpool/images",
        "-T",
        &t,
        "-g",
        "g",
        "-n",
        "bad",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["event"], "error");
    assert_eq!(v["kind"], "invalid");
    assert_eq!(v["fields"]["errors"], 1);
    assert!(
        v["message"].as_str().unwrap().contains("nothing was built"),
        "{v}"
    );

    let o = run(&["inspect", "--json", "--no-vm", "/nonexistent/disk.raw"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(
        (v["event"].as_str(), v["kind"].as_str()),
        (Some("error"), Some("failed"))
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/disk.raw"),
        "{v}"
    );

    // Without --json nothing goes to standard output.
    let o = run(&["inspect", "--no-vm", "/nonexistent/disk.raw"]);
    assert!(o.stdout.is_empty());
}

/// `validate --json`: one object a template on standard output, the same exit status.
#[test]
fn validate_json_reports_each_problem_with_its_place() {
    let dir = bad_template_tree();
    std::fs::write(
        dir.path().join("g/good.json"),
        r#"{ "dataset": { "name": "good" }, "steps": [] }"#,
    )
    .unwrap();
    let t = dir.path().display().to_string();
    let o = run(&["validate", "--json", "-T", &t, "--all"]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{text}");
    let bad = docs.iter().find(|d| d["name"] == "bad").unwrap();
    assert_eq!(bad["group"], "g");
    assert_eq!(bad["errors"], 1, "{bad}");
    let p = &bad["problems"][0];
    assert_eq!(p["severity"], "error", "{p}");
    assert_eq!(p["path"], "steps[0].t", "{p}");
    assert_eq!(p["line"], 1, "{p}");
    assert!(p["file"].as_str().unwrap().ends_with("g/bad.json"), "{p}");
    assert!(
        p["message"].as_str().unwrap().contains("no_such_step"),
        "{p}"
    );
    let good = docs.iter().find(|d| d["name"] == "good").unwrap();
    assert_eq!(
        (
            good["errors"].as_u64(),
            good["problems"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    // Nothing but JSON on standard output; the problems are not repeated as text.
    assert!(!stderr(&o).contains("no_such_step"), "{}", stderr(&o));
}

/// Input files that do not parse are bad input (2) wherever they are read: a matrix,
/// a checklist, a VM spec.
#[test]
fn unparsable_input_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{ not json").unwrap();
    let j = junk.display().to_string();
    let img = dir.path().join("disk.raw");
    std::fs::write(&img, b"").unwrap();
    let i = img.display().to_string();
    let report = dir.path().join("report").display().to_string();
    for args in [
        vec!["matrix", &j, "-d", "nosuchpool/images", "-T", "/"],
        vec!["test", &i, "--check", &j, "--report", &report],
        vec!["vm", "--spec", &j, "--print", "qemu"],
    ] {
        let o = run(&args);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("error: "),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn checkpoint_options_out_of_range_or_at_odds_are_usage_errors() {
    for (args, want) in [
        (
            vec!["--checkpoint-budget", "250"],
            "invalid value '250' for '--checkpoint-budget <PERCENT>': \"250\" is not a percentage from 0 to 100",
        ),
        (
            vec!["--no-checkpoints", "--checkpoint-after", "5"],
            "the argument '--no-checkpoints' cannot be used with '--checkpoint-after <SECONDS>'",
        ),
    ] {
        let mut all = vec!["build", "-d", "nosuchpool/images", "-g", "g", "-n", "s"];
        all.extend(args);
        let o = run(&all);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{all:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{all:?}: {}", stderr(&o));
    }
}
