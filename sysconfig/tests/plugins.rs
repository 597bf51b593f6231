//! Real plugin programs against the daemon: the shipped hostname plugin next to plugins
//! that hang, crash, or answer garbage. Each bad one is reported by name; the good one
//! still configures the root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use sysconfig::config::{Config, SourceKind};
use sysconfig::daemon::{self, Mode, Options};

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(format!("sysconfig-plugin-{name}"));
    std::fs::write(&p, format!("#!/bin/sh\nread line\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn describe_then(keys: &str, otherwise: &str) -> String {
    format!(
        "case \"$line\" in\n  *'\"describe\"'*) echo '{{\"protocol\":1,\"result\":{{\"name\":\"x\",\"version\":\"1\",\"keys\":[{keys}]}}}}' ;;\n  *) {otherwise} ;;\nesac"
    )
}

fn setup() -> (tempfile::TempDir, Config) {
    let t = tempfile::tempdir().unwrap();
    let plugins = t.path().join("plugins");
    let root = t.path().join("root");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(root.join("etc/inet")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_sysconfig-plugin-hostname"),
        plugins.join("sysconfig-plugin-hostname"),
    )
    .unwrap();
    // cargo leaves dependency files beside the programs; they must not count as plugins.
    std::fs::write(plugins.join("sysconfig-plugin-hostname.d"), "").unwrap();
    std::fs::write(
        root.join("etc/sysconfig-desired.json"),
        r#"{"hostname":"good","timezone":"UTC","dns":{"nameservers":["10.0.0.1"]},"files":[{"path":"/x"}]}"#,
    )
    .unwrap();
    let mut cfg = Config::default();
    cfg.plugins.path = plugins;
    cfg.plugins.plan_timeout_secs = 1;
    cfg.plugins.apply_timeout_secs = 1;
    cfg.plugins.describe_timeout_secs = 2;
    cfg.sources.order = vec![SourceKind::Local];
    cfg.sources.local = "/etc/sysconfig-desired.json".into();
    (t, cfg)
}

#[test]
fn hanging_crashing_and_garbage_plugins_are_named_and_the_rest_still_runs() {
    let (t, cfg) = setup();
    let dir = &cfg.plugins.path;
    script(dir, "hang", &describe_then("\"timezone\"", "sleep 30"));
    script(
        dir,
        "crash",
        &describe_then("\"dns\"", "echo 'dns plugin exploded' >&2; kill -SEGV $$"),
    );
    script(
        dir,
        "garbage",
        &describe_then("\"files\"", "echo 'this is not json'"),
    );
    script(dir, "mute", "exit 0");
    let root = t.path().join("root");
    let start = Instant::now();
    let mut out = Vec::new();
    let report = daemon::run(
        &cfg,
        &Options {
            root: root.clone(),
            dry_run: false,
            mode: Mode::Apply,
        },
        &runner::SystemRunner::new(),
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "a hanging plugin must be cut off"
    );
    assert!(!report.ok());
    let errors = report.plugin_errors.join("\n");
    assert!(
        errors.contains("plugin hang: `") && errors.contains("did not finish within 1s"),
        "{errors}"
    );
    assert!(
        errors.contains("plugin crash exited with killed by a signal: dns plugin exploded"),
        "{errors}"
    );
    assert!(
        errors.contains("plugin garbage answered garbage"),
        "{errors}"
    );
    assert!(
        errors.contains("plugin mute answered garbage: no response line"),
        "{errors}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/nodename")).unwrap(),
        "good\n",
        "{text}"
    );
    assert!(text.contains("hostname: nodename ok"), "{text}");
    let applied = std::fs::read_to_string(root.join("var/lib/sysconfig/applied.json")).unwrap();
    let applied: serde_json::Value = serde_json::from_str(&applied).unwrap();
    assert_eq!(applied["ok"], false);
    assert_eq!(applied["applied"]["hostname"], "good");
    assert!(applied["applied"].get("timezone").is_none());
}

