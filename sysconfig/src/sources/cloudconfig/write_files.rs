//! `write_files`, as cloud-init's `cc_write_files` decodes them, to the `files` and
//! `deferred_files` keys.

use serde_json::{json, Value};

use super::{mime, py_bool, scalar_text, truthy, FileProblem, UserData, WriteFileError};
use crate::yaml::Node;

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

pub(super) fn write_files(cfg: &Node, ud: &mut UserData) {
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
    use super::super::tests::ud;
    use super::*;

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
}
