//! cloud-init as the oracle for user-data: every document of `tests/metadata/` (made by
//! `tests/metadata/make_corpus.py`) goes through sysconfig's NoCloud source and through
//! cloud-init's own modules (`tests/oracle/cloudinit_meaning.py`), and what sysconfig
//! would configure must mean what cloud-init would: the host name, users (gecos, home,
//! shell, primary group, uid, groups, the password field, sudo rules, SSH keys as
//! `ssh_util.AuthKeyLineParser` renders the lines cloud-init writes), the
//! groups created, root's keys (the cloud's meta-data `public-keys` and the top-level
//! `ssh_authorized_keys`), and the files (path, bytes, mode, owner, group, append,
//! defer). What cloud-init skips sysconfig skips; what sysconfig leaves out that
//! cloud-init would do must be named in a warning; a part type without a handler is
//! named in a warning; a document sysconfig refuses (exit 2) is one cloud-init could
//! only have ignored (bad YAML, a cloud-config that is not a mapping). The NoCloud seeds
//! made by `cloud-localds` (`*.cidata.vfat`, `*.cidata.iso`) are read from the volume by
//! sysconfig and compared with what cloud-init makes of the files they were made from.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{json, Value};
use sysconfig::sources::nocloud::{self, Seed};
use sysconfig::sources::volume::Volume;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metadata")
}

fn python_with_cloudinit() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import cloudinit.user_data, yaml"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// What cloud-init makes of each (user-data, meta-data) pair, in one Python process.
fn oracle(py: &str, seeds: &[(Vec<u8>, String)]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/cloudinit_meaning.py");
    let mut child = Command::new(py)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let req: Vec<Value> = seeds
        .iter()
        .map(|(ud, meta)| json!({"user_data": B64.encode(ud), "meta_data": meta}))
        .collect();
    let req = Value::Array(req);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.len(), seeds.len());
    all
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// One user's meaning as the oracle writes it, from sysconfig's desired user.
fn user_meaning(u: &Value) -> Value {
    let mut m = serde_json::Map::new();
    for (ours, theirs) in [
        ("gecos", "gecos"),
        ("home", "home"),
        ("shell", "shell"),
        ("group", "group"),
    ] {
        if let Some(v) = u.get(ours) {
            m.insert(theirs.into(), v.clone());
        }
    }
    if let Some(v) = u.get("uid") {
        m.insert("uid".into(), v.clone());
    }
    if let Some(g) = u.get("groups") {
        m.insert("groups".into(), g.clone());
    }
    let field = if u["lock_password"] == true {
        json!("NP")
    } else {
        u.get("password_hash").cloned().unwrap_or(Value::Null)
    };
    m.insert("password_field".into(), field);
    if let Some(s) = u.get("sudo") {
        m.insert("sudo".into(), s.clone());
    }
    if let Some(k) = u.get("ssh_authorized_keys") {
        let set: BTreeSet<String> = strs(k).into_iter().collect();
        m.insert("keys".into(), json!(set));
    }
    Value::Object(m)
}

fn file_meaning(f: &Value, defer: bool) -> Value {
    let content = match f["encoding"].as_str() {
        Some("base64") => B64.decode(f["content"].as_str().unwrap()).unwrap(),
        _ => f["content"].as_str().unwrap_or("").as_bytes().to_vec(),
    };
    json!({
        "path": f["path"],
        "content": B64.encode(content),
        "mode": u32::from_str_radix(f["mode"].as_str().unwrap_or("0644"), 8).unwrap(),
        "owner": f.get("owner").cloned().unwrap_or(json!("root")),
        "group": f.get("group").cloned().unwrap_or(json!("root")),
        "append": f.get("append").cloned().unwrap_or(json!(false)),
        "defer": defer,
    })
}

