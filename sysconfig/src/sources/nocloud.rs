//! NoCloud: `meta-data`, `user-data` and optionally `network-config`, from a seed
//! directory or from a FAT or ISO9660 volume labelled `cidata`.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::volume::{find_labelled, ReadSeek, Volume};
use super::{cloudconfig, netconfig, Found, SourceError};
use crate::rootfs::Root;

const NAME: &str = "nocloud";

/// The three NoCloud files as text (`None` when absent).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Seed {
    pub meta_data: Option<String>,
    pub user_data: Option<Vec<u8>>,
    pub network_config: Option<String>,
}

pub fn read(
    root: &Root,
    seed_dir: &Path,
    devices: &[PathBuf],
) -> Result<Option<Found>, SourceError> {
    let io = |e: crate::rootfs::RootError| SourceError::malformed(NAME, e.to_string());
    let file = |n: &str| root.read_string(seed_dir.join(n)).map_err(io);
    let seed = Seed {
        meta_data: file("meta-data")?,
        user_data: root.read(seed_dir.join("user-data")).map_err(io)?,
        network_config: file("network-config")?,
    };
    if seed.meta_data.is_some() {
        tracing::info!("source nocloud: seed directory {}", seed_dir.display());
        return parse(&seed).map(Some);
    }
    let found = find_labelled(devices, "cidata")
        .map_err(|e| SourceError::malformed(NAME, e.to_string()))?;
    match found {
        Some((path, mut vol)) => {
            tracing::info!("source nocloud: volume {}", path.display());
            let seed = seed_from_volume(&mut vol)
                .map_err(|e| SourceError::malformed(NAME, format!("{}: {e}", path.display())))?;
            parse(&seed).map(Some)
        }
        None => Ok(None),
    }
}

pub fn seed_from_volume<R: ReadSeek>(
    vol: &mut Volume<R>,
) -> Result<Seed, super::volume::VolumeError> {
    let user_data = vol.read("user-data")?;
    let mut text = |n: &str| -> Result<Option<String>, super::volume::VolumeError> {
        Ok(vol
            .read(n)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    Ok(Seed {
        meta_data: text("meta-data")?,
        user_data,
        network_config: text("network-config")?,
    })
}

pub fn parse(seed: &Seed) -> Result<Found, SourceError> {
    let bad = |m: String| SourceError::malformed(NAME, m);
    let meta = seed
        .meta_data
        .as_deref()
        .ok_or_else(|| bad("meta-data is missing".into()))?;
    let meta = match super::parse_yaml(NAME, "meta-data", meta)? {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => return Err(bad("meta-data: the document is not a mapping".into())),
    };
    let text = |k: &str| -> Result<Option<String>, SourceError> {
        match meta.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(bad(format!("meta-data: {k} must be a string"))),
        }
    };
    let instance_id = text("instance-id")?;
    let mut desired = Map::new();
    if let Some(h) = text("local-hostname")? {
        desired.insert("hostname".into(), json!(h.split('.').next().unwrap_or(&h)));
    }
    if let Some(nc) = &seed.network_config {
        super::merge_under(&mut desired, netconfig::parse(NAME, nc)?);
    }
    // user-data's hostname overrides meta-data's, as in cloud-init; the meta-data's
    // `public-keys` go to root whatever user-data's `users` says.
    let keys = cloudconfig::normalize_pubkeys(meta.get("public-keys"));
    let (desired, warnings) =
        cloudconfig::combine(NAME, seed.user_data.as_deref(), &keys, desired)?;
    Ok(Found {
        instance_id,
        desired,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_directory_under_the_root() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("var/lib/cloud/seed/nocloud");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("meta-data"),
            "instance-id: iid-1\nlocal-hostname: box.example\n",
        )
        .unwrap();
        std::fs::write(dir.join("user-data"), "#cloud-config\ntimezone: UTC\n").unwrap();
        let f = read(
            &Root::new(t.path()),
            Path::new("/var/lib/cloud/seed/nocloud"),
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.instance_id.as_deref(), Some("iid-1"));
        assert_eq!(
            Value::Object(f.desired),
            json!({"timezone":"UTC","hostname":"box"})
        );
    }

    #[test]
    fn meta_data_keys_stay_for_root_when_user_data_has_users() {
        let f = parse(&Seed {
            meta_data: Some("instance-id: i\npublic-keys:\n  laptop: ssh-ed25519 CLOUD k\n".into()),
            user_data: Some(b"#cloud-config\nusers:\n  - name: ann\n    ssh_authorized_keys: from=\"10.0.0.1,10.0.0.2\" ssh-ed25519 ANN a\n".to_vec()),
            network_config: None,
        })
        .unwrap();
        let users = &f.desired["users"];
        assert_eq!(
            users[0],
            json!({"name":"root","ssh_authorized_keys":["ssh-ed25519 CLOUD k"]})
        );
        // A string is one key: its options field keeps its commas.
        assert_eq!(
            users[1]["ssh_authorized_keys"],
            json!(["from=\"10.0.0.1,10.0.0.2\" ssh-ed25519 ANN a"])
        );
    }

    #[test]
    fn absent_seed_and_no_volume_is_nothing() {
        let t = tempfile::tempdir().unwrap();
        assert!(read(
            &Root::new(t.path()),
            Path::new("/seed"),
            &[t.path().join("none")]
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn malformed_meta_data_is_a_clear_error() {
        let err = parse(&Seed {
            meta_data: Some("instance-id: [unclosed\n".into()),
            ..Seed::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("source nocloud: meta-data:"), "{err}");
    }
}