#[test]
fn two_plugins_claiming_one_key_is_an_error_at_start() {
    let (t, cfg) = setup();
    script(
        &cfg.plugins.path,
        "other",
        &describe_then("\"hostname\"", "exit 1"),
    );
    let err = daemon::run(
        &cfg,
        &Options {
            root: t.path().join("root"),
            dry_run: false,
            mode: Mode::Apply,
        },
        &runner::SystemRunner::new(),
        &mut Vec::new(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "key `hostname` is claimed by both plugin hostname and plugin other"
    );
    assert!(!t.path().join("root/etc/nodename").exists());
}

#[test]
fn a_plugin_speaking_another_protocol_version_is_refused() {
    let (t, cfg) = setup();
    script(
        &cfg.plugins.path,
        "future",
        "echo '{\"protocol\":2,\"result\":{}}'",
    );
    let report = daemon::run(
        &cfg,
        &Options {
            root: t.path().join("root"),
            dry_run: true,
            mode: Mode::Apply,
        },
        &runner::SystemRunner::new(),
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(
        report.plugin_errors,
        ["plugin future answered garbage: protocol version 2 (expected 1)"]
    );
}

#[test]
fn the_multi_call_program_serves_the_plugin_its_link_is_named_after() {
    let (t, mut cfg) = setup();
    let dir = t.path().join("multi");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["hostname", "timezone"] {
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_sysconfig-plugins"),
            dir.join(format!("sysconfig-plugin-{name}")),
        )
        .unwrap();
    }
    cfg.plugins.path = dir;
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("etc/default")).unwrap();
    let report = daemon::run(
        &cfg,
        &Options {
            root: root.clone(),
            dry_run: false,
            mode: Mode::Apply,
        },
        &runner::SystemRunner::new(),
        &mut Vec::new(),
    )
    .unwrap();
    assert!(
        report.plugin_errors.is_empty(),
        "{:?}",
        report.plugin_errors
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/nodename")).unwrap(),
        "good\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/default/init")).unwrap(),
        "TZ=UTC\n"
    );
    let direct = std::process::Command::new(env!("CARGO_BIN_EXE_sysconfig-plugins"))
        .output()
        .unwrap();
    assert_eq!(direct.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&direct.stderr).contains("dns, files, hostname"));
}

#[test]
fn the_zones_program_plans_a_zone_and_skips_it_under_an_alternate_root() {
    let (t, mut cfg) = setup();
    let dir = t.path().join("zones-plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_sysconfig-plugins"),
        dir.join("sysconfig-plugin-zones"),
    )
    .unwrap();
    cfg.plugins.path = dir;
    cfg.sources.local = "/etc/sysconfig.d/desired.toml".into();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("etc/sysconfig.d")).unwrap();
    std::fs::write(
        root.join("etc/sysconfig.d/desired.toml"),
        "[[zones]]\nname = \"web\"\nimage = \"/var/tmp/web.zone.tar\"\n\n[[zones.networks]]\nphysical = \"web0\"\nallowed_address = \"10.0.0.5/24\"\n",
    )
    .unwrap();
    let run = |cfg: &Config| {
        daemon::run(
            cfg,
            &Options {
                root: root.clone(),
                dry_run: false,
                mode: Mode::Apply,
            },
            &runner::SystemRunner::new(),
            &mut Vec::new(),
        )
        .unwrap()
    };
    let report = run(&cfg);
    assert!(report.ok(), "{:?}", report.plugin_errors);
    let got: Vec<(&str, &str, Option<&str>)> = report
        .results
        .iter()
        .map(|r| (r.id.as_str(), r.status.as_str(), r.message.as_deref()))
        .collect();
    let why = Some("zones are configured on the running system; not run under an alternate root");
    assert_eq!(
        got,
        [
            ("web/configure", "skipped", why),
            ("web/install", "skipped", why),
            ("web/boot", "skipped", why)
        ]
    );
    std::fs::write(
        root.join("etc/sysconfig.d/desired.toml"),
        "[[zones]]\nname = \"global\"\n",
    )
    .unwrap();
    let report = run(&cfg);
    assert_eq!(
        report.plugin_errors,
        ["plugin zones reported an error: zones[0].name: \"global\" is the global zone's name"]
    );
}

/// One request line to a shipped plugin program, its one response line back.
fn ask(program: &str, request: &str) -> serde_json::Value {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{request}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_shipped_plugin_names_an_ill_typed_key_and_value_and_carries_its_change_data() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().display().to_string();
    let bad = ask(
        env!("CARGO_BIN_EXE_sysconfig-plugin-dns"),
        &format!(
            r#"{{"protocol":1,"method":"plan","params":{{"root":"{root}","desired":{{"dns":{{"nameservers":"10.0.0.1"}}}}}}}}"#
        ),
    );
    assert_eq!(
        bad,
        serde_json::json!({"protocol": 1, "error": "dns.nameservers = \"10.0.0.1\": invalid type: string \"10.0.0.1\", expected a sequence"})
    );
    let plan = ask(
        env!("CARGO_BIN_EXE_sysconfig-plugin-hostname"),
        &format!(
            r#"{{"protocol":1,"method":"plan","params":{{"root":"{root}","desired":{{"hostname":"web1"}}}}}}"#
        ),
    );
    let changes = &plan["result"]["changes"];
    assert_eq!(
        changes[0],
        serde_json::json!({"id": "nodename", "key": "hostname", "summary": "set /etc/nodename to web1", "data": {"op": "nodename"}})
    );
    // The changes go back as they came, and apply reads each one's data.
    let apply = ask(
        env!("CARGO_BIN_EXE_sysconfig-plugin-hostname"),
        &format!(
            r#"{{"protocol":1,"method":"apply","params":{{"root":"{root}","dry_run":false,"desired":{{"hostname":"web1"}},"changes":{changes}}}}}"#
        ),
    );
    let results = apply["result"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{apply}");
    assert!(results.iter().all(|r| r["status"] == "ok"), "{apply}");
    assert_eq!(
        std::fs::read_to_string(t.path().join("etc/nodename")).unwrap(),
        "web1\n"
    );
}
