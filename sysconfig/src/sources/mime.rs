//! User-data as cloud-init takes it apart (`cloudinit/user_data.py`,
//! `UserDataProcessor` and `convert_string`): gzip'd data is unpacked, a MIME multipart
//! message (`cloud-init devel make-mime`) is split into its parts, a gzip'd part is
//! unpacked, a part of type `text/plain` (or none) gets its type from how it starts
//! (`#cloud-config`, `#!`, `#include` ... case-insensitive, after leading white space, as
//! `cloudinit/handlers/__init__.py`'s `type_from_starts_with`), and a
//! `#cloud-config-archive` is exploded into its entries.

use std::io::Read;

use crate::yaml::{self, Node};

/// Largest user-data after gunzip (cloud-init's EC2 limit is 16 KiB compressed; this is
/// a safety bound, not a format rule).
const MAX_UNPACKED: u64 = 64 << 20;

/// One part of the user-data, its type decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// MIME type, lower case: `text/cloud-config`, `text/x-shellscript` ...
    pub ctype: String,
    pub payload: Vec<u8>,
    pub filename: Option<String>,
    /// A `Merge-Type` (or `X-Merge-Type`) header was given.
    pub merge_header: bool,
}

/// The prefixes of `INCLUSION_TYPES_MAP`, longest first.
const STARTS: &[(&str, &str)] = &[
    (
        "text/x-shellscript-per-instance",
        "text/x-shellscript-per-instance",
    ),
    ("text/x-shellscript-per-boot", "text/x-shellscript-per-boot"),
    ("text/x-shellscript-per-once", "text/x-shellscript-per-once"),
    ("#cloud-config-archive", "text/cloud-config-archive"),
    ("#cloud-config-jsonp", "text/cloud-config-jsonp"),
    ("## template: jinja", "text/jinja2"),
    ("#cloud-boothook", "text/cloud-boothook"),
    ("#include-once", "text/x-include-once-url"),
    ("#part-handler", "text/part-handler"),
    ("#cloud-config", "text/cloud-config"),
    ("#include", "text/x-include-url"),
    ("#!", "text/x-shellscript"),
];

const DECOMP_TYPES: &[&str] = &[
    "application/gzip",
    "application/gzip-compressed",
    "application/gzipped",
    "application/x-compress",
    "application/x-compressed",
    "application/x-gunzip",
    "application/x-gzip",
    "application/x-gzip-compressed",
];

/// `type_from_starts_with`: `None` when nothing matches (or the bytes are not UTF-8).
pub fn type_from_starts_with(payload: &[u8]) -> Option<&'static str> {
    let text = std::str::from_utf8(payload).ok()?;
    // Python's str.lstrip(): Unicode white space, which U+FEFF (a BOM) is not.
    let lc = text.trim_start().to_lowercase();
    STARTS
        .iter()
        .find(|(p, _)| lc.starts_with(p))
        .map(|(_, t)| *t)
}

/// What makes user-data (or an encoded file in it) unreadable.
#[derive(Debug, thiserror::Error)]
pub enum MimeError {
    #[error("gzip data cannot be unpacked: {0}")]
    Gunzip(#[source] std::io::Error),
    #[error("gzip data unpacks to more than {MAX_UNPACKED} bytes")]
    TooLarge,
    #[error("base64 data has a length that no encoding produces")]
    Base64Length,
    #[error("base64 data has incorrect padding")]
    Base64Padding,
    #[error("base64 data cannot be decoded: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("a MIME message that is not UTF-8")]
    NotUtf8,
    #[error("MIME parts nested too deeply")]
    TooDeep,
    #[error("a {ctype} part has no boundary")]
    NoBoundary { ctype: String },
    /// A part whose content cannot be decoded.
    #[error("a {ctype} part: {source}")]
    Part {
        ctype: String,
        #[source]
        source: Box<MimeError>,
    },
    #[error("#cloud-config-archive: not UTF-8 text")]
    ArchiveNotUtf8,
    #[error("#cloud-config-archive: {0}")]
    ArchiveYaml(#[source] yaml::YamlError),
    #[error("#cloud-config-archive: the document is {kind}, not a list")]
    ArchiveNotList { kind: &'static str },
}

/// Gunzips `data` when it starts with the gzip magic number; other data is returned as is.
pub fn maybe_gunzip(data: &[u8]) -> Result<Vec<u8>, MimeError> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Ok(data.to_vec());
    }
    gunzip(data)
}

pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, MimeError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(MAX_UNPACKED + 1)
        .read_to_end(&mut out)
        .map_err(MimeError::Gunzip)?;
    if out.len() as u64 > MAX_UNPACKED {
        return Err(MimeError::TooLarge);
    }
    Ok(out)
}

