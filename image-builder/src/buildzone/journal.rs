//! What a build zone run has to undo, written down before it is done.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ZoneError;

/// One thing to undo, in the order they are taken: a configured zone is deleted, an
/// installed one uninstalled, a booted one halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneUndo {
    Delete,
    Uninstall,
    Halt,
}

impl std::fmt::Display for ZoneUndo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ZoneUndo::Delete => "delete the build zone",
            ZoneUndo::Uninstall => "uninstall the build zone",
            ZoneUndo::Halt => "halt the build zone",
        })
    }
}

pub struct ZoneJournal {
    path: PathBuf,
    entries: Vec<ZoneUndo>,
}

impl ZoneJournal {
    pub fn open(dir: &Path, zone: &str) -> Result<ZoneJournal, ZoneError> {
        let io = |path: &Path, source| ZoneError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let path = dir.join(format!("{zone}.json"));
        let entries = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                ZoneError::Invalid(format!("zone journal {} is damaged: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path, e)),
        };
        Ok(ZoneJournal { path, entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn pending(&self) -> Vec<ZoneUndo> {
        self.entries.clone()
    }

    pub fn push(&mut self, u: ZoneUndo) -> Result<(), ZoneError> {
        self.entries.push(u);
        self.save()
    }

    /// Undoes newest first with `undo`; an undo that fails stays, and so does everything
    /// older (a zone that will not halt cannot be uninstalled).
    pub fn unwind(&mut self, mut undo: impl FnMut(ZoneUndo) -> Result<(), String>) -> Vec<String> {
        let mut failed = Vec::new();
        while let Some(u) = self.entries.last().copied() {
            match undo(u) {
                Ok(()) => {
                    self.entries.pop();
                    if let Err(e) = self.save() {
                        failed.push(e.to_string());
                        break;
                    }
                }
                Err(e) => {
                    failed.push(format!("{u}: {e}"));
                    break;
                }
            }
        }
        failed
    }

    fn save(&self) -> Result<(), ZoneError> {
        let io = |source| ZoneError::Io {
            path: self.path.clone(),
            source,
        };
        if self.entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
                _ => Ok(()),
            };
        }
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&self.entries).unwrap_or_default();
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}
