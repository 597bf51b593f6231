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
mod ssh_keys;
mod users;
mod write_files;

use super::mime::{self, Part};
use super::{Malformed, SourceError};
use crate::yaml::{self, Node};
pub use error::{CloudConfigError, FileProblem, GroupsError, WriteFileError};
pub use ssh_keys::normalize_pubkeys;
use users::users_and_groups;
use write_files::write_files;

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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn ud(text: &str) -> (Map<String, Value>, Vec<String>) {
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