/// Python's `base64.b64decode` without `validate`: characters outside the alphabet are
/// skipped, the data ends at the first padding, and missing padding is an error.
pub fn b64decode(data: &[u8]) -> Result<Vec<u8>, MimeError> {
    let clean: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .collect();
    let end = clean.iter().position(|b| *b == b'=').unwrap_or(clean.len());
    let (body, rest) = clean.split_at(end);
    if body.len() % 4 == 1 {
        return Err(MimeError::Base64Length);
    }
    let need = (4 - body.len() % 4) % 4;
    if rest.iter().take_while(|b| **b == b'=').count() < need {
        return Err(MimeError::Base64Padding);
    }
    let mut padded = body.to_vec();
    padded.extend(std::iter::repeat_n(b'=', need));
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(&padded)
        .map_err(MimeError::Base64)
}

/// The parts of user-data, in order; `warnings` gets what was skipped and why.
pub fn parts(raw: &[u8], warnings: &mut Vec<String>) -> Result<Vec<Part>, MimeError> {
    let data = maybe_gunzip(raw)?;
    let head = &data[..data.len().min(4096)];
    let leaves = if String::from_utf8_lossy(head)
        .to_lowercase()
        .contains("mime-version:")
    {
        let text = std::str::from_utf8(&data).map_err(|_| MimeError::NotUtf8)?;
        let mut out = Vec::new();
        mime_leaves(text.as_bytes(), 0, &mut out)?;
        out
    } else {
        vec![Part {
            ctype: "text/x-not-multipart".into(),
            payload: data,
            filename: None,
            merge_header: false,
        }]
    };
    let mut out = Vec::new();
    for mut p in leaves {
        if DECOMP_TYPES.contains(&p.ctype.as_str()) {
            match gunzip(&p.payload) {
                Ok(d) => {
                    p.payload = d;
                    p.ctype = "text/plain".into();
                }
                Err(e) => {
                    warnings.push(format!("user-data part {}: {e}; skipped", p.ctype));
                    continue;
                }
            }
        }
        if matches!(
            p.ctype.as_str(),
            "text/plain" | "text/x-not-multipart" | "text/x-shellscript"
        ) {
            if let Some(t) = type_from_starts_with(&p.payload) {
                p.ctype = t.into();
            }
        }
        match p.ctype.as_str() {
            "text/cloud-config-archive" => explode_archive(&p.payload, &mut out, warnings)?,
            _ => out.push(p),
        }
    }
    Ok(out)
}

/// `_explode_archive`: a YAML list of strings or `{content, type, filename, ...}`; an
/// entry without a type gets it from how it starts, else `text/cloud-config`.
fn explode_archive(
    payload: &[u8],
    out: &mut Vec<Part>,
    warnings: &mut Vec<String>,
) -> Result<(), MimeError> {
    let text = std::str::from_utf8(payload).map_err(|_| MimeError::ArchiveNotUtf8)?;
    let doc = yaml::load(text).map_err(MimeError::ArchiveYaml)?;
    let entries = match doc {
        Node::Seq(v) => v,
        Node::Null => vec![],
        other => return Err(MimeError::ArchiveNotList { kind: other.kind() }),
    };
    for (i, e) in entries.into_iter().enumerate() {
        let e = match e {
            Node::Str(s) => Node::Map(vec![("content".into(), Node::Str(s))]),
            m @ Node::Map(_) => m,
            other => {
                warnings.push(format!(
                    "#cloud-config-archive entry {i} is {}, not a mapping; skipped",
                    other.kind()
                ));
                continue;
            }
        };
        let (content, binary) = match e.get("content") {
            None => (Vec::new(), false),
            Some(Node::Str(s)) => (s.clone().into_bytes(), false),
            Some(Node::Bytes(b)) => (b.clone(), true),
            Some(other) => {
                warnings.push(format!(
                    "#cloud-config-archive entry {i}: content is {}; skipped",
                    other.kind()
                ));
                continue;
            }
        };
        let ctype = match e.get("type") {
            Some(Node::Str(t)) if !t.is_empty() => t.to_lowercase(),
            _ => type_from_starts_with(&content)
                .unwrap_or(if binary {
                    "application/octet-stream"
                } else {
                    "text/cloud-config"
                })
                .to_string(),
        };
        let merge_header = e.get("Merge-Type").is_some() || e.get("X-Merge-Type").is_some();
        out.push(Part {
            ctype,
            payload: content,
            filename: e.get("filename").and_then(Node::as_str).map(String::from),
            merge_header,
        });
    }
    Ok(())
}

