//! files: whole files with content, mode and owner, written atomically inside the root.

use serde::{Deserialize, Serialize};

use super::etcfiles;
use super::{or_default, Ctx, Outcome, Planned, Plugin, PluginError};
use crate::schema::{Encoding, FileSpec};

pub struct Files;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(default, deserialize_with = "or_default")]
    pub files: Vec<FileSpec>,
}

/// Write the file at this index of the list (`files`, or the users plugin's
/// `deferred_files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub index: usize,
}

/// Standard base64 (`base64` crate; padding as RFC 4648 requires it, white space
/// between the characters allowed).
pub fn base64_decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean)
}

fn content(f: &FileSpec) -> Result<Vec<u8>, PluginError> {
    match f.encoding {
        Encoding::Plain => Ok(f.content.clone().into_bytes()),
        Encoding::Base64 => base64_decode(&f.content).map_err(|source| PluginError::Base64 {
            path: f.path.clone(),
            source,
        }),
    }
}

fn mode(f: &FileSpec) -> Result<u32, PluginError> {
    u32::from_str_radix(f.mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| PluginError::Invalid {
            what: format!("{}: mode", f.path),
            value: f.mode.clone(),
            reason: "is not octal".into(),
        })
}

/// What the file should hold: the content, or for `append` the existing file with the
/// content added (unless it already ends with it: a second run adds nothing).
fn wanted(ctx: &Ctx, f: &FileSpec) -> Result<Vec<u8>, PluginError> {
    let bytes = content(f)?;
    if !f.append {
        return Ok(bytes);
    }
    let old = ctx.root.read(&f.path)?.unwrap_or_default();
    if !bytes.is_empty() && old.ends_with(&bytes) {
        return Ok(old);
    }
    let mut all = old;
    all.extend_from_slice(&bytes);
    Ok(all)
}

/// The change for one file of the list under `key`, or `None` when it is up to date.
pub fn plan_file(
    ctx: &Ctx,
    key: &'static str,
    i: usize,
    f: &FileSpec,
) -> Result<Option<Planned<Change>>, PluginError> {
    if !f.path.starts_with('/') {
        return Err(PluginError::Invalid {
            what: format!("{key}[{i}]: path"),
            value: f.path.clone(),
            reason: "must be absolute".into(),
        });
    }
    let bytes = wanted(ctx, f)?;
    let m = mode(f)?;
    let stat = ctx.root.stat(&f.path)?;
    let same = match stat {
        Some(_) if !f.overwrite => true,
        Some(st) => {
            let owner_ok = match (etcfiles::uid(ctx, &f.owner), etcfiles::gid(ctx, &f.group)) {
                (Ok(u), Ok(g)) => st.uid == u && st.gid == g,
                _ => false,
            };
            owner_ok
                && st.mode == m
                && ctx.root.read(&f.path).ok().flatten().as_deref() == Some(bytes.as_slice())
        }
        None => false,
    };
    if same {
        return Ok(None);
    }
    let verb = if f.append { "append to" } else { "write" };
    Ok(Some(Planned::new(
        key,
        if key == "files" {
            f.path.clone()
        } else {
            format!("{key}:{}", f.path)
        },
        format!(
            "{verb} {} ({:04o} {}:{}, {} bytes)",
            f.path,
            m,
            f.owner,
            f.group,
            content(f)?.len()
        ),
        Change { index: i },
    )))
}

/// Writes one file (atomically: an `append` writes the old content and the new).
pub fn apply_file(ctx: &Ctx, f: &FileSpec) -> Result<Outcome, PluginError> {
    let owner = match (etcfiles::uid(ctx, &f.owner), etcfiles::gid(ctx, &f.group)) {
        (Ok(u), Ok(g)) => Some((u, g)),
        (Err(e), _) | (_, Err(e)) if !ctx.dry_run => {
            return Err(PluginError::Failed(format!("{}: {e}", f.path)))
        }
        _ => None,
    };
    ctx.write(&f.path, &wanted(ctx, f)?, mode(f)?, owner)?;
    Ok(Outcome::Done)
}

