//! Desired and applied state, kept apart under the state directory (inside the root):
//! `desired.json` is what the sources asked for, `applied.json` what the plugins last did,
//! and `history/` keeps the last few applied states. Every file is replaced atomically and
//! readable by root only, because the desired state may hold password hashes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::rootfs::{Root, RootError};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Root(#[from] RootError),
    #[error("{path} is damaged: {message}")]
    Damaged { path: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredRecord {
    pub instance_id: String,
    /// Sources that contributed, highest priority first.
    pub sources: Vec<String>,
    pub desired: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultRecord {
    pub plugin: String,
    pub id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedRecord {
    pub instance_id: String,
    /// Seconds since the epoch.
    pub time: u64,
    /// True when every plugin and every change succeeded.
    pub ok: bool,
    /// The value of each key whose plugin applied every change.
    pub applied: Map<String, Value>,
    pub results: Vec<ResultRecord>,
}

pub struct Store {
    root: Root,
    dir: PathBuf,
    history: usize,
}

impl Store {
    pub fn new(root: Root, dir: impl Into<PathBuf>, history: usize) -> Self {
        Store {
            root,
            dir: dir.into(),
            history,
        }
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, StateError> {
        let path = self.dir.join(name);
        match self.root.read(&path)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StateError::Damaged {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })
            }
        }
    }

    fn write<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), StateError> {
        self.root.create_dir_all(&self.dir, 0o700)?;
        let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
        bytes.push(b'\n');
        self.root.write_atomic(path, &bytes, 0o600, None)?;
        Ok(())
    }

    pub fn desired(&self) -> Result<Option<DesiredRecord>, StateError> {
        self.read("desired.json")
    }

    pub fn applied(&self) -> Result<Option<AppliedRecord>, StateError> {
        self.read("applied.json")
    }

    pub fn save_desired(&self, rec: &DesiredRecord) -> Result<(), StateError> {
        self.write(&self.dir.join("desired.json"), rec)
    }

    /// Moves the current applied state into history (dropping the oldest beyond the
    /// bound) and stores `rec` as the applied state.
    pub fn save_applied(&self, rec: &AppliedRecord) -> Result<(), StateError> {
        let hist = self.dir.join("history");
        if let Some(prev) = self.applied()? {
            self.root.create_dir_all(&hist, 0o700)?;
            let n = self
                .history_names()?
                .last()
                .and_then(|n| n.get(8..14).and_then(|d| d.parse::<u64>().ok()))
                .map_or(0, |n| n + 1);
            self.write(&hist.join(format!("applied-{n:06}.json")), &prev)?;
            let names = self.history_names()?;
            if names.len() > self.history {
                for old in &names[..names.len() - self.history] {
                    self.root.remove(hist.join(old))?;
                }
            }
        }
        self.write(&self.dir.join("applied.json"), rec)
    }

    /// History file names, oldest first.
    pub fn history_names(&self) -> Result<Vec<String>, StateError> {
        Ok(self
            .root
            .list(self.dir.join("history"))?
            .into_iter()
            .filter(|n| n.starts_with("applied-") && n.ends_with(".json"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(id: &str, ok: bool) -> AppliedRecord {
        AppliedRecord {
            instance_id: id.into(),
            time: 1,
            ok,
            applied: Map::new(),
            results: vec![],
        }
    }

    #[test]
    fn desired_and_applied_are_separate_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(Root::new(t.path()), "/var/lib/sysconfig", 3);
        assert!(store.desired().unwrap().is_none());
        let d = DesiredRecord {
            instance_id: "i-1".into(),
            sources: vec!["local".into()],
            desired: Map::new(),
        };
        store.save_desired(&d).unwrap();
        store.save_applied(&applied("i-1", true)).unwrap();
        assert_eq!(store.desired().unwrap().unwrap(), d);
        assert_eq!(store.applied().unwrap().unwrap().instance_id, "i-1");
        let mode = std::fs::metadata(t.path().join("var/lib/sysconfig/desired.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn history_is_bounded_and_keeps_the_newest() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(Root::new(t.path()), "/state", 3);
        for i in 0..6 {
            store
                .save_applied(&applied(&format!("i-{i}"), true))
                .unwrap();
        }
        let names = store.history_names().unwrap();
        assert_eq!(
            names,
            [
                "applied-000002.json",
                "applied-000003.json",
                "applied-000004.json"
            ]
        );
        let newest: AppliedRecord = store.read("history/applied-000004.json").unwrap().unwrap();
        assert_eq!(newest.instance_id, "i-4");
        assert_eq!(store.applied().unwrap().unwrap().instance_id, "i-5");
    }

    #[test]
    fn damaged_state_is_reported_with_its_path() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("s")).unwrap();
        std::fs::write(t.path().join("s/applied.json"), "{nope").unwrap();
        let err = Store::new(Root::new(t.path()), "/s", 3)
            .applied()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("/s/applied.json is damaged"),
            "{err}"
        );
    }
}