struct Headers(Vec<(String, String)>);

impl Headers {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `type/subtype` (lower case, default `text/plain`) and the parameters of a
/// Content-Type or Content-Disposition value.
fn content_type(v: Option<&str>) -> (String, Vec<(String, String)>) {
    let Some(v) = v else {
        return ("text/plain".into(), vec![]);
    };
    let mut it = v.split(';');
    let t = it.next().unwrap_or("").trim().to_lowercase();
    let params = it
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_lowercase(), v.to_string()))
        })
        .collect();
    let t = if t.contains('/') {
        t
    } else {
        "text/plain".into()
    };
    (t, params)
}

fn split_message(msg: &[u8]) -> (Headers, &[u8]) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    loop {
        let end = msg[i..].iter().position(|b| *b == b'\n').map(|p| i + p);
        let line_end = end.unwrap_or(msg.len());
        let line = String::from_utf8_lossy(&msg[i..line_end]);
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            let body = end.map(|e| &msg[e + 1..]).unwrap_or(&[]);
            return (Headers(headers), body);
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        } else {
            // Not a header: the message has no header block.
            return (Headers(headers), &msg[i..]);
        }
        match end {
            Some(e) => i = e + 1,
            None => return (Headers(headers), &[]),
        }
    }
}

fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'=' {
            let hex = body.get(i + 1..i + 3);
            if let Some(h) = hex.and_then(|h| std::str::from_utf8(h).ok()) {
                if let Ok(b) = u8::from_str_radix(h, 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            // A soft line break.
            if body.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if body.get(i + 1..i + 3) == Some(b"\r\n") {
                i += 3;
                continue;
            }
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

fn mime_leaves(msg: &[u8], depth: usize, out: &mut Vec<Part>) -> Result<(), MimeError> {
    if depth > 8 {
        return Err(MimeError::TooDeep);
    }
    let (headers, body) = split_message(msg);
    let (ctype, params) = content_type(headers.get("Content-Type"));
    if ctype.starts_with("multipart/") {
        let boundary = params
            .iter()
            .find(|(k, _)| k == "boundary")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| MimeError::NoBoundary {
                ctype: ctype.clone(),
            })?;
        let delim = format!("--{boundary}");
        let text = String::from_utf8_lossy(body);
        let mut current: Option<String> = None;
        for line in text.split_inclusive('\n') {
            let bare = line.trim_end_matches(['\r', '\n']);
            if bare.trim_end() == delim || bare.trim_end() == format!("{delim}--") {
                if let Some(mut p) = current.take() {
                    // The line break before a delimiter belongs to it (RFC 2046 5.1.1).
                    if p.ends_with('\n') {
                        p.pop();
                        if p.ends_with('\r') {
                            p.pop();
                        }
                    }
                    mime_leaves(p.as_bytes(), depth + 1, out)?;
                }
                if bare.trim_end() == format!("{delim}--") {
                    break;
                }
                current = Some(String::new());
            } else if let Some(p) = current.as_mut() {
                p.push_str(line);
            }
        }
        return Ok(());
    }
    let payload = match headers
        .get("Content-Transfer-Encoding")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        Some("base64") => b64decode(body).map_err(|e| MimeError::Part {
            ctype: ctype.clone(),
            source: Box::new(e),
        })?,
        Some("quoted-printable") => quoted_printable(body),
        _ => body.to_vec(),
    };
    let (_, disp) = content_type(headers.get("Content-Disposition"));
    let filename = disp
        .iter()
        .find(|(k, _)| k == "filename")
        .map(|(_, v)| v.clone());
    out.push(Part {
        ctype,
        payload,
        filename,
        merge_header: headers.get("Merge-Type").is_some() || headers.get("X-Merge-Type").is_some(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_from_how_parts_start() {
        assert_eq!(
            type_from_starts_with(b"  #Cloud-Config\n"),
            Some("text/cloud-config")
        );
        assert_eq!(
            type_from_starts_with(b"#cloud-config-archive\n"),
            Some("text/cloud-config-archive")
        );
        assert_eq!(
            type_from_starts_with(b"#cloud-config-jsonp\n"),
            Some("text/cloud-config-jsonp")
        );
        assert_eq!(
            type_from_starts_with("\u{feff}#cloud-config".as_bytes()),
            None
        );
    }

    #[test]
    fn python_base64() {
        assert_eq!(b64decode(b"aGk=aGk=").unwrap(), b"hi");
        assert_eq!(b64decode(b"aGVs\nbG8=").unwrap(), b"hello");
        assert!(b64decode(b"aGk").is_err());
        assert_eq!(b64decode(b"aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
    }
}
