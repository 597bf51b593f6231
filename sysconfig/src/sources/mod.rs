//! Metadata sources. Each source returns what it found as a partial desired configuration
//! (a JSON object keyed like [`crate::schema::Desired`]) plus, when it knows one, an
//! instance id. [`gather`] merges them by priority: the first source in
//! `[sources] order` wins for each key it sets, objects merge key by key, and lists are
//! taken whole from the source that wins.

pub mod cloudconfig;
pub mod configdrive;
pub mod ec2;
pub mod fat;
pub mod iso;
pub mod jsonpatch;
pub mod local;
pub mod mime;
pub mod netconfig;
pub mod nocloud;
pub mod smartos;
pub mod volume;

use serde_json::{Map, Value};

use crate::config::{SourceKind, Sources};
use crate::rootfs::Root;
use crate::schema::Desired;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source has metadata, and it is unusable: the run stops (exit code 2).
    #[error("source {source_name}: {error}")]
    Malformed {
        source_name: &'static str,
        #[source]
        error: Malformed,
    },
    #[error("source {source_name}: {message}")]
    Unavailable {
        source_name: &'static str,
        message: String,
    },
}

/// What is wrong with a source's metadata, and where.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("{0}")]
    Message(String),
    /// User-data that cannot be taken apart (gzip, MIME, an archive).
    #[error("user-data: {0}")]
    UserData(#[source] mime::MimeError),
    /// A YAML (or JSON) document that does not read.
    #[error("{0}")]
    Yaml(#[source] crate::yaml::ParseError),
    /// A network document (network-config, network_data.json) with a field that does
    /// not fit, on this line when the document shows where.
    #[error("{}{error}", line.map(|n| format!("line {n}: ")).unwrap_or_default())]
    Network {
        line: Option<usize>,
        #[source]
        error: netconfig::NetError,
    },
    /// SmartOS `sdc:routes` or `sdc:nics`.
    #[error("{0}")]
    SmartOs(#[source] smartos::MetadataError),
    /// A `#cloud-config` part of user-data.
    #[error("{0}")]
    CloudConfig(#[source] cloudconfig::CloudConfigError),
    /// The local desired-configuration file.
    #[error("{0}")]
    Local(#[source] local::LocalError),
    /// The problem is in this file, device or URL.
    #[error("{path}: {error}")]
    In {
        path: String,
        #[source]
        error: Box<Malformed>,
    },
}

impl SourceError {
    pub fn malformed(source_name: &'static str, message: impl Into<String>) -> Self {
        SourceError::Malformed {
            source_name,
            error: Malformed::Message(message.into()),
        }
    }

    /// The same error, said to be in `path` (a volume, a file).
    pub fn within(self, path: impl Into<String>) -> Self {
        match self {
            SourceError::Malformed { source_name, error } => SourceError::Malformed {
                source_name,
                error: Malformed::In {
                    path: path.into(),
                    error: Box::new(error),
                },
            },
            other => other,
        }
    }
}

/// What one source found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    pub instance_id: Option<String>,
    pub desired: Map<String, Value>,
    /// What was skipped or is not supported, for the plan.
    pub warnings: Vec<String>,
}

/// The merged result of all sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Gathered {
    pub instance_id: String,
    /// Names of the sources that found something, highest priority first.
    pub sources: Vec<String>,
    pub desired: Desired,
    /// Each source's warnings, prefixed by its name.
    pub warnings: Vec<String>,
}

pub fn name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Local => "local",
        SourceKind::Nocloud => "nocloud",
        SourceKind::Configdrive => "configdrive",
        SourceKind::Ec2 => "ec2",
        SourceKind::Smartos => "smartos",
    }
}

