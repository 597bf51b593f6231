//! User-data as cloud-init reads it, translated into desired-configuration keys.
//!
//! The parts come from [`super::mime::parts`]; every `#cloud-config` part is loaded
//! with PyYAML's rules ([`crate::yaml`]) and merged as cloud-init's default merger does
//! (`dict(replace)+list()+str()`: a later part's top-level key replaces an earlier
//! one). From the merged cloud-config:
//!
//! - `hostname` / `fqdn`: the node name, as `cloudinit.util.get_hostname_fqdn` picks it,
//!   up to the first dot;
//! - `users` (a list, a comma-separated string or a name-keyed mapping; `default`; the
//!   old `user`), `groups`, top-level `ssh_authorized_keys`, `allow_public_ssh_keys`:
//!   normalised as `cloudinit.distros.ug_util.normalize_users_groups` and
//!   `Distro.create_user` do. illumos images have no distribution default user, so the
//!   cloud's keys and the top-level keys go to root (cloud-init gives them to root too).
//! - `write_files` as `cloudinit.config.cc_write_files` decodes them: `encoding`,
//!   `!!binary` content, `permissions` (an integer as YAML gives it, a string as octal),
//!   `owner`, `append`, `defer` (to `deferred_files`).
//! - `timezone`.
//!
//! One unusable user, group or file is a warning and is skipped; the rest applies.
//! Unsupported part types (scripts, `#include`, boothooks, jinja templates) and
//! unsupported keys are warnings that name them. A YAML syntax error, a cloud-config that
//! is not a mapping or an unreadable archive stops the run.

use serde_json::{json, Map, Value};

mod error;

use super::mime::{self, Part};
use super::{Malformed, SourceError};
use crate::yaml::{self, Node};
pub use error::{CloudConfigError, FileProblem, GroupsError, WriteFileError};

/// Top-level cloud-config keys that are read (`disable_root` is accepted: root is the
/// only login on an illumos image, so its keys are never refused; `merge_how` and
/// `merge_type` are accepted with a warning when they ask for more than the default).
const SUPPORTED: &[&str] = &[
    "hostname",
    "fqdn",
    "users",
    "user",
    "groups",
    "ssh_authorized_keys",
    "allow_public_ssh_keys",
    "disable_root",
    "write_files",
    "timezone",
    "merge_how",
    "merge_type",
];

/// What user-data holds, before the cloud's own SSH keys are added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserData {
    pub desired: Map<String, Value>,
    pub warnings: Vec<String>,
    /// Keys for root from the top-level `ssh_authorized_keys`.
    root_keys: Vec<String>,
    /// `allow_public_ssh_keys: false` turns the cloud's keys off.
    refuse_cloud_keys: bool,
}

