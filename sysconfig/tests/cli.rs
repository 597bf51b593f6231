//! The `sysconfig` program end to end on a temporary root, with the shipped plugins.

use std::path::{Path, PathBuf};
use std::process::Command;

fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_sysconfig"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Env {
    t: tempfile::TempDir,
}

impl Env {
    fn new(desired: &str) -> Env {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        for d in ["etc/inet", "etc/default", "export/home"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nann:x:1234:10::/export/home/ann:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/shadow"), "root:*:::::::\nann:*LK*:::::::\n").unwrap();
        std::fs::write(root.join("etc/group"), "root::0:\nstaff::10:\n").unwrap();
        std::fs::write(root.join("etc/nsswitch.dns"), "hosts: files dns\n").unwrap();
        std::fs::write(root.join("etc/sysconfig-desired.toml"), desired).unwrap();
        let cfg = format!(
            "[plugins]\npath = \"{}\"\n\n[logging]\nlevel = \"debug\"\noutput = \"console\"\n\n[sources]\norder = [\"local\"]\nlocal = \"/etc/sysconfig-desired.toml\"\n",
            plugin_dir().display()
        );
        std::fs::write(t.path().join("sysconfig.toml"), cfg).unwrap();
        Env { t }
    }

    fn root(&self) -> PathBuf {
        self.t.path().join("root")
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_sysconfig"))
            .arg("-c")
            .arg(self.t.path().join("sysconfig.toml"))
            .arg("-R")
            .arg(self.root())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

const DESIRED: &str = r#"
instance_id = "i-cli-1"
hostname = "cli1"
timezone = "UTC"

[dns]
nameservers = ["10.0.0.1", "10.0.0.2"]
search = ["example.org"]

[network]
default_route = "10.0.0.1"

[[network.interfaces]]
name = "vioif0"
addresses = [{ kind = "dhcp" }]

[[network.interfaces]]
name = "vioif1"
addresses = [{ kind = "static", address = "10.0.1.5/24" }]

[[users]]
name = "ann"
password_hash = "$6$salt$TopSecretHash"
ssh_authorized_keys = ["ssh-ed25519 AAAA ann@laptop"]
"#;

#[test]
fn dry_run_prints_every_change_and_touches_nothing() {
    let e = Env::new(DESIRED);
    let (code, out, err) = e.run(&["--dry-run", "apply"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for want in [
        "hostname: set /etc/nodename to cli1",
        "would write: /etc/nodename (0644)",
        "would write: /etc/resolv.conf (0644)",
        "would write: /etc/defaultrouter (0644)",
        "would write: /export/home/ann/.ssh/authorized_keys (0600 1234:10)",
        "would write: /etc/default/init (0644)",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!e.root().join("etc/nodename").exists());
    assert!(!e.root().join("var/lib/sysconfig").exists());
    assert!(
        !out.contains("TopSecretHash") && !err.contains("TopSecretHash"),
        "hash leaked:\n{out}\n{err}"
    );
}

#[test]
fn apply_then_run_again_is_a_no_op_for_the_same_instance() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED apply_then_run_again_is_a_no_op_for_the_same_instance: needs root to give ann her authorized_keys");
        return;
    }
    let e = Env::new(DESIRED);
    let (code, out, err) = e.run(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        std::fs::read_to_string(e.root().join("etc/nodename")).unwrap(),
        "cli1\n"
    );
    assert!(std::fs::read_to_string(e.root().join("etc/shadow"))
        .unwrap()
        .contains("ann:$6$salt$TopSecretHash:"));
    assert!(e.root().join("var/lib/sysconfig/desired.json").exists());
    assert!(
        !err.contains("TopSecretHash") && !out.contains("TopSecretHash"),
        "hash leaked"
    );
    // ipadm acts on a running system only: skipped under -R, not failed.
    assert!(out.contains("network: vioif0/dhcp skipped"), "{out}");
    let (code, out, _) = e.run(&[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("instance i-cli-1 is already configured"),
        "{out}"
    );
    let (code, show, _) = e.run(&["show"]);
    assert_eq!(code, 0);
    assert!(show.contains("hostname: applied: \"cli1\""), "{show}");
    assert!(
        show.contains("<redacted>") && !show.contains("TopSecretHash"),
        "{show}"
    );
}

#[test]
fn a_failed_change_exits_non_zero_and_is_recorded() {
    let e = Env::new("hostname = \"ok1\"\n[[files]]\npath = \"/etc/motd\"\ncontent = \"hi\"\nowner = \"nosuchuser\"\n");
    let (code, out, err) = e.run(&["apply"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("files: /etc/motd failed: /etc/motd: no user `nosuchuser` in /etc/passwd"),
        "{out}"
    );
    let (_, show, _) = e.run(&["show"]);
    assert!(show.contains("failed: files /etc/motd"), "{show}");
    // A failed run is retried by the next start even for the same instance.
    let (code, out, _) = e.run(&[]);
    assert_eq!(code, 1);
    assert!(!out.contains("already configured"));
}

#[test]
fn malformed_local_metadata_leaves_the_previous_state_untouched() {
    let e = Env::new("hostname = \"first\"\n");
    assert_eq!(e.run(&["apply"]).0, 0);
    let state = e.root().join("var/lib/sysconfig");
    let before = (
        std::fs::read(state.join("desired.json")).unwrap(),
        std::fs::read(state.join("applied.json")).unwrap(),
    );
    std::fs::write(
        e.root().join("etc/sysconfig-desired.toml"),
        "hostname = \"second\"\nhostnme = \"typo\"\n",
    )
    .unwrap();
    let (code, _, err) = e.run(&["apply"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("source local: unknown field `hostnme`"),
        "{err}"
    );
    let after = (
        std::fs::read(state.join("desired.json")).unwrap(),
        std::fs::read(state.join("applied.json")).unwrap(),
    );
    assert_eq!(before, after);
    assert_eq!(
        std::fs::read_to_string(e.root().join("etc/nodename")).unwrap(),
        "first\n"
    );
}

#[test]
fn unknown_config_key_is_an_error_naming_it() {
    let e = Env::new("hostname = \"x\"\n");
    std::fs::write(
        e.t.path().join("sysconfig.toml"),
        "[plugins]\ndir = \"/x\"\n",
    )
    .unwrap();
    let (code, _, err) = e.run(&["plan"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown field `dir`"), "{err}");
}

#[test]
fn schema_subcommand_prints_the_json_schema() {
    let e = Env::new("");
    let (code, out, _) = e.run(&["schema"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["properties"]["network"].is_object(), "{out}");
}

#[test]
fn without_once_per_instance_every_start_applies_again() {
    let e = Env::new("hostname = \"dev1\"\n");
    let cfg = e.t.path().join("sysconfig.toml");
    let text = std::fs::read_to_string(&cfg).unwrap() + "\n[state]\nonce_per_instance = false\n";
    std::fs::write(&cfg, text).unwrap();
    assert_eq!(e.run(&[]).0, 0);
    std::fs::write(e.root().join("etc/nodename"), "changed-by-hand\n").unwrap();
    let (code, out, _) = e.run(&[]);
    assert_eq!(code, 0);
    assert!(!out.contains("already configured"), "{out}");
    assert_eq!(
        std::fs::read_to_string(e.root().join("etc/nodename")).unwrap(),
        "dev1\n"
    );
}

#[test]
fn a_nocloud_network_config_is_planned_by_mac_and_what_illumos_cannot_do_is_warned() {
    let e = Env::new("");
    let seed = e.root().join("var/lib/cloud/seed/nocloud");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("meta-data"), "instance-id: i-net-1\n").unwrap();
    std::fs::write(
        seed.join("network-config"),
        "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n  id1:\n    match:\n      macaddress: 52:54:00:ab:cd:ef\n    set-name: ens4\n    addresses: [192.0.2.5/24]\n    gateway6: 2001:db8::1\nbridges:\n  br0:\n    interfaces: [id1]\n",
    )
    .unwrap();
    let cfg = format!(
        "[plugins]\npath = \"{}\"\n\n[sources]\norder = [\"nocloud\"]\nnocloud_seed_dir = \"/var/lib/cloud/seed/nocloud\"\ndevices = []\n",
        plugin_dir().display()
    );
    std::fs::write(e.t.path().join("sysconfig.toml"), cfg).unwrap();
    let (code, out, err) = e.run(&["plan"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for line in [
        "network: warning: bridge br0: bridges are not configured on illumos; skipped",
        "network: warning: interface eth0 has no MAC address",
        "network: find the NIC with MAC 52:54:00:ab:cd:ef (id1)",
        "network: route to default via 2001:db8::1",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    // Linux names are never planned as links.
    assert!(
        !out.contains("IP interface eth0") && !out.contains("ens4"),
        "{out}"
    );
}

fn sysconfig(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sysconfig"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_help_shows_the_exit_status_table() {
    for args in [
        &["--help"][..],
        &["show", "--help"],
        &["plan", "--help"],
        &["apply", "--help"],
        &["schema", "--help"],
    ] {
        let (code, out, err) = sysconfig(args);
        assert_eq!(code, 0, "{args:?}: {err}");
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

/// Per subcommand: bad usage and a broken configuration file exit 2, a configuration
/// file that cannot be read exits 1 (like any file the work cannot read).
#[test]
fn exit_statuses_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[plugins]\ndir = \"/x\"\n").unwrap();
    let bad = bad.display().to_string();
    let missing = dir.path().join("missing.toml").display().to_string();
    let root = dir.path().display().to_string();
    for sub in [&[][..], &["show"], &["plan"], &["apply"]] {
        let (code, _, err) = sysconfig(&[&["--bogus"][..], sub].concat());
        assert_eq!(code, 2, "{sub:?} --bogus: {err}");
        let (code, _, err) = sysconfig(&[&["-c", &bad, "-R", &root][..], sub].concat());
        assert_eq!(code, 2, "{sub:?} with a bad config: {err}");
        assert!(err.contains("unknown field `dir`"), "{err}");
        let (code, _, err) = sysconfig(&[&["-c", &missing, "-R", &root][..], sub].concat());
        assert_eq!(code, 1, "{sub:?} with a missing config: {err}");
        assert!(err.contains("missing.toml"), "{err}");
    }
    // An alternate root that does not exist is bad usage.
    let e = Env::new("hostname = \"x\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_sysconfig"))
        .arg("-c")
        .arg(e.t.path().join("sysconfig.toml"))
        .args(["-R", "/nonexistent/root", "plan"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("alternate root /nonexistent/root"), "{err}");
    let (code, _, _) = sysconfig(&["schema"]);
    assert_eq!(code, 0);
}

#[test]
fn every_subcommand_has_a_man_page() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = sysconfig(&["man-pages", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let mut have: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    assert_eq!(
        have,
        [
            "sysconfig-apply.1",
            "sysconfig-plan.1",
            "sysconfig-schema.1",
            "sysconfig-show.1",
            "sysconfig.1"
        ]
    );
    let (_, help, _) = sysconfig(&["--help"]);
    for sub in ["show", "plan", "apply", "schema"] {
        assert!(
            help.contains(&format!("  {sub} ")),
            "{sub} not in --help: {help}"
        );
        let page = std::fs::read_to_string(dir.path().join(format!("sysconfig-{sub}.1"))).unwrap();
        assert!(page.contains(&format!(".TH sysconfig-{sub} 1")), "{page}");
    }
}

/// -q/-v move the configuration's log level; console colour only when asked for (standard
/// error is a pipe here) and never with NO_COLOR under auto.
#[test]
fn verbosity_and_colour_flags() {
    let e = Env::new("hostname = \"c1\"\n");
    // The configuration's level is debug.
    let (_, _, plain) = e.run(&["plan"]);
    assert!(plain.contains("DEBUG"), "{plain}");
    assert!(
        !plain.contains('\x1b'),
        "no ANSI codes in a redirected log: {plain}"
    );
    let (_, _, quiet) = e.run(&["-q", "plan"]);
    assert!(
        !quiet.contains("DEBUG") && !quiet.contains("INFO"),
        "{quiet}"
    );
    let (_, _, coloured) = e.run(&["--color", "always", "plan"]);
    assert!(coloured.contains("\x1b["), "{coloured}");
    let (code, _, _) = e.run(&["-q", "-v", "plan"]);
    assert_eq!(code, 2, "-q and -v conflict");
}

/// An Env reading a NoCloud seed directory (`/seed` in the root) instead of the local file.
fn nocloud_env(user_data: &str) -> Env {
    let e = Env::new("");
    let cfg = format!(
        "[plugins]\npath = \"{}\"\n\n[logging]\nlevel = \"debug\"\noutput = \"console\"\n\n[sources]\norder = [\"nocloud\"]\nnocloud_seed_dir = \"/seed\"\ndevices = []\n",
        plugin_dir().display()
    );
    std::fs::write(e.t.path().join("sysconfig.toml"), cfg).unwrap();
    let seed = e.root().join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(
        seed.join("meta-data"),
        "instance-id: iid-ud\npublic-keys: [ssh-ed25519 CLOUD key@cloud]\n",
    )
    .unwrap();
    std::fs::write(seed.join("user-data"), user_data).unwrap();
    e
}

#[test]
fn one_unusable_user_is_a_warning_in_the_plan_and_the_rest_applies() {
    let e = nocloud_env(
        "#cloud-config\nusers:\n  - name: Not Valid\n  - name: ann\n    lock_passwd: false\n    ssh_authorized_keys: from=\"10.0.0.1,10.0.0.2\" ssh-ed25519 ANN ann\nwrite_files:\n  - content: no path\n  - path: /etc/motd\n    content: hi\nruncmd: [[ls]]\n",
    );
    let (code, out, err) = e.run(&["plan"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("warning: source nocloud: user name \"Not Valid\" is not valid; skipped"),
        "{out}"
    );
    assert!(
        out.contains("warning: source nocloud: write_files[0]: no path; skipped"),
        "{out}"
    );
    assert!(
        out.contains("cloud-config key(s) not supported, ignored: runcmd"),
        "{out}"
    );
    let (code, out, err) = e.run(&["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(e.root().join("etc/motd")).unwrap(),
        "hi"
    );
    assert_eq!(
        std::fs::read_to_string(e.root().join("export/home/ann/.ssh/authorized_keys")).unwrap(),
        "from=\"10.0.0.1,10.0.0.2\" ssh-ed25519 ANN ann\n"
    );
    // The cloud's key goes to root although user-data has `users:`.
    assert_eq!(
        std::fs::read_to_string(e.root().join("root/.ssh/authorized_keys")).unwrap(),
        "ssh-ed25519 CLOUD key@cloud\n"
    );
}

#[test]
fn malformed_user_data_exits_2_before_any_state_is_written() {
    let e = nocloud_env("#cloud-config\nusers: [ann\n");
    let (code, out, err) = e.run(&["apply"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("source nocloud: user-data: part 1: line "),
        "{err}"
    );
    assert!(!e.root().join("var/lib/sysconfig").exists());
}

#[test]
fn a_toml_syntax_error_does_not_print_the_password_hash() {
    let e = Env::new("[[users]]\nname = \"ann\"\npassword_hash = \"$6$salt$TopSecretHash\n");
    let (code, out, err) = e.run(&["plan"]);
    assert_eq!(code, 2);
    assert!(
        !out.contains("TopSecret") && !err.contains("TopSecret"),
        "{out}{err}"
    );
    assert!(
        err.contains("/etc/sysconfig-desired.toml: line 3 column ")
            && err.contains("(key password_hash)"),
        "{err}"
    );
}

/// `plan --json` and `show --json`: one JSON object on standard output, hashes redacted.
#[test]
fn plan_and_show_print_json() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: plan_and_show_print_json needs root to apply ann's keys");
        return;
    }
    let e = Env::new(DESIRED);
    let (code, out, err) = e.run(&["plan", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    let changes = plan["changes"].as_array().unwrap();
    let hostname = changes
        .iter()
        .find(|c| c["plugin"] == "hostname")
        .expect("a hostname change");
    assert_eq!(hostname["key"], "hostname");
    assert_eq!(hostname["summary"], "set /etc/nodename to cli1");
    assert!(changes.iter().any(|c| c["plugin"] == "users"), "{plan}");
    assert_eq!(plan["plugin_errors"], serde_json::json!([]));
    assert!(!out.contains("TopSecretHash") && !err.contains("TopSecretHash"));
    // Nothing was stored by a plan.
    let (_, out, _) = e.run(&["show", "--json"]);
    let show: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&show["desired"], &show["applied"]),
        (&serde_json::Value::Null, &serde_json::Value::Null)
    );

    let (code, out, err) = e.run(&["apply"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = e.run(&["show", "--json"]);
    assert_eq!(code, 0, "{err}");
    let show: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(show["desired"]["desired"]["hostname"], "cli1", "{show}");
    assert_eq!(show["applied"]["ok"], true, "{show}");
    let keys = show["keys"].as_array().unwrap();
    assert!(
        keys.contains(&serde_json::json!({"key": "hostname", "state": "applied"})),
        "{show}"
    );
    assert!(!out.contains("TopSecretHash"), "{out}");
    assert!(out.contains("<redacted>"), "{out}");
}
