//! The `p9sync` command line against a real diod.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{data, Diod};
use runner::{Cmd, Runner, SystemRunner};

fn p9sync(args: &[&str]) -> runner::Output {
    let r = SystemRunner::new().with_default_timeout(Duration::from_secs(60));
    r.output(
        &Cmd::new(env!("CARGO_BIN_EXE_p9sync"))
            .args(args)
            .tag("p9sync"),
    )
    .unwrap()
}

#[test]
fn sync_then_resync_then_ls_from_the_command_line() {
    let exp = tempfile::tempdir().unwrap();
    let rel = exp.path().join("target/release");
    fs::create_dir_all(&rel).unwrap();
    fs::write(rel.join("plugin"), data(3, 50_000)).unwrap();
    fs::set_permissions(rel.join("plugin"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("plugin", rel.join("current")).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let Some(d) = Diod::start(exp.path()) else {
        return;
    };
    let addr = d.addr();
    let aname = exp.path().to_str().unwrap();
    let out_dir = dest.path().join("release");
    let args = [
        "sync",
        "--tcp",
        &addr,
        "--aname",
        aname,
        "--remote",
        "target/release",
        "--dest",
        out_dir.to_str().unwrap(),
        "--msize",
        "8192",
    ];

    let first = p9sync(&args);
    assert!(first.success(), "{}", first.stderr_tail(5));
    assert!(
        first
            .stdout_str()
            .starts_with("copied 1 files (50000 bytes), 1 links, 0 unchanged"),
        "{}",
        first.stdout_str()
    );
    assert!(first.stdout_str().contains("msize 8192"));
    assert_eq!(fs::read(out_dir.join("plugin")).unwrap(), data(3, 50_000));
    assert_eq!(
        fs::metadata(out_dir.join("plugin"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    let again = p9sync(&args);
    assert!(
        again
            .stdout_str()
            .starts_with("copied 0 files (0 bytes), 0 links, 2 unchanged, 0 deleted"),
        "{}",
        again.stdout_str()
    );

    let ls = p9sync(&["ls", "--tcp", &addr, "--aname", aname, "target/release"]);
    assert!(ls.success(), "{}", ls.stderr_tail(5));
    let lines: Vec<_> = ls.stdout_str().lines().map(String::from).collect();
    assert!(lines.contains(&"file plugin".to_string()), "{lines:?}");
    assert!(lines.contains(&"link current".to_string()), "{lines:?}");
}

#[test]
fn exactly_one_transport_must_be_named() {
    let none = p9sync(&["sync", "--dest", "/nonexistent-p9sync-dest"]);
    assert!(!none.success());
    let two = p9sync(&["ls", "--tcp", "127.0.0.1:1", "--dev", "/dev/null"]);
    assert!(!two.success());
    assert!(
        String::from_utf8_lossy(&two.stderr).contains("cannot be used with"),
        "{}",
        two.stderr_tail(3)
    );
}

#[test]
fn a_busy_or_missing_device_is_reported_by_path() {
    let out = p9sync(&["ls", "--dev", "/nonexistent/9p/repo"]);
    assert!(!out.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/9p/repo"),
        "{}",
        out.stderr_tail(3)
    );
}

#[test]
fn every_help_shows_the_exit_status_table() {
    for args in [&["--help"][..], &["sync", "--help"], &["ls", "--help"]] {
        let o = p9sync(args);
        assert!(o.success(), "{args:?}: {}", o.stderr_tail(5));
        let out = o.stdout_str();
        for line in [
            "Exit status:",
            "  0    success",
            "  1    the work failed",
            "  2    bad usage or input that can be fixed",
        ] {
            assert!(out.contains(line), "{args:?} lacks {line:?}: {out}");
        }
    }
}

/// Bad usage exits 2; a server that cannot be reached is a failure of the work (1).
#[test]
fn exit_statuses_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let sock = sock.to_str().unwrap();
    let dest = dir.path().join("d");
    let dest = dest.to_str().unwrap();
    for args in [
        &["ls", "--bogus"][..],
        &["ls"],
        &["sync", "--unix", sock],
        &[
            "sync",
            "--unix",
            sock,
            "--tcp",
            "127.0.0.1:1",
            "--dest",
            dest,
        ],
    ] {
        let o = p9sync(args);
        assert_eq!(o.code, Some(2), "{args:?}: {}", o.stderr_tail(5));
    }
    for args in [
        &["ls", "--unix", sock][..],
        &["sync", "--unix", sock, "--dest", dest],
    ] {
        let o = p9sync(args);
        assert_eq!(o.code, Some(1), "{args:?}: {}", o.stderr_tail(5));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            err.starts_with("error: ") && err.contains("none.sock"),
            "{err}"
        );
    }
}

#[test]
fn every_subcommand_has_a_man_page() {
    let dir = tempfile::tempdir().unwrap();
    let o = p9sync(&["man-pages", dir.path().to_str().unwrap()]);
    assert!(o.success(), "{}", o.stderr_tail(5));
    let mut have: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    assert_eq!(have, ["p9sync-ls.1", "p9sync-sync.1", "p9sync.1"]);
    let help = p9sync(&["--help"]).stdout_str();
    for sub in ["sync", "ls"] {
        assert!(help.contains(&format!("  {sub} ")), "{help}");
    }
    assert!(!help.contains("man-pages"), "{help}");
}

#[test]
fn quiet_and_colour_flags_parse_everywhere() {
    for args in [
        &["-q", "ls", "--help"][..],
        &["ls", "-vv", "--help"],
        &["--color", "never", "sync", "--help"],
    ] {
        let o = p9sync(args);
        assert!(o.success(), "{args:?}: {}", o.stderr_tail(5));
    }
    let o = p9sync(&["-q", "-v", "ls", "--unix", "/x"]);
    assert_eq!(o.code, Some(2));
}