impl UserData {
    /// The desired keys with the cloud's SSH keys (meta-data `public-keys`, EC2
    /// `public-keys`, config drive `public_keys`, SmartOS `root_authorized_keys`) and the
    /// top-level ones given to root, whatever `users` says, as cloud-init's
    /// `cc_ssh.apply_credentials` does.
    pub fn with_cloud_keys(mut self, cloud_keys: &[String]) -> (Map<String, Value>, Vec<String>) {
        let mut keys: Vec<String> = Vec::new();
        if self.refuse_cloud_keys {
            if !cloud_keys.is_empty() {
                self.warnings.push(format!(
                    "allow_public_ssh_keys is false: {} SSH key(s) from the cloud are not installed",
                    cloud_keys.len()
                ));
            }
        } else {
            keys.extend(cloud_keys.iter().cloned());
        }
        keys.extend(self.root_keys.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(k.clone()));
        if !keys.is_empty() {
            let users = self
                .desired
                .entry("users")
                .or_insert_with(|| Value::Array(vec![]));
            if let Value::Array(list) = users {
                match list.iter_mut().find(|u| u["name"] == "root") {
                    Some(root) => {
                        let mut have: Vec<String> = root["ssh_authorized_keys"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|k| k.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default();
                        for k in keys {
                            if !have.contains(&k) {
                                have.push(k);
                            }
                        }
                        root["ssh_authorized_keys"] = json!(have);
                    }
                    None => list.insert(0, json!({"name": "root", "ssh_authorized_keys": keys})),
                }
            }
        }
        (self.desired, self.warnings)
    }
}

/// The cloud's keys as cloud-init's `sources.normalize_pubkey_data` reads them from
/// meta-data: a string (one key a line), a list, or a mapping of name to key or keys.
pub fn normalize_pubkeys(v: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Some(Value::String(s)) => out.extend(s.lines().map(String::from)),
        Some(Value::Array(a)) => out.extend(a.iter().map(py_str)),
        Some(Value::Object(m)) => {
            for klist in m.values() {
                match klist {
                    Value::String(s) if !s.is_empty() => out.push(s.clone()),
                    Value::Array(a) => out.extend(
                        a.iter()
                            .filter(|k| !matches!(k, Value::Null) && k.as_str() != Some(""))
                            .map(py_str),
                    ),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    out
}

fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A source's result: user-data (if any) translated, the cloud's keys given to root,
/// and what the source found in its meta-data merged below (user-data wins per key, as
/// in cloud-init).
pub fn combine(
    source_name: &'static str,
    user_data: Option<&[u8]>,
    cloud_keys: &[String],
    meta: Map<String, Value>,
) -> Result<(Map<String, Value>, Vec<String>), SourceError> {
    let ud = match user_data {
        Some(raw) => parse(source_name, raw)?,
        None => UserData::default(),
    };
    let (mut desired, warnings) = ud.with_cloud_keys(cloud_keys);
    super::merge_under(&mut desired, meta);
    Ok((desired, warnings))
}

/// Reads user-data (raw bytes: it may be gzip'd).
pub fn parse(source_name: &'static str, raw: &[u8]) -> Result<UserData, SourceError> {
    let mut ud = UserData::default();
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(ud);
    }
    let parts = mime::parts(raw, &mut ud.warnings).map_err(|e| SourceError::Malformed {
        source_name,
        error: Malformed::UserData(e),
    })?;
    let mut cfg: Vec<(String, Node)> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let name = p
            .filename
            .clone()
            .unwrap_or_else(|| format!("part {}", i + 1));
        match p.ctype.as_str() {
            "text/cloud-config" => {
                let read = cloud_config(p, &name, &mut ud.warnings);
                let read = read.map_err(|e| SourceError::Malformed {
                    source_name,
                    error: Malformed::In {
                        path: "user-data".into(),
                        error: Box::new(Malformed::In {
                            path: name.clone(),
                            error: Box::new(Malformed::CloudConfig(e)),
                        }),
                    },
                })?;
                if let Some(m) = read {
                    for (k, v) in m {
                        cfg.retain(|(e, _)| *e != k);
                        cfg.push((k, v));
                    }
                }
            }
            "text/cloud-config-jsonp" => {
                // _merge_patch: the payload after its header is a JSON patch on the
                // cloud-config merged so far; one that does not apply is a warning.
                let text = String::from_utf8_lossy(&p.payload);
                let body = text.trim_start();
                let body = body
                    .get(..19)
                    .filter(|h| h.eq_ignore_ascii_case("#cloud-config-jsonp"))
                    .map_or(body, |_| &body[19..]);
                let mut doc = Node::Map(std::mem::take(&mut cfg));
                if let Err(e) = super::jsonpatch::apply(&mut doc, body) {
                    ud.warnings.push(format!(
                        "user-data {name}: the JSON patch (text/cloud-config-jsonp) does not apply: {e}; ignored"
                    ));
                }
                cfg = match doc {
                    Node::Map(m) => m,
                    _ => {
                        ud.warnings.push(format!(
                            "user-data {name}: the JSON patch made the cloud-config something else than a mapping; ignored"
                        ));
                        Vec::new()
                    }
                };
            }
            other => ud.warnings.push(format!(
                "user-data {name}: {} is not supported; ignored",
                describe(other)
            )),
        }
    }
    translate(&Node::Map(cfg), &mut ud);
    Ok(ud)
}

fn describe(ctype: &str) -> String {
    match ctype {
        "text/x-shellscript"
        | "text/x-shellscript-per-boot"
        | "text/x-shellscript-per-instance"
        | "text/x-shellscript-per-once" => format!("a script ({ctype})"),
        "text/x-include-url" | "text/x-include-once-url" => format!("#include ({ctype})"),
        "text/cloud-config-jsonp" => {
            "#cloud-config-jsonp (text/cloud-config-jsonp, a JSON patch)".into()
        }
        "text/cloud-boothook" => "#cloud-boothook (text/cloud-boothook)".into(),
        "text/part-handler" => "#part-handler (text/part-handler)".into(),
        "text/jinja2" => "a jinja template (text/jinja2)".into(),
        "text/x-not-multipart" | "text/plain" => {
            format!("text that does not start with a known header such as #cloud-config ({ctype})")
        }
        other => format!("a part of type {other}"),
    }
}

fn cloud_config(
    p: &Part,
    name: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Vec<(String, Node)>>, CloudConfigError> {
    let text = std::str::from_utf8(&p.payload).map_err(|_| CloudConfigError::NotUtf8)?;
    let doc = yaml::load(text)?;
    let m = match doc {
        Node::Null => {
            warnings.push(format!("user-data {name}: empty cloud-config; ignored"));
            return Ok(None);
        }
        Node::Map(m) => m,
        other => return Err(CloudConfigError::NotAMapping(other.kind())),
    };
    if p.merge_header || m.iter().any(|(k, _)| k == "merge_how" || k == "merge_type") {
        warnings.push(format!(
            "user-data {name}: merge_how / Merge-Type is not supported; parts merge by top-level key (later replaces earlier)"
        ));
    }
    Ok(Some(m))
}

/// `util.translate_bool` (used by `get_cfg_option_bool`).
fn truthy(v: Option<&Node>) -> bool {
    match v {
        None | Some(Node::Null) => false,
        Some(Node::Bool(b)) => *b,
        Some(Node::Int(i)) => *i == 1,
        Some(Node::Str(s)) => matches!(
            s.trim().to_lowercase().as_str(),
            "1" | "on" | "yes" | "true"
        ),
        Some(Node::Float(f)) => *f == 1.0,
        _ => false,
    }
}

/// Python's `bool(v)`.
fn py_bool(v: &Node) -> bool {
    match v {
        Node::Null => false,
        Node::Bool(b) => *b,
        Node::Int(i) => *i != 0,
        Node::Float(f) => *f != 0.0,
        Node::Str(s) | Node::Timestamp(s) => !s.is_empty(),
        Node::Bytes(b) => !b.is_empty(),
        Node::Seq(a) => !a.is_empty(),
        Node::Map(m) => !m.is_empty(),
    }
}

/// `util.is_true`.
fn is_true(v: &Node) -> bool {
    match v {
        Node::Bool(b) => *b,
        Node::Str(s) => matches!(
            s.trim().to_lowercase().as_str(),
            "true" | "1" | "on" | "yes"
        ),
        Node::Int(i) => *i == 1,
        Node::Float(f) => *f == 1.0,
        _ => false,
    }
}

/// `util.uniq_merge`: strings split at commas and trimmed, lists taken item by item;
/// first occurrence kept.
fn uniq_merge(v: &Node) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: String| {
        if !out.contains(&s) {
            out.push(s)
        }
    };
    match v {
        Node::Str(s) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .for_each(&mut add),
        Node::Seq(a) => a.iter().filter_map(scalar_text).for_each(&mut add),
        _ => {}
    }
    out
}

fn scalar_text(v: &Node) -> Option<String> {
    Some(match v {
        Node::Str(s) | Node::Timestamp(s) => s.clone(),
        Node::Int(i) => i.to_string(),
        Node::Bool(b) => if *b { "True" } else { "False" }.into(),
        Node::Float(f) => f.to_string(),
        _ => return None,
    })
}

fn translate(cfg: &Node, ud: &mut UserData) {
    let Node::Map(m) = cfg else { return };
    let unknown: Vec<&str> = m
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !SUPPORTED.contains(k))
        .collect();
    if !unknown.is_empty() {
        ud.warnings.push(format!(
            "cloud-config key(s) not supported, ignored: {}",
            unknown.join(", ")
        ));
    }
    hostname(cfg, ud);
    match cfg.get("timezone") {
        None | Some(Node::Null) => {}
        Some(Node::Str(tz)) => {
            ud.desired.insert("timezone".into(), json!(tz));
        }
        Some(other) => ud.warnings.push(format!(
            "timezone is {}, not a string; ignored",
            other.kind()
        )),
    }
    users_and_groups(cfg, ud);
    write_files(cfg, ud);
}

fn hostname(cfg: &Node, ud: &mut UserData) {
    let pick = |k: &str| -> Result<Option<String>, String> {
        match cfg.get(k) {
            None => Ok(None),
            Some(Node::Str(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{k} is {}, not a string; ignored", other.kind())),
        }
    };
    let (fqdn, host) = match (pick("fqdn"), pick("hostname")) {
        (Ok(f), Ok(h)) => (f, h),
        (Err(e), _) | (_, Err(e)) => {
            ud.warnings.push(e);
            return;
        }
    };
    // get_hostname_fqdn: with `fqdn`, `hostname` wins if given; else a `hostname` with a
    // dot is cut at it. The node name is the first label either way.
    let name = match (fqdn, host) {
        (_, Some(h)) if !h.is_empty() => h,
        (Some(f), _) => f,
        _ => return,
    };
    let short = name.split('.').next().unwrap_or(&name).to_string();
    if !short.is_empty() {
        ud.desired.insert("hostname".into(), json!(short));
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && n.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.'
        })
}

/// `_normalize_users`: name to its merged configuration, in order.
fn normalize_users(
    base: &Node,
    old_user: Option<Node>,
    warnings: &mut Vec<String>,
) -> Vec<(String, Vec<(String, Node)>)> {
    let mut list: Vec<Node> = match base {
        Node::Map(m) => {
            let mut out = Vec::new();
            for (k, v) in m {
                match v {
                    Node::Bool(_) | Node::Int(_) | Node::Float(_) | Node::Str(_) => {
                        if is_true(v) {
                            out.push(Node::Str(k.clone()));
                        }
                    }
                    Node::Map(kv) => {
                        let mut kv = kv.clone();
                        kv.retain(|(e, _)| e != "name");
                        kv.push(("name".into(), Node::Str(k.clone())));
                        out.push(Node::Map(kv));
                    }
                    other => warnings.push(format!("users: {k} is {}; skipped", other.kind())),
                }
            }
            out
        }
        Node::Str(_) => vec![Node::Seq(
            uniq_merge(base).into_iter().map(Node::Str).collect(),
        )],
        Node::Seq(a) => a.clone(),
        Node::Null => vec![],
        other => {
            warnings.push(format!(
                "users is {}, not a list, a comma-separated string or a mapping; ignored",
                other.kind()
            ));
            vec![]
        }
    };
    if old_user.is_some() {
        list.push(Node::Map(vec![(
            "name".into(),
            Node::Str("default".into()),
        )]));
    }
    let mut users: Vec<(String, Vec<(String, Node)>)> = Vec::new();
    for (i, u) in list.into_iter().enumerate() {
        match u {
            Node::Str(_) | Node::Seq(_) => {
                for n in uniq_merge(&u) {
                    if !users.iter().any(|(e, _)| *e == n) {
                        users.push((n, vec![]));
                    }
                }
            }
            Node::Map(kv) => {
                let name = match kv.iter().find(|(k, _)| k == "name").map(|(_, v)| v) {
                    None => "default".to_string(),
                    Some(v) => match scalar_text(v) {
                        Some(n) => n,
                        None => {
                            warnings.push(format!("users[{i}]: name is {}; skipped", v.kind()));
                            continue;
                        }
                    },
                };
                let cfg: Vec<(String, Node)> = kv
                    .into_iter()
                    .filter(|(k, _)| k != "name")
                    .map(|(k, v)| (k.replace('-', "_").trim().to_string(), v))
                    .filter(|(k, _)| !k.is_empty())
                    .collect();
                match users.iter_mut().find(|(e, _)| *e == name) {
                    Some((_, prev)) => {
                        for (k, v) in cfg {
                            prev.retain(|(e, _)| *e != k);
                            prev.push((k, v));
                        }
                    }
                    None => users.push((name, cfg)),
                }
            }
            other => warnings.push(format!("users[{i}] is {}; skipped", other.kind())),
        }
    }
    // "default" is the distribution's default user: an illumos image has none, so it
    // means nothing unless the old `user` key names one.
    if let Some(pos) = users.iter().position(|(n, _)| n == "default") {
        let (_, def_cfg) = users.remove(pos);
        if let Some(Node::Map(mut old)) = old_user {
            match old
                .iter()
                .position(|(k, _)| k == "name")
                .map(|p| old.remove(p).1)
            {
                Some(n) => {
                    if let Some(name) = scalar_text(&n) {
                        let parsed = users
                            .iter()
                            .position(|(e, _)| *e == name)
                            .map(|p| users.remove(p).1)
                            .unwrap_or_default();
                        let mut merged = old;
                        for (k, v) in def_cfg.into_iter().chain(parsed) {
                            merged.retain(|(e, _)| *e != k);
                            merged.push((k, v));
                        }
                        users.push((name, merged));
                    }
                }
                None => warnings.push("user has no name; ignored".into()),
            }
        }
    }
    users
}

fn users_and_groups(cfg: &Node, ud: &mut UserData) {
    let w = &mut ud.warnings;
    let old_user = match cfg.get("user") {
        None | Some(Node::Null) => None,
        Some(Node::Str(s)) if s.is_empty() => None,
        Some(Node::Str(s)) => Some(Node::Map(vec![("name".into(), Node::Str(s.clone()))])),
        Some(m @ Node::Map(kv)) if !kv.is_empty() => Some(m.clone()),
        Some(Node::Map(_)) => None,
        Some(other) => {
            w.push(format!(
                "user is {}, not a string or a mapping; ignored",
                other.kind()
            ));
            None
        }
    };
    let base = cfg.get("users").cloned().unwrap_or(Node::Seq(vec![]));
    let users = normalize_users(&base, old_user, w);

    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let add_group = |groups: &mut Vec<(String, Vec<String>)>,
                     name: String,
                     members: Vec<String>| {
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, m)) => {
                for x in members {
                    if !m.contains(&x) {
                        m.push(x);
                    }
                }
                m.sort();
            }
            None => {
                let mut members = members;
                members.sort();
                members.dedup();
                groups.push((name, members))
            }
        }
    };
    match cfg.get("groups") {
        None | Some(Node::Null) => {}
        Some(g) => match normalize_groups(g) {
            Ok(list) => {
                for (n, m) in list {
                    add_group(&mut groups, n, m);
                }
            }
            Err(e) => w.push(format!("groups: {e}; ignored")),
        },
    }

    let mut out = Vec::new();
    for (name, c) in users {
        match user(&name, &c, w) {
            Some((u, create)) => {
                for g in create {
                    add_group(&mut groups, g, vec![]);
                }
                out.push(u);
            }
            None => continue,
        }
    }
    if let Some(k) = cfg.get("ssh_authorized_keys") {
        match k {
            Node::Seq(a) => ud.root_keys.extend(a.iter().filter_map(scalar_text)),
            Node::Str(s) => ud.root_keys.push(s.clone()),
            Node::Null => {}
            other => w.push(format!(
                "ssh_authorized_keys is {}, not a list; ignored",
                other.kind()
            )),
        }
    }
    if cfg.get("allow_public_ssh_keys").is_some() && !truthy(cfg.get("allow_public_ssh_keys")) {
        ud.refuse_cloud_keys = true;
    }
    let mut valid_groups = Vec::new();
    for (n, members) in groups {
        if valid_name(&n) {
            valid_groups.push(json!({"name": n, "members": members}));
        } else {
            w.push(format!("group name {n:?} is not valid; skipped"));
        }
    }
    if !out.is_empty() {
        ud.desired.insert("users".into(), Value::Array(out));
    }
    if !valid_groups.is_empty() {
        ud.desired
            .insert("groups".into(), Value::Array(valid_groups));
    }
}

