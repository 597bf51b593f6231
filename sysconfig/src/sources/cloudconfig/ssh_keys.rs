//! SSH keys: the cloud's own (from meta-data) and the top-level `ssh_authorized_keys`,
//! given to root.

use serde_json::{json, Map, Value};

use super::UserData;

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
