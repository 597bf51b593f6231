//! The `image-builder` command as a user runs it: exit codes and messages, never a panic.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run image-builder")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One tree of the corpus: `$IMAGE_BUILDER_CORPUS`, or the shared material beside the
/// checkout.
fn corpus() -> String {
    std::env::var_os("IMAGE_BUILDER_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"))
        .join("toasterson-installer")
        .display()
        .to_string()
}

fn assert_no_panic(o: &Output) {
    let e = stderr(o);
    assert!(!e.contains("panicked"), "panic: {e}");
    assert_ne!(o.status.code(), Some(101), "exit 101 is a panic: {e}");
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["build", "--help"],
        vec!["validate", "--help"],
        vec!["plan", "--help"],
        vec!["schema", "--help"],
    ] {
        let o = run(&cmd);
        assert!(o.status.success(), "{cmd:?}: {}", stderr(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage: image-builder"),
            "{cmd:?}"
        );
    }
}

#[test]
fn bad_feature_directives_exit_2_with_the_directive_named() {
    for bad in [
        "^a+=x", "^a=1", "1abc", "a=", "a+=", "a-", "a--b=1", "=x", "",
    ] {
        let o = run(&[
            "build",
            "-d",
            "rpool/images",
            "-g",
            "openindiana",
            "-n",
            "hipster-01-strap",
            "-T",
            &corpus(),
            "-F",
            bad,
        ]);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with(&format!("error: invalid feature directive {bad:?}: ")),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn unknown_arguments_and_missing_required_ones_are_errors() {
    let o = run(&["build", "-g", "g", "-n", "n", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unexpected argument '--bogus'"),
        "{}",
        stderr(&o)
    );
    let o = run(&["build", "-g", "g", "-n", "n"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--dataset <DATASET>"), "{}", stderr(&o));
}

#[test]
fn external_source_directories_must_exist() {
    let o = run(&[
        "validate",
        "-T",
        &corpus(),
        "-g",
        "openindiana",
        "-n",
        "hipster-01-strap",
        "-E",
        "/nonexistent/proto",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: -E /nonexistent/proto: external file source must be an existing directory\n"
    );
}

#[test]
fn validate_exit_status_follows_errors() {
    let ok = run(&[
        "validate",
        "-T",
        &corpus(),
        "-g",
        "openindiana",
        "-n",
        "hipster-02-image",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(
        stderr(&ok),
        "openindiana/hipster-02-image: 0 error(s), 0 warning(s), 4 step(s)\n"
    );
    let bad = run(&[
        "validate",
        "-T",
        &corpus(),
        "-g",
        "installer",
        "-n",
        "generic-ttya-zfs",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("steps[8].src: source file \"install-helios.sh\" not found"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn build_refuses_ips_steps_on_a_host_without_pkg_before_touching_anything() {
    if Path::new("/usr/bin/pkg").exists() {
        eprintln!("skipped: this host has pkg(1)");
        return;
    }
    let o = run(&[
        "build",
        "-d",
        "rpool/images",
        "-T",
        &corpus(),
        "-g",
        "openindiana",
        "-n",
        "hipster-01-strap",
    ]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.starts_with("error: step 0 (pkg_image_create, "), "{e}");
    assert!(e.contains("needs /usr/bin/pkg, which this Linux host does not have: IPS steps run on an illumos host"), "{e}");
    assert_eq!(e.matches("needs /usr/bin/pkg").count(), 4, "{e}");
}

#[test]
fn plan_json_lists_expanded_steps_with_their_sources() {
    let present = format!("{}/UPSTREAM-FILES.txt", corpus());
    let o = run(&[
        "plan",
        "--json",
        "-T",
        &corpus(),
        "--assume-present",
        &present,
        "-g",
        "cloudimage",
        "-n",
        "ttya-openindiana-hipster",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["target"]["kind"], "pool");
    assert_eq!(v["target"]["name"], "rpool");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["t"], "create_be");
    assert_eq!(steps[1]["args"]["name"], "openindiana-hipster.tar.gz");
    let devfs = steps.iter().find(|s| s["t"] == "devfsadm").unwrap();
    assert!(devfs["file"]
        .as_str()
        .unwrap()
        .ends_with("include/devfs.json"));
    assert_eq!(devfs["step_index"], 0);
}

#[test]
fn schema_is_json_and_markdown_covers_every_step() {
    let o = run(&["schema"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["oneOf"].as_array().unwrap().len(), 27);
    let md = String::from_utf8(run(&["schema", "--markdown"]).stdout).unwrap();
    assert!(md.contains("### `pkg_install`"));
}

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
    assert_eq!(o.status.code(), Some(1));
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