/// `_normalize_groups`.
fn normalize_groups(g: &Node) -> Result<Vec<(String, Vec<String>)>, GroupsError> {
    let list: Vec<Node> = match g {
        Node::Str(s) => s
            .trim()
            .split(',')
            .map(|p| Node::Str(p.to_string()))
            .collect(),
        Node::Seq(a) => a.clone(),
        Node::Map(_) => vec![g.clone()],
        other => return Err(GroupsError::Shape(other.kind())),
    };
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for i in list {
        match i {
            Node::Map(kv) => {
                for (k, v) in kv {
                    let members = match &v {
                        Node::Seq(a) => a.iter().filter_map(scalar_text).collect::<Vec<_>>(),
                        Node::Str(s) => vec![s.clone()],
                        other => {
                            return Err(GroupsError::Members {
                                group: k,
                                kind: other.kind(),
                            })
                        }
                    };
                    match out.iter_mut().find(|(n, _)| *n == k) {
                        Some((_, m)) => m.extend(members),
                        None => out.push((k, members)),
                    }
                }
            }
            Node::Str(s) => {
                if !out.iter().any(|(n, _)| *n == s) {
                    out.push((s, vec![]));
                }
            }
            other => return Err(GroupsError::Name(other.kind())),
        }
    }
    // uniq_merge_sorted: members split at commas, de-duplicated, sorted.
    Ok(out
        .into_iter()
        .map(|(n, m)| {
            let mut all: Vec<String> = m
                .iter()
                .flat_map(|x| {
                    x.split(',')
                        .map(|p| p.trim().to_string())
                        .collect::<Vec<_>>()
                })
                .filter(|x| !x.is_empty())
                .collect();
            all.sort();
            all.dedup();
            (n, all)
        })
        .collect())
}

