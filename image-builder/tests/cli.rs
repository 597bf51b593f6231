//! The `image-builder` command as a user runs it: exit codes and messages, never a panic.

use std::process::{Command, Output};

use crate::cli_errors::bad_template_tree;

pub(crate) fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run image-builder")
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn assert_no_panic(o: &Output) {
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
fn schema_is_json_and_markdown_covers_every_step() {
    let o = run(&["schema"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["oneOf"].as_array().unwrap().len(), 27);
    let md = String::from_utf8(run(&["schema", "--markdown"]).stdout).unwrap();
    assert!(md.contains("### `pkg_install`"));
}

/// Every subcommand: `image-builder` and each subcommand's `--help` end with the exit
/// status table.
const SUBCOMMANDS: [&str; 12] = [
    "build", "clean", "embedded", "inspect", "validate", "plan", "schema", "shell", "vm", "test",
    "matrix", "pull",
];

#[test]
fn every_help_shows_the_exit_status_table() {
    let top = run(&["--help"]);
    let text = String::from_utf8_lossy(&top.stdout).into_owned();
    for cmd in SUBCOMMANDS {
        assert!(text.contains(&format!("  {cmd} ")), "{cmd} missing: {text}");
    }
    let mut helps = vec![vec!["--help"]];
    helps.extend(SUBCOMMANDS.iter().map(|c| vec![*c, "--help"]));
    for args in helps {
        let o = run(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        for line in [
            "Exit status:",
            "  0    success",
            "  1    the work failed",
            "  2    bad usage or input that can be fixed",
            "  130  interrupted by SIGINT, SIGTERM or SIGHUP",
        ] {
            assert!(out.contains(line), "{args:?} lacks {line:?}: {out}");
        }
    }
}

/// The subcommands `--help` lists (the `Commands:` section), without `help`.
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect()
}

#[test]
fn every_subcommand_has_a_man_page() {
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    let subs = listed_subcommands(&help);
    assert_eq!(subs.len(), SUBCOMMANDS.len() + 1, "{subs:?}");
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["man-pages", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut want: Vec<String> = subs.iter().map(|s| format!("image-builder-{s}")).collect();
    // Subcommands of a subcommand (`embedded status`) get pages of their own.
    for s in &subs {
        let help = String::from_utf8(run(&[s.as_str(), "--help"]).stdout).unwrap();
        want.extend(
            listed_subcommands(&help)
                .iter()
                .map(|n| format!("image-builder-{s}-{n}")),
        );
    }
    want.push("image-builder".into());
    want.sort();
    let mut have: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    let mut pages: Vec<String> = want.iter().map(|w| format!("{w}.1")).collect();
    pages.sort();
    assert_eq!(have, pages);
    for name in &want {
        let page = std::fs::read_to_string(dir.path().join(format!("{name}.1"))).unwrap();
        assert!(page.contains(&format!(".TH {name} 1")), "{name}: {page}");
        assert!(page.contains(".SH SYNOPSIS"), "{name}");
    }
    let build = std::fs::read_to_string(dir.path().join("image-builder-build.1")).unwrap();
    assert!(build.contains("\\fBimage\\-builder build\\fR"), "{build}");
    assert!(build.contains("Exit status:"), "{build}");
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = run(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = String::from_utf8(o.stdout).unwrap();
        assert!(script.contains("image-builder"), "{shell}");
        assert!(
            script.contains("matrix"),
            "{shell}: subcommands are completed"
        );
    }
    // The bash script is valid bash.
    let o = run(&["completions", "bash"]);
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(bash.stdin.as_mut().unwrap(), &o.stdout).unwrap();
    assert!(bash.wait().unwrap().success());
    let o = run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `-v`/`-q` set the log level on every subcommand, and log output gets colour only
/// when asked for (standard error is a pipe here).
#[test]
fn verbosity_and_colour_flags() {
    // `clean` on a pool that does not exist: it runs zfs, logged at debug.
    let clean = ["clean", "-d", "nosuchpool/images"];
    let with = |pre: &[&str], env: Option<(&str, &str)>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_image-builder"));
        c.args(pre)
            .args(clean)
            .env_remove("NO_COLOR")
            .env_remove("IMAGE_BUILDER_LOG");
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (o.status.code(), stderr(&o))
    };
    let (_, plain) = with(&[], None);
    assert!(!plain.contains("DEBUG"), "{plain}");
    let (_, verbose) = with(&["-v"], None);
    assert!(
        verbose.contains("DEBUG") && verbose.contains("run: "),
        "{verbose}"
    );
    assert!(
        !verbose.contains('\x1b'),
        "no ANSI codes in a redirected log: {verbose}"
    );
    // After the subcommand too (the flags are global).
    let o = run(&["clean", "-d", "nosuchpool/images", "-v"]);
    assert!(stderr(&o).contains("DEBUG"));
    let (_, coloured) = with(&["-v", "--color", "always"], Some(("NO_COLOR", "1")));
    assert!(coloured.contains("\x1b["), "{coloured}");
    let (_, never) = with(&["-v", "--color", "never"], None);
    assert!(!never.contains('\x1b'), "{never}");
    // -qqq silences the log, whatever IMAGE_BUILDER_LOG says.
    let (_, quiet) = with(&["-qqq"], Some(("IMAGE_BUILDER_LOG", "trace")));
    for level in ["TRACE", "DEBUG", "INFO", "WARN"] {
        assert!(!quiet.contains(level), "{quiet}");
    }
    let (_, traced) = with(&[], Some(("IMAGE_BUILDER_LOG", "trace")));
    assert!(
        traced.contains("TRACE") || traced.contains("DEBUG"),
        "{traced}"
    );
    let o = run(&["-q", "-v", "clean", "-d", "x"]);
    assert_eq!(o.status.code(), Some(2), "-q and -v conflict");
    let o = run(&["--color", "sometimes", "schema"]);
    assert_eq!(o.status.code(), Some(2));
}

/// A password never comes from argv: the old flag is refused with what to use instead,
/// before anything boots.
#[test]
fn test_password_comes_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.raw");
    std::fs::write(&img, b"").unwrap();
    let img = img.display().to_string();
    let report = dir.path().join("r").display().to_string();
    let o = run(&["test", &img, "--report", &report, "--password", "hunter2"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("--password is no longer accepted")
            && e.contains("--password-file FILE or IMAGE_BUILDER_TEST_PASSWORD"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "the secret is not echoed: {e}");
    let o = run(&[
        "test",
        &img,
        "--report",
        &report,
        "--password-file",
        "/nonexistent/pw",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot read --password-file /nonexistent/pw"));
    let help = String::from_utf8(run(&["test", "--help"]).stdout).unwrap();
    assert!(help.contains("--password-file <FILE>"), "{help}");
    assert!(
        !help.contains("--password <"),
        "the old flag is hidden: {help}"
    );
}

/// Every subcommand runs with the invocation's one context, made once: with -v it is
/// logged once (the host, and the one time limit of zfs and zpool) whatever the
/// subcommand.
#[test]
fn every_subcommand_runs_with_one_context() {
    let dir = bad_template_tree();
    let t = dir.path().display().to_string();
    let matrix = dir.path().join("m.json");
    std::fs::write(
        &matrix,
        r#"{ "builds": [ { "group": "g", "name": "bad" } ] }"#,
    )
    .unwrap();
    let m = matrix.display().to_string();
    let missing = dir.path().join("missing.raw").display().to_string();
    let tpl = ["-T", t.as_str(), "-g", "g", "-n", "bad"];
    let runs: [Vec<&str>; 7] = [
        vec!["schema"],
        [&["validate"][..], &tpl].concat(),
        [&["plan"][..], &tpl].concat(),
        [&["build", "-d", "nosuchpool/images"][..], &tpl].concat(),
        vec!["matrix", &m, "-d", "nosuchpool/images", "-T", &t],
        vec!["clean", "-d", "nosuchpool/images"],
        vec!["inspect", "--no-vm", &missing],
    ];
    for args in runs {
        let o = Command::new(env!("CARGO_BIN_EXE_image-builder"))
            .arg("-v")
            .args(&args)
            .env_remove("IMAGE_BUILDER_LOG")
            .output()
            .unwrap();
        assert_no_panic(&o);
        let e = stderr(&o);
        assert_eq!(
            e.matches("zfs and zpool time out after 1800 s").count(),
            1,
            "{args:?}: {e}"
        );
    }
}
