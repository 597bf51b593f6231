//! `users`, the old `user` and `groups` as cloud-init normalises and creates them, with
//! the top-level `ssh_authorized_keys` and `allow_public_ssh_keys`.

use serde_json::{json, Map, Value};

use super::{is_true, py_bool, scalar_text, truthy, uniq_merge, GroupsError, UserData};
use crate::plugins::users::valid_name;
use crate::yaml::Node;

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

pub(super) fn users_and_groups(cfg: &Node, ud: &mut UserData) {
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