/// Keys of a user that are read; others are named in a warning.
const USER_KEYS: &[&str] = &[
    "gecos",
    "homedir",
    "primary_group",
    "groups",
    "shell",
    "uid",
    "passwd",
    "hashed_passwd",
    "plain_text_passwd",
    "lock_passwd",
    "sudo",
    "ssh_authorized_keys",
    "create_groups",
    "default",
];

/// One user of `users` as `Distro.create_user` reads it; the groups it would create.
fn user(name: &str, c: &[(String, Node)], w: &mut Vec<String>) -> Option<(Value, Vec<String>)> {
    if !valid_name(name) {
        w.push(format!("user name {name:?} is not valid; skipped"));
        return None;
    }
    let get = |k: &str| c.iter().find(|(e, _)| e == k).map(|(_, v)| v);
    let other: Vec<&str> = c
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !USER_KEYS.contains(k))
        .collect();
    if !other.is_empty() {
        w.push(format!(
            "user {name}: key(s) not supported, ignored: {}",
            other.join(", ")
        ));
    }
    let mut u = Map::new();
    u.insert("name".into(), json!(name));
    // add_user passes only non-empty strings to useradd.
    for (k, field) in [
        ("gecos", "gecos"),
        ("shell", "shell"),
        ("homedir", "home"),
        ("primary_group", "group"),
    ] {
        match get(k) {
            None | Some(Node::Null) => {}
            Some(Node::Str(s)) if s.is_empty() => {}
            Some(Node::Str(s)) => {
                u.insert(field.into(), json!(s));
            }
            Some(v) => w.push(format!(
                "user {name}: {k} is {}, not a string; ignored",
                v.kind()
            )),
        }
    }
    if let Some(v) = get("uid").filter(|v| !matches!(v, Node::Null)) {
        match scalar_text(v).and_then(|s| s.parse::<u32>().ok()) {
            Some(n) => {
                u.insert("uid".into(), json!(n));
            }
            None => {
                w.push(format!("user {name}: uid is not a number; user skipped"));
                return None;
            }
        }
    }
    let mut create: Vec<String> = Vec::new();
    if let Some(g) = get("groups").filter(|g| py_bool(g)) {
        let list: Vec<String> = match g {
            Node::Str(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
            Node::Seq(a) => a
                .iter()
                .filter_map(scalar_text)
                .map(|s| s.trim().to_string())
                .collect(),
            Node::Map(m) => m.iter().map(|(k, _)| k.trim().to_string()).collect(),
            other => {
                w.push(format!("user {name}: groups is {}; ignored", other.kind()));
                vec![]
            }
        };
        let list: Vec<String> = list.into_iter().filter(|g| !g.is_empty()).collect();
        create.extend(list.iter().cloned());
        u.insert("groups".into(), json!(list));
    }
    if let Some(p) = u.get("group").and_then(Value::as_str) {
        if !create.is_empty() {
            create.push(p.to_string());
        }
    }
    if get("create_groups").is_some_and(|v| !py_bool(v)) {
        create.clear();
    }
    if get("plain_text_passwd").is_some_and(py_bool) {
        w.push(format!("user {name}: plain_text_passwd is not supported (give a crypt(3) hash in hashed_passwd); no password set"));
    }
    // hashed_passwd is set after useradd's --password, so it wins.
    let hash = [get("hashed_passwd"), get("passwd")]
        .into_iter()
        .flatten()
        .find(|v| py_bool(v));
    if let Some(h) = hash {
        match h {
            Node::Str(s) if s.starts_with('$') && !s.contains(':') && !s.contains('\n') => {
                u.insert("password_hash".into(), json!(s));
            }
            _ => w.push(format!(
                "user {name}: the password is not a crypt(3) hash; no password set"
            )),
        }
    }
    let lock = get("lock_passwd").is_none_or(py_bool);
    if lock {
        u.insert("lock_password".into(), json!(true));
    }
    if let Some(s) = get("sudo") {
        match s {
            Node::Bool(false) | Node::Null => {}
            v if !py_bool(v) => {}
            Node::Str(r) => {
                u.insert("sudo".into(), json!([r]));
            }
            Node::Seq(a) => {
                let rules: Vec<String> = a.iter().filter_map(scalar_text).collect();
                u.insert("sudo".into(), json!(rules));
            }
            other => w.push(format!(
                "user {name}: sudo is {}, not a rule or a list of rules; ignored",
                other.kind()
            )),
        }
    }
    if let Some(k) = get("ssh_authorized_keys") {
        let keys: Vec<String> = match k {
            // Never split at commas: an options field (`from="a,b"`) holds them.
            Node::Str(s) => vec![s.clone()],
            Node::Map(m) => m.iter().filter_map(|(_, v)| scalar_text(v)).collect(),
            Node::Seq(a) => a.iter().filter_map(scalar_text).collect(),
            Node::Null => vec![],
            other => {
                w.push(format!(
                    "user {name}: ssh_authorized_keys is {}; ignored",
                    other.kind()
                ));
                vec![]
            }
        };
        let mut seen = std::collections::HashSet::new();
        let keys: Vec<String> = keys
            .into_iter()
            .filter(|k| seen.insert(k.clone()))
            .collect();
        if !keys.is_empty() {
            u.insert("ssh_authorized_keys".into(), json!(keys));
        }
    }
    Some((Value::Object(u), create))
}