impl Plugin for Files {
    const NAME: &'static str = "files";
    const KEYS: &'static [&'static str] = &["files"];

    type Input = Input;
    type Change = Change;

    fn plan(&self, ctx: &Ctx, input: &Input) -> Result<Vec<Planned<Change>>, PluginError> {
        let mut out = Vec::new();
        for (i, f) in input.files.iter().enumerate() {
            out.extend(plan_file(ctx, "files", i, f)?);
        }
        Ok(out)
    }

    fn apply(&self, ctx: &Ctx, input: &Input, c: &Change) -> Result<Outcome, PluginError> {
        let f = input
            .files
            .get(c.index)
            .ok_or_else(|| PluginError::NotDesired(format!("files[{}]", c.index)))?;
        apply_file(ctx, f)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use runner::Recorder;
    use serde_json::{json, Value};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn content_mode_owner_and_no_escape_from_the_root() {
        if !testing::root_or_skip("content_mode_owner_and_no_escape_from_the_root") {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nann:x:1234:10::/export/home/ann:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root::0:\nstaff::10:\n").unwrap();
        std::os::unix::fs::symlink("/../../../escape", root.join("etc/link")).unwrap();
        let d = json!({"files": [
            {"path": "/etc/motd", "content": "aGVsbG8K", "encoding": "base64", "mode": "0640", "owner": "ann", "group": "staff"},
            {"path": "/etc/link", "content": "x"},
            {"path": "/opt/new/dir/f", "content": "y", "mode": "0600"}
        ]});
        let rec = Recorder::new();
        let r = testing::apply(&Files, &root, &rec, d.clone(), false).unwrap();
        assert!(
            r.iter().all(|r| r.status == crate::protocol::Status::Ok),
            "{r:?}"
        );
        let m = std::fs::metadata(root.join("etc/motd")).unwrap();
        assert_eq!(std::fs::read(root.join("etc/motd")).unwrap(), b"hello\n");
        assert_eq!(
            (m.uid(), m.gid(), m.permissions().mode() & 0o777),
            (1234, 10, 0o640)
        );
        // The link itself is replaced, never followed out of (or inside) the root.
        assert!(!t.path().join("escape").exists() && !root.join("escape").exists());
        assert_eq!(std::fs::read(root.join("etc/link")).unwrap(), b"x");
        assert!(std::fs::symlink_metadata(root.join("etc/link"))
            .unwrap()
            .is_file());
        assert!(testing::plan(&Files, &root, &rec, d).unwrap().is_empty());
    }

    #[test]
    fn bad_content_and_mode_name_the_file_and_value() {
        let t = tempfile::tempdir().unwrap();
        let plan =
            |f: Value| testing::plan(&Files, t.path(), &Recorder::new(), json!({"files": [f]}));
        let e =
            plan(json!({"path": "/etc/a", "content": "a*b", "encoding": "base64"})).unwrap_err();
        assert!(e.starts_with("/etc/a: invalid base64: "), "{e}");
        let e = plan(json!({"path": "/etc/a", "content": "", "mode": "0999"})).unwrap_err();
        assert_eq!(e, "/etc/a: mode \"0999\" is not octal");
        let e = plan(json!({"path": "etc/a", "content": ""})).unwrap_err();
        assert_eq!(e, "files[0]: path \"etc/a\" must be absolute");
    }

    #[test]
    fn base64_round_trips_and_rejects_garbage() {
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aGVs\nbG8=").unwrap(), b"hello");
        assert!(base64_decode("a*b").is_err());
        // Data after a padding `=` is an error, not silently dropped.
        assert!(base64_decode("aGk=aGk=").is_err());
        assert!(base64_decode("a=GVsbG8=").is_err());
    }
}