/// Reads every configured source in priority order and merges what they found.
pub fn gather(
    cfg: &Sources,
    root: &Root,
    runner: &dyn runner::Runner,
) -> Result<Gathered, SourceError> {
    let mut found = Vec::new();
    for kind in &cfg.order {
        let f = match kind {
            SourceKind::Local => local::read(root, &cfg.local)?,
            SourceKind::Nocloud => nocloud::read(root, &cfg.nocloud_seed_dir, &cfg.devices)?,
            SourceKind::Configdrive => configdrive::read(&cfg.devices)?,
            SourceKind::Ec2 => ec2::read(&cfg.ec2_endpoint, cfg.ec2_timeout_ms)?,
            SourceKind::Smartos => smartos::read(runner, &cfg.mdata_get)?,
        };
        if let Some(f) = f {
            validate(name(*kind), &f.desired)?;
            tracing::info!(
                "source {}: found {}",
                name(*kind),
                f.desired.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            found.push((name(*kind), f));
        } else {
            tracing::debug!("source {}: nothing there", name(*kind));
        }
    }
    merge_found(found)
}

/// Merges found sources, highest priority first.
pub fn merge_found(found: Vec<(&'static str, Found)>) -> Result<Gathered, SourceError> {
    let mut merged = Map::new();
    let mut instance_id = None;
    let mut names = Vec::new();
    let mut warnings = Vec::new();
    for (name, f) in found {
        for w in &f.warnings {
            tracing::warn!("source {name}: {w}");
            warnings.push(format!("source {name}: {w}"));
        }
        if instance_id.is_none() {
            instance_id = f.instance_id.clone();
        }
        merge_under(&mut merged, f.desired);
        names.push(name.to_string());
    }
    let desired: Desired = serde_json::from_value(Value::Object(merged.clone()))
        .map_err(|e| SourceError::malformed("merged", e.to_string()))?;
    let instance_id = instance_id.unwrap_or_else(|| derived_instance_id(&desired));
    Ok(Gathered {
        instance_id,
        sources: names,
        desired,
        warnings,
    })
}

/// Adds keys of `lower` that `higher` does not set; objects merge recursively.
pub fn merge_under(higher: &mut Map<String, Value>, lower: Map<String, Value>) {
    for (k, v) in lower {
        match (higher.get_mut(&k), v) {
            (None, v) => {
                higher.insert(k, v);
            }
            (Some(Value::Object(h)), Value::Object(l)) => merge_under(h, l),
            (Some(_), _) => {}
        }
    }
}

fn validate(source_name: &'static str, desired: &Map<String, Value>) -> Result<(), SourceError> {
    serde_json::from_value::<Desired>(Value::Object(desired.clone()))
        .map(|_| ())
        .map_err(|e| SourceError::malformed(source_name, e.to_string()))
}

/// Without a cloud instance id, the configuration itself is the identity: a changed local
/// file counts as a new instance.
fn derived_instance_id(d: &Desired) -> String {
    let text = serde_json::to_string(d).unwrap_or_default();
    // FNV-1a: stable across releases, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("config-{h:016x}")
}

/// A YAML or JSON document as JSON. YAML is a superset of JSON, so one parser reads both.
pub fn parse_yaml(source_name: &'static str, what: &str, text: &str) -> Result<Value, SourceError> {
    crate::yaml::parse(text).map_err(|e| SourceError::Malformed {
        source_name,
        error: Malformed::In {
            path: what.into(),
            error: Box::new(Malformed::Yaml(e)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_malformed_source_names_the_place_and_keeps_the_cause() {
        let e = SourceError::malformed("configdrive", "meta_data.json: line 2: bad")
            .within("/dev/dsk/c1t0d0p0");
        assert_eq!(
            e.to_string(),
            "source configdrive: /dev/dsk/c1t0d0p0: meta_data.json: line 2: bad"
        );
        let gz = [0x1f, 0x8b, 0x08, 0x00, 0x00];
        let e = cloudconfig::parse("nocloud", &gz).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("source nocloud: user-data: gzip data cannot be unpacked: "),
            "{e}"
        );
        let SourceError::Malformed {
            error: Malformed::UserData(mime::MimeError::Gunzip(io)),
            ..
        } = &e
        else {
            panic!("not a gzip error: {e}");
        };
        assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    fn found(v: Value, id: Option<&str>) -> Found {
        Found {
            instance_id: id.map(String::from),
            desired: v.as_object().unwrap().clone(),
            warnings: vec![],
        }
    }

    #[test]
    fn higher_priority_wins_per_key_and_objects_merge() {
        let g = merge_found(vec![
            ("local", found(json!({"hostname":"a","dns":{"search":["x"]}}), None)),
            (
                "nocloud",
                found(
                    json!({"hostname":"b","dns":{"nameservers":["1.1.1.1"],"search":["y"]},"timezone":"UTC"}),
                    Some("i-9"),
                ),
            ),
        ])
        .unwrap();
        assert_eq!(g.instance_id, "i-9");
        assert_eq!(g.desired.hostname.as_deref(), Some("a"));
        let dns = g.desired.dns.unwrap();
        assert_eq!(dns.search, ["x"]);
        assert_eq!(dns.nameservers, ["1.1.1.1"]);
        assert_eq!(g.desired.timezone.as_deref(), Some("UTC"));
        assert_eq!(g.sources, ["local", "nocloud"]);
    }

    #[test]
    fn without_a_cloud_id_the_config_hash_is_the_instance_id() {
        let a = merge_found(vec![("local", found(json!({"hostname":"a"}), None))]).unwrap();
        let a2 = merge_found(vec![("local", found(json!({"hostname":"a"}), None))]).unwrap();
        let b = merge_found(vec![("local", found(json!({"hostname":"b"}), None))]).unwrap();
        assert_eq!(a.instance_id, a2.instance_id);
        assert_ne!(a.instance_id, b.instance_id);
        assert!(a.instance_id.starts_with("config-"));
    }
}