/// Python's `int(s, 8)`: white space around, an optional `+`, an optional `0o` prefix,
/// `_` between digits.
fn py_int_base8(s: &str) -> Option<u32> {
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    let t = t
        .strip_prefix("0o")
        .or_else(|| t.strip_prefix("0O"))
        .unwrap_or(t);
    if t.is_empty() || t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    u32::from_str_radix(&t.replace('_', ""), 8).ok()
}

/// `os.path.abspath` with `/` as the working directory.
fn abspath(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn write_files(cfg: &Node, ud: &mut UserData) {
    let list = match cfg.get("write_files") {
        None | Some(Node::Null) => return,
        Some(Node::Seq(a)) => a,
        Some(other) => {
            ud.warnings.push(format!(
                "write_files is {}, not a list; ignored",
                other.kind()
            ));
            return;
        }
    };
    let (mut now, mut later) = (Vec::new(), Vec::new());
    for (i, f) in list.iter().enumerate() {
        match write_file(f) {
            Ok((spec, defer, warn)) => {
                if let Some(warn) = warn {
                    ud.warnings.push(format!("write_files[{i}]: {warn}"));
                }
                if defer {
                    later.push(spec)
                } else {
                    now.push(spec)
                }
            }
            Err(e) => ud.warnings.push(format!("write_files[{i}]: {e}; skipped")),
        }
    }
    if !now.is_empty() {
        ud.desired.insert("files".into(), Value::Array(now));
    }
    if !later.is_empty() {
        ud.desired
            .insert("deferred_files".into(), Value::Array(later));
    }
}

/// One `write_files` entry: the file, whether it is deferred, a warning.
fn write_file(f: &Node) -> Result<(Value, bool, Option<String>), WriteFileError> {
    if !matches!(f, Node::Map(_)) {
        return Err(WriteFileError::NotAMapping(f.kind()));
    }
    let path = match f.get("path") {
        Some(Node::Str(p)) if !p.is_empty() => abspath(p),
        Some(v) if py_bool(v) => return Err(WriteFileError::PathType(v.kind())),
        _ => return Err(WriteFileError::NoPath),
    };
    let at = |problem: FileProblem| WriteFileError::In {
        path: path.clone(),
        problem,
    };
    let mut warn = None;
    if let Some(src) = f.get("source") {
        if py_bool(src) {
            warn = Some(format!(
                "{path}: source (a URL to fetch) is not supported; the inline content is written"
            ));
        }
    }
    let raw: Vec<u8> = match f.get("content") {
        None | Some(Node::Null) => Vec::new(),
        Some(Node::Str(s)) => s.clone().into_bytes(),
        Some(Node::Bytes(b)) => b.clone(),
        Some(other) => return Err(at(FileProblem::Content(other.kind()))),
    };
    let encoding = match f.get("encoding") {
        None | Some(Node::Null) => String::new(),
        Some(Node::Str(s)) => s.trim().to_lowercase(),
        Some(other) => return Err(at(FileProblem::Encoding(other.kind()))),
    };
    let bytes = match encoding.as_str() {
        "gz" | "gzip" => mime::gunzip(&raw).map_err(|e| at(e.into()))?,
        "gz+base64" | "gzip+base64" | "gz+b64" | "gzip+b64" => {
            let b = mime::b64decode(&raw).map_err(|e| at(e.into()))?;
            mime::gunzip(&b).map_err(|e| at(e.into()))?
        }
        "b64" | "base64" => mime::b64decode(&raw).map_err(|e| at(e.into()))?,
        "" | "text/plain" => raw,
        other => {
            warn = Some(format!(
                "{path}: unknown encoding {other:?}, taken as text/plain"
            ));
            raw
        }
    };
    // decode_perms: a number as YAML gives it (0644 is octal, 644 decimal), a string as
    // octal; anything else is the default 0644.
    let mode: u32 = match f.get("permissions") {
        None | Some(Node::Null) => 0o644,
        Some(Node::Int(i)) => u32::try_from(*i).map_err(|_| at(FileProblem::NotAMode(*i)))?,
        Some(Node::Bool(b)) => u32::from(*b),
        Some(Node::Float(x)) => *x as u32,
        Some(v) => match scalar_text(v).and_then(|s| py_int_base8(&s)) {
            Some(m) => m,
            None => {
                warn = Some(format!(
                    "{path}: permissions are not an octal number; 0644 used"
                ));
                0o644
            }
        },
    };
    if mode > 0o7777 {
        return Err(at(FileProblem::ModeTooLarge(mode)));
    }
    if let Some(Node::Int(i)) = f.get("permissions") {
        if *i > 0
            && format!("{i}").chars().all(|c| ('0'..='7').contains(&c))
            && format!("{i}").len() >= 3
            && *i as u32 != 0o644
            && *i >= 100
        {
            warn.get_or_insert(format!(
                "{path}: permissions {i} is a decimal number (mode {mode:04o}); quote it ('0{i}') or write 0{i} for an octal mode"
            ));
        }
    }
    // extract_usergroup, default root:root.
    let owner = match f.get("owner") {
        None | Some(Node::Null) => "root:root".to_string(),
        Some(Node::Str(s)) => s.clone(),
        Some(other) => return Err(at(FileProblem::Owner(other.kind()))),
    };
    let (u, g) = owner
        .split_once(':')
        .map_or((owner.as_str(), None), |(u, g)| (u, Some(g)));
    let pick = |s: Option<&str>| -> String {
        match s.map(str::trim) {
            None | Some("") | Some("-1") => "root".into(),
            Some(x) if x.eq_ignore_ascii_case("none") => "root".into(),
            Some(x) => x.to_string(),
        }
    };
    let (user, group) = (pick(Some(u)), pick(g));
    let mut spec = match String::from_utf8(bytes) {
        Ok(text) => json!({"path": path, "content": text, "encoding": "plain"}),
        Err(e) => {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD.encode(e.into_bytes());
            json!({"path": path, "content": b, "encoding": "base64"})
        }
    };
    spec["mode"] = json!(format!("{mode:04o}"));
    spec["owner"] = json!(user);
    spec["group"] = json!(group);
    if truthy(f.get("append")) {
        spec["append"] = json!(true);
    }
    Ok((spec, truthy(f.get("defer")), warn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ud(text: &str) -> (Map<String, Value>, Vec<String>) {
        parse("t", text.as_bytes()).unwrap().with_cloud_keys(&[])
    }

    #[test]
    fn subset_translates_to_desired_keys() {
        let (m, _) = ud("#cloud-config\nhostname: web1.example.org\nusers:\n  - default\n  - name: ann\n    groups: [staff, adm]\n    passwd: $6$s$h\n    ssh_authorized_keys: [ssh-ed25519 AAA ann]\nssh_authorized_keys:\n  - ssh-ed25519 BBB root\nwrite_files:\n  - path: /etc/motd\n    content: aGk=\n    encoding: b64\n    permissions: '0600'\n    owner: ann:staff\n");
        assert_eq!(m["hostname"], "web1");
        assert_eq!(m["users"][1]["name"], "ann");
        assert_eq!(m["users"][1]["groups"], json!(["staff", "adm"]));
        assert_eq!(
            m["users"][0],
            json!({"name":"root","ssh_authorized_keys":["ssh-ed25519 BBB root"]})
        );
        assert_eq!(
            m["files"][0],
            json!({"path":"/etc/motd","content":"hi","encoding":"plain","mode":"0600","owner":"ann","group":"staff"})
        );
        assert_eq!(
            m["groups"],
            json!([{"name":"staff","members":[]},{"name":"adm","members":[]}])
        );
    }

    #[test]
    fn scripts_are_warned_about_and_bad_entries_skipped() {
        let (m, w) = ud("#!/bin/sh\necho hi\n");
        assert!(m.is_empty());
        assert!(w[0].contains("a script (text/x-shellscript)"), "{w:?}");
        let (m, w) = ud("#cloud-config\nusers: 3\n");
        assert!(m.is_empty());
        assert!(w[0].starts_with("users is an integer"), "{w:?}");
        let (m, w) = ud("#cloud-config\nusers:\n - name: a\n   passwd: plain\n - name: b\n");
        assert_eq!(m["users"][1]["name"], "b");
        assert!(
            w.iter()
                .any(|w| w.contains("crypt(3)") && !w.contains("plain")),
            "{w:?}"
        );
    }

    #[test]
    fn archive_and_jsonp_are_never_read_as_cloud_config() {
        let (m, w) = ud("#cloud-config-archive\n- {content: 'hostname: arch'}\n- {type: text/x-shellscript, content: 'echo'}\n");
        assert_eq!(m["hostname"], "arch");
        assert!(w.iter().any(|w| w.contains("text/x-shellscript")), "{w:?}");
        // A JSON patch changes the cloud-config merged so far; it is never YAML itself.
        let (m, w) = ud(
            "#cloud-config-jsonp\n[{\"op\": \"add\", \"path\": \"/hostname\", \"value\": \"x\"}]\n",
        );
        assert_eq!(m["hostname"], "x");
        assert!(w.is_empty(), "{w:?}");
        let (m, w) = ud("#cloud-config-jsonp\n[{\"op\": \"remove\", \"path\": \"/nope\"}]\n");
        assert!(m.is_empty());
        assert!(w[0].contains("text/cloud-config-jsonp"), "{w:?}");
    }

    #[test]
    fn write_files_forms() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"zipped\n").unwrap();
        let b64 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            gz.finish().unwrap(),
        );
        let (m, _) = ud(&format!("#cloud-config\nwrite_files:\n- path: /etc/crontab\n  content: '* * * * * x'\n  append: true\n- path: /etc/z\n  encoding: gz+b64\n  content: {b64}\n  permissions: 0600\n- path: /etc/d\n  content: d\n  permissions: 644\n  defer: yes\n- path: /etc/bin\n  content: !!binary /wA=\n"));
        assert_eq!(m["files"][0]["append"], true);
        assert_eq!(m["files"][1]["content"], "zipped\n");
        assert_eq!(m["files"][1]["mode"], "0600");
        assert_eq!(
            m["files"][2],
            json!({"path":"/etc/bin","content":"/wA=","encoding":"base64","mode":"0644","owner":"root","group":"root"})
        );
        assert_eq!(m["deferred_files"][0]["mode"], "1204");
    }

    #[test]
    fn malformed_yaml_stops() {
        let err = parse("t", b"#cloud-config\nusers: [a\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("source t: user-data: part 1: line"),
            "{err}"
        );
        assert!(parse("t", b"#cloud-config\n- a\n").is_err());
    }
}
