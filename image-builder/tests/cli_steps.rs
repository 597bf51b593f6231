//! `build --until/--from` and `shell`: what they refuse before anything starts.

use std::path::Path;
use std::process::Output;

use crate::cli::{assert_no_panic, run, stderr};

/// A template tree with group `g`: `s`, a dataset stage of `steps` ensure_dir steps, and
/// `p`, an empty pool image.
fn stage_and_pool(steps: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("g")).unwrap();
    let steps: Vec<String> = (0..steps)
        .map(|i| {
            format!(
                r#"{{ "t": "ensure_dir", "dir": "/{}", "owner": "root", "group": "root", "mode": "755" }}"#,
                (b'a' + i as u8) as char
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("g/s.json"),
        format!(
            r#"{{ "dataset": {{ "name": "w" }}, "steps": [ {} ] }}"#,
            steps.join(", ")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("g/p.json"),
        r#"{ "pool": { "name": "rpool", "size": 64 }, "steps": [] }"#,
    )
    .unwrap();
    dir
}

/// `image-builder SUB -d nosuchpool/images -T DIR -g g -n NAME MORE...`.
fn on_template(sub: &str, dir: &tempfile::TempDir, name: &str, more: &[&str]) -> Output {
    let t = dir.path().display().to_string();
    let mut a = vec![
        sub,
        "-d",
        "nosuchpool/images",
        "-T",
        &t,
        "-g",
        "g",
        "-n",
        name,
    ];
    a.extend_from_slice(more);
    run(&a)
}

#[test]
fn build_until_and_from_refuse_an_unknown_step_or_an_image_target_before_anything_starts() {
    let dir = stage_and_pool(2);
    let build = |name: &str, more: &[&str]| on_template("build", &dir, name, more);
    for (flag, value) in [
        ("--until", "2"),
        ("--from", "g/s.json:steps[5]"),
        ("--until", "s.json:1"),
    ] {
        let o = build("s", &[flag, value]);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}");
        assert_eq!(
            stderr(&o),
            format!(
                "error: {flag} {value:?} names no step of g/s: give the index or the \
                 FILE:steps[N] place `plan` prints, one of:\n  \
                 0  ensure_dir           g/s.json:steps[0]\n  \
                 1  ensure_dir           g/s.json:steps[1]\n"
            )
        );
    }
    let o = build("s", &["--from", "1", "--until", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: --from 1 comes after --until 0: no step would run\n"
    );
    let o = build("p", &["--until", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(
            "error: --until and --from: only a dataset stage keeps its tree after the build, \
             and a pool image is built in a temporary pool"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn shell_refuses_bad_input_before_anything_starts() {
    let dir = stage_and_pool(1);
    let shell = |name: &str, more: &[&str]| on_template("shell", &dir, name, more);
    let o = shell("s", &["--at", "1", "--", "/bin/true"]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: --at \"1\" names no step of g/s:"),
        "{}",
        stderr(&o)
    );
    let o = shell("p", &["--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(
            "error: shell: only a dataset stage keeps its tree after the build, and a pool image"
        ),
        "{}",
        stderr(&o)
    );
    // Without /dev/zfs the stage lives in the embedded guest, which has no terminal to
    // give an interactive shell.
    if !Path::new("/dev/zfs").exists() && std::env::consts::OS == "linux" {
        let o = shell("s", &[]);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o)
                .starts_with("error: an interactive shell cannot run in the embedded ZFS guest"),
            "{}",
            stderr(&o)
        );
    }
}
