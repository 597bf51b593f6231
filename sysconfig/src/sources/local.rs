//! The local desired-configuration file: TOML, or JSON when its name ends in `.json`.
//! A top-level `instance_id` is taken as the instance id; everything else must be a
//! desired-configuration key.

use std::path::Path;

use serde_json::Value;

use super::{Found, Malformed, SourceError};
use crate::rootfs::Root;

const NAME: &str = "local";

pub fn read(root: &Root, path: &Path) -> Result<Option<Found>, SourceError> {
    let text = root
        .read_string(path)
        .map_err(|e| SourceError::malformed(NAME, e.to_string()))?;
    let Some(text) = text else { return Ok(None) };
    parse(&text, path.extension().is_some_and(|e| e == "json"))
        .map(Some)
        .map_err(|e| SourceError::Malformed {
            source_name: NAME,
            error: Malformed::In {
                path: path.display().to_string(),
                error: Box::new(Malformed::Local(e)),
            },
        })
}

/// What makes the local file unusable.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Toml(#[from] crate::tomljson::TomlSyntaxError),
    #[error("the document is not a table")]
    NotATable,
    #[error("instance_id must be a non-empty string")]
    InstanceId,
}

pub fn parse(text: &str, json: bool) -> Result<Found, LocalError> {
    let value: Value = if json {
        serde_json::from_str(text)?
    } else {
        crate::tomljson::parse(text)?
    };
    let Value::Object(mut map) = value else {
        return Err(LocalError::NotATable);
    };
    let instance_id = match map.remove("instance_id") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(_) => return Err(LocalError::InstanceId),
    };
    Ok(Found {
        instance_id,
        desired: map,
        warnings: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_read_the_same() {
        let t = parse(
            "instance_id = \"i-1\"\nhostname = \"vm\"\n[dns]\nnameservers = [\"9.9.9.9\"]\n",
            false,
        )
        .unwrap();
        let j = parse(
            r#"{"instance_id":"i-1","hostname":"vm","dns":{"nameservers":["9.9.9.9"]}}"#,
            true,
        )
        .unwrap();
        assert_eq!(t, j);
        assert_eq!(t.instance_id.as_deref(), Some("i-1"));
    }

    #[test]
    fn malformed_file_names_path_and_problem() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/d.toml"), "hostname = [").unwrap();
        let err = read(&Root::new(tmp.path()), Path::new("/etc/d.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("source local: /etc/d.toml:"), "{err}");
    }

    #[test]
    fn a_toml_syntax_error_names_the_place_but_never_shows_the_line() {
        let secret = "$6$saltsalt$VerySecretHashValue";
        let text =
            format!("hostname = \"vm\"\n[[users]]\nname = \"ann\"\npassword_hash = \"{secret}\n");
        let err = parse(&text, false).unwrap_err().to_string();
        assert!(!err.contains("VerySecret"), "{err}");
        assert!(err.starts_with("line 4 column "), "{err}");
        assert!(err.contains("(key password_hash)"), "{err}");
    }
}
