//! The `image-builder` command as a user runs it: exit codes and messages, never a panic.

use std::path::Path;
use std::process::{Command, Output};

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

/// One tree of the corpus: `$IMAGE_BUILDER_CORPUS`, or the shared material beside the
/// checkout. Missing, a test says `skipped: ...` and passes, except under CI (`CI` set).
fn corpus() -> Option<String> {
    let p = std::env::var_os("IMAGE_BUILDER_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"))
        .join("toasterson-installer");
    if p.is_dir() {
        return Some(p.display().to_string());
    }
    let why = format!(
        "the template corpus is not at {} (the shared material beside the checkout, or set IMAGE_BUILDER_CORPUS)",
        p.display()
    );
    assert!(std::env::var_os("CI").is_none_or(|v| v.is_empty()), "{why}");
    eprintln!("skipped: {why}");
    None
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
fn bad_feature_directives_exit_2_with_the_directive_named() {
    let Some(corpus) = corpus() else { return };
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
            &corpus,
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
    let Some(corpus) = corpus() else { return };
    let o = run(&[
        "validate",
        "-T",
        &corpus,
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
    let Some(corpus) = corpus() else { return };
    let ok = run(&[
        "validate",
        "-T",
        &corpus,
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
        &corpus,
        "-g",
        "installer",
        "-n",
        "generic-ttya-zfs",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("steps[8].src: source file \"install-helios.sh\" not found"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn build_refuses_ips_steps_on_a_host_without_pkg_before_touching_anything() {
    let Some(corpus) = corpus() else { return };
    if Path::new("/usr/bin/pkg").exists() {
        eprintln!("skipped: this host has pkg(1)");
        return;
    }
    let o = run(&[
        "build",
        "-d",
        "rpool/images",
        "-T",
        &corpus,
        "-g",
        "openindiana",
        "-n",
        "hipster-01-strap",
    ]);
    assert_no_panic(&o);
    // A build this host cannot run is refused before it starts: bad usage (2).
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.starts_with("error: step 0 (pkg_image_create, "), "{e}");
    assert!(e.contains("needs /usr/bin/pkg, which this Linux host does not have: IPS steps run on an illumos host"), "{e}");
    assert_eq!(e.matches("needs /usr/bin/pkg").count(), 4, "{e}");
}

#[test]
fn plan_json_lists_expanded_steps_with_their_sources() {
    let Some(corpus) = corpus() else { return };
    let present = format!("{}/UPSTREAM-FILES.txt", corpus);
    let o = run(&[
        "plan",
        "--json",
        "-T",
        &corpus,
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
fn bad_template_tree() -> tempfile::TempDir {
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
