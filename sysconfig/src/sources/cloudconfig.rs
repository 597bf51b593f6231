//! The `#cloud-config` subset sysconfig understands: `hostname` (or `fqdn`), `users`,
//! top-level `ssh_authorized_keys` (for root), `write_files` and `timezone`. Other
//! cloud-config keys are reported and ignored; user-data that is not cloud-config (a
//! script, a MIME archive) is ignored with a warning.

use serde_json::{json, Map, Value};

use super::SourceError;

const SUPPORTED: &[&str] = &[
    "hostname",
    "fqdn",
    "users",
    "ssh_authorized_keys",
    "write_files",
    "timezone",
];

/// Translates user-data into desired-configuration keys.
pub fn parse(source_name: &'static str, text: &str) -> Result<Map<String, Value>, SourceError> {
    let bad = |m: String| SourceError::malformed(source_name, format!("user-data: {m}"));
    let trimmed = text.trim_start_matches('\u{feff}');
    if trimmed.trim().is_empty() {
        return Ok(Map::new());
    }
    if !trimmed.starts_with("#cloud-config") {
        tracing::warn!("source {source_name}: user-data is not #cloud-config; ignored");
        return Ok(Map::new());
    }
    let doc = super::parse_yaml(source_name, "user-data", trimmed)?;
    let doc = match doc {
        Value::Null => return Ok(Map::new()),
        Value::Object(m) => m,
        _ => return Err(bad("the document is not a mapping".into())),
    };
    for k in doc.keys() {
        if !SUPPORTED.contains(&k.as_str()) {
            tracing::warn!(
                "source {source_name}: cloud-config key `{k}` is not supported; ignored"
            );
        }
    }
    let mut out = Map::new();
    if let Some(h) = doc.get("hostname").or_else(|| doc.get("fqdn")) {
        let h = h
            .as_str()
            .ok_or_else(|| bad("hostname must be a string".into()))?;
        out.insert("hostname".into(), json!(h.split('.').next().unwrap_or(h)));
    }
    if let Some(tz) = doc.get("timezone") {
        let tz = tz
            .as_str()
            .ok_or_else(|| bad("timezone must be a string".into()))?;
        out.insert("timezone".into(), json!(tz));
    }
    let mut users = Vec::new();
    if let Some(list) = doc.get("users") {
        let list = list
            .as_array()
            .ok_or_else(|| bad("users must be a list".into()))?;
        for (i, u) in list.iter().enumerate() {
            match u {
                // "default" names the distribution's default user; an illumos image has none.
                Value::String(s) if s == "default" => {}
                Value::Object(m) => {
                    users.push(user(m).map_err(|e| bad(format!("users[{i}]: {e}")))?)
                }
                _ => return Err(bad(format!("users[{i}] must be a mapping"))),
            }
        }
    }
    if let Some(keys) = doc.get("ssh_authorized_keys") {
        let keys = strings(keys).map_err(|e| bad(format!("ssh_authorized_keys: {e}")))?;
        users.push(json!({"name": "root", "ssh_authorized_keys": keys}));
    }
    if !users.is_empty() {
        out.insert("users".into(), Value::Array(users));
    }
    if let Some(files) = doc.get("write_files") {
        let files = files
            .as_array()
            .ok_or_else(|| bad("write_files must be a list".into()))?;
        let mut list = Vec::new();
        for (i, f) in files.iter().enumerate() {
            list.push(write_file(f).map_err(|e| bad(format!("write_files[{i}]: {e}")))?);
        }
        out.insert("files".into(), Value::Array(list));
    }
    Ok(out)
}

fn strings(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .ok_or_else(|| "expected a list of strings".to_string())
            })
            .collect(),
        _ => Err("expected a string or a list of strings".into()),
    }
}

fn opt_str(m: &Map<String, Value>, k: &str) -> Result<Option<String>, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{k} must be a string")),
    }
}