/// Differences between sysconfig's result and the oracle's, as messages.
fn compare(
    name: &str,
    ours: Result<sysconfig::sources::Found, String>,
    theirs: &Value,
) -> Vec<String> {
    let mut bad = Vec::new();
    let malformed = theirs["malformed"] == true;
    let found = match (ours, malformed) {
        (Err(_), true) => return bad,
        (Ok(_), true) => {
            return vec![format!(
                "{name}: cloud-init finds it malformed, sysconfig accepts it"
            )]
        }
        (Err(e), false) => return vec![format!("{name}: sysconfig refuses it: {e}")],
        (Ok(f), false) => f,
    };
    let d = Value::Object(found.desired.clone());
    let warned = |what: &str| found.warnings.iter().any(|w| w.contains(what));
    if d.get("hostname") != theirs.get("hostname").filter(|h| !h.is_null()) {
        bad.push(format!(
            "{name}: hostname {:?} / cloud-init {:?}",
            d.get("hostname"),
            theirs["hostname"]
        ));
    }
    for t in strs(&theirs["unsupported"]) {
        if !warned(&t) {
            bad.push(format!(
                "{name}: no warning names the part type {t}: {:?}",
                found.warnings
            ));
        }
    }
    // Users.
    let mut our_users: BTreeMap<String, Value> = BTreeMap::new();
    for u in d["users"].as_array().into_iter().flatten() {
        our_users.insert(u["name"].as_str().unwrap().to_string(), user_meaning(u));
    }
    let their_users = theirs["users"].as_object().cloned().unwrap_or_default();
    let mut root_keys: BTreeSet<String> = strs(&theirs["root_keys"]).into_iter().collect();
    if let Some(r) = their_users.get("root") {
        root_keys.extend(strs(&r["keys"]));
    }
    let users_error = theirs.get("users_error").is_some();
    if users_error && !warned("users") {
        bad.push(format!(
            "{name}: cloud-init refuses the users ({}), sysconfig says nothing",
            theirs["users_error"]
        ));
    }
    for (n, want) in &their_users {
        if want.get("error").is_some() || users_error {
            if our_users.contains_key(n) || !warned(&format!("user {n}")) {
                bad.push(format!(
                    "{name}: user {n} fails in cloud-init; sysconfig must skip it with a warning"
                ));
            }
            continue;
        }
        let Some(have) = our_users.get(n) else {
            if !warned(&format!("{n:?}")) && !warned(&format!("user {n}")) {
                bad.push(format!(
                    "{name}: user {n} is missing and no warning names it"
                ));
            }
            continue;
        };
        let mut want = want.clone();
        let mut have = have.clone();
        if n == "root" {
            want["keys"] = json!(root_keys);
            have["keys"] = have.get("keys").cloned().unwrap_or(json!([]));
        }
        // What sysconfig did not take, it names.
        if want["password_field"] != have["password_field"] && warned(&format!("user {n}: ")) {
            want["password_field"] = have["password_field"].clone();
        }
        for k in ["gecos", "home", "shell", "group"] {
            if want.get(k) != have.get(k) && warned(&format!("user {n}: {k}")) {
                want[k] = have.get(k).cloned().unwrap_or(Value::Null);
                if want[k].is_null() {
                    want.as_object_mut().unwrap().remove(k);
                }
            }
        }
        if want != have {
            bad.push(format!(
                "{name}: user {n}:\n  sysconfig  {have}\n  cloud-init {want}"
            ));
        }
    }
    for n in our_users.keys() {
        if users_error {
            break;
        }
        let root_for_keys = n == "root" && !root_keys.is_empty();
        if !their_users.contains_key(n) && !root_for_keys {
            bad.push(format!(
                "{name}: sysconfig adds user {n} that cloud-init does not"
            ));
        }
    }
    if !their_users.contains_key("root") {
        let have: BTreeSet<String> = our_users
            .get("root")
            .map(|r| strs(&r["keys"]).into_iter().collect())
            .unwrap_or_default();
        if have != root_keys {
            bad.push(format!(
                "{name}: root's keys {have:?} / cloud-init {root_keys:?}"
            ));
        }
    }
    // Groups.
    let ours_g: BTreeMap<String, Value> = d["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_string(),
                g["members"].clone(),
            )
        })
        .collect();
    let theirs_g: BTreeMap<String, Value> = theirs["groups"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    // A group name cloud-init would hand to groupadd but that is not a valid name is
    // skipped by sysconfig with a warning naming it.
    let theirs_g: BTreeMap<String, Value> = theirs_g
        .into_iter()
        .filter(|(n, _)| ours_g.contains_key(n) || !warned(&format!("{n:?}")))
        .collect();
    if ours_g != theirs_g && !users_error {
        bad.push(format!(
            "{name}: groups {ours_g:?} / cloud-init {theirs_g:?}"
        ));
    }
    for i in theirs["files_skipped"].as_array().into_iter().flatten() {
        if !warned(&format!("write_files[{i}]")) {
            bad.push(format!(
                "{name}: write_files[{i}] fails in cloud-init; no warning says it is skipped"
            ));
        }
    }
    // Files, in order, deferred ones with their flag.
    let mut ours_f: Vec<Value> = d["files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| file_meaning(f, false))
        .collect();
    ours_f.extend(
        d["deferred_files"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| file_meaning(f, true)),
    );
    let mut theirs_f: Vec<Value> = theirs["files"].as_array().cloned().unwrap_or_default();
    let key = |f: &Value| {
        (
            f["defer"] == true,
            f["path"].as_str().unwrap_or("").to_string(),
        )
    };
    ours_f.sort_by_key(key);
    theirs_f.sort_by_key(key);
    if ours_f != theirs_f {
        bad.push(format!(
            "{name}: files\n  sysconfig  {}\n  cloud-init {}",
            Value::Array(ours_f),
            Value::Array(theirs_f)
        ));
    }
    bad
}

#[test]
fn user_data_means_what_it_means_to_cloud_init() {
    let Some(py) = python_with_cloudinit() else {
        println!(
            "skipped: cloud-init is not installed (scripts/test installs Debian's cloud-init)"
        );
        return;
    };
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".user-data")
                .map(String::from)
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 40,
        "only {} user-data documents",
        names.len()
    );
    let mut bad = Vec::new();
    let mut seeds = 0;
    let inputs: Vec<(Vec<u8>, String)> = names
        .iter()
        .map(|name| {
            (
                std::fs::read(dir().join(format!("{name}.user-data"))).unwrap(),
                std::fs::read_to_string(dir().join(format!("{name}.meta-data"))).unwrap(),
            )
        })
        .collect();
    let answers = oracle(py, &inputs);
    for ((name, (ud, meta)), theirs) in names.iter().zip(&inputs).zip(&answers) {
        let seed = Seed {
            meta_data: Some(meta.clone()),
            user_data: Some(ud.clone()),
            network_config: None,
        };
        bad.extend(compare(
            name,
            nocloud::parse(&seed).map_err(|e| e.to_string()),
            theirs,
        ));
        for ext in ["vfat", "iso"] {
            let p = dir().join(format!("{name}.cidata.{ext}"));
            if !p.exists() {
                continue;
            }
            seeds += 1;
            let mut vol = Volume::open(std::fs::File::open(&p).unwrap())
                .unwrap()
                .expect("a FAT or ISO9660 volume");
            assert_eq!(
                vol.label().to_ascii_lowercase(),
                "cidata",
                "{}",
                p.display()
            );
            let seed = nocloud::seed_from_volume(&mut vol).unwrap();
            assert_eq!(
                seed.user_data.as_deref(),
                Some(ud.as_slice()),
                "{}",
                p.display()
            );
            bad.extend(compare(
                &format!("{name}.cidata.{ext}"),
                nocloud::parse(&seed).map_err(|e| e.to_string()),
                theirs,
            ));
        }
    }
    assert!(seeds >= 4, "only {seeds} cloud-localds seeds");
    assert!(
        bad.is_empty(),
        "{} differences:\n{}",
        bad.len(),
        bad.join("\n")
    );
    println!(
        "{} documents and {seeds} seeds mean the same to sysconfig and cloud-init",
        names.len()
    );
}