fn user(m: &Map<String, Value>) -> Result<Value, String> {
    let name = opt_str(m, "name")?.ok_or("name is missing")?;
    let mut u = Map::new();
    u.insert("name".into(), json!(name));
    if let Some(g) = opt_str(m, "gecos")? {
        u.insert("gecos".into(), json!(g));
    }
    if let Some(s) = opt_str(m, "shell")? {
        u.insert("shell".into(), json!(s));
    }
    if let Some(h) = opt_str(m, "homedir")? {
        u.insert("home".into(), json!(h));
    }
    if let Some(g) = opt_str(m, "primary_group")? {
        u.insert("group".into(), json!(g));
    }
    if let Some(uid) = opt_str(m, "uid")? {
        let n: u32 = uid
            .parse()
            .map_err(|_| format!("uid {uid:?} is not a number"))?;
        u.insert("uid".into(), json!(n));
    }
    if let Some(g) = m.get("groups") {
        u.insert(
            "groups".into(),
            json!(strings(g).map_err(|e| format!("groups: {e}"))?),
        );
    }
    // cloud-init's `passwd` is already a crypt(3) hash; plain-text passwords are not taken.
    if let Some(p) = opt_str(m, "passwd")? {
        if !p.starts_with('$') {
            return Err("passwd must be a crypt(3) hash".into());
        }
        u.insert("password_hash".into(), json!(p));
    }
    if let Some(k) = m.get("ssh_authorized_keys") {
        u.insert(
            "ssh_authorized_keys".into(),
            json!(strings(k).map_err(|e| format!("ssh_authorized_keys: {e}"))?),
        );
    }
    Ok(Value::Object(u))
}

fn write_file(f: &Value) -> Result<Value, String> {
    let m = f.as_object().ok_or("must be a mapping")?;
    let path = opt_str(m, "path")?.ok_or("path is missing")?;
    let content = opt_str(m, "content")?.unwrap_or_default();
    let encoding = match opt_str(m, "encoding")?.as_deref() {
        None | Some("text/plain") => "plain",
        Some("b64") | Some("base64") => "base64",
        Some(other) => {
            return Err(format!(
                "encoding {other:?} is not supported (b64 or text/plain)"
            ))
        }
    };
    let mut out = json!({"path": path, "content": content, "encoding": encoding});
    if let Some(p) = opt_str(m, "permissions")? {
        out["mode"] = json!(p);
    }
    if let Some(o) = opt_str(m, "owner")? {
        let (user, group) = o.split_once(':').unwrap_or((o.as_str(), "root"));
        out["owner"] = json!(user);
        out["group"] = json!(group);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_translates_to_desired_keys() {
        let m = parse(
            "t",
            "#cloud-config\nhostname: web1.example.org\nusers:\n  - default\n  - name: ann\n    groups: [staff, adm]\n    passwd: $6$s$h\n    ssh_authorized_keys: [ssh-ed25519 AAA ann]\nssh_authorized_keys:\n  - ssh-ed25519 BBB root\nwrite_files:\n  - path: /etc/motd\n    content: aGk=\n    encoding: b64\n    permissions: '0600'\n    owner: ann:staff\n",
        )
        .unwrap();
        assert_eq!(m["hostname"], "web1");
        assert_eq!(m["users"][0]["name"], "ann");
        assert_eq!(m["users"][0]["groups"], json!(["staff", "adm"]));
        assert_eq!(
            m["users"][1],
            json!({"name":"root","ssh_authorized_keys":["ssh-ed25519 BBB root"]})
        );
        assert_eq!(
            m["files"][0],
            json!({"path":"/etc/motd","content":"aGk=","encoding":"base64","mode":"0600","owner":"ann","group":"staff"})
        );
    }

    #[test]
    fn scripts_are_ignored_and_bad_types_are_errors() {
        assert!(parse("t", "#!/bin/sh\necho hi\n").unwrap().is_empty());
        let err = parse("t", "#cloud-config\nusers: 3\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "source t: user-data: users must be a list");
        let err = parse("t", "#cloud-config\nusers:\n - name: a\n   passwd: plain\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("crypt(3)"), "{err}");
        assert!(
            !err.contains("plain"),
            "the password itself must not be echoed: {err}"
        );
    }
}
