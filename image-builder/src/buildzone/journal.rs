//! What a build zone run has to undo, written down before it is done, in the one cleanup
//! journal type ([`crate::journal`]).

use serde::{Deserialize, Serialize};

/// One thing to undo, in the order they are taken: a configured zone is deleted, an
/// installed one uninstalled, a booted one halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
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

impl crate::journal::Undoable for ZoneUndo {
    /// `STATE/ZONE.json`, as before the journals were one type.
    fn file_name(zone: &str) -> String {
        format!("{zone}.json")
    }

    /// A zone that will not halt cannot be uninstalled, nor deleted while installed.
    const IN_ORDER: bool = true;

    /// The first format: a bare list of undo names, oldest first (`["delete", "halt"]`).
    fn legacy(bytes: &[u8]) -> Option<Vec<Self>> {
        let names: Vec<String> = serde_json::from_slice(bytes).ok()?;
        names
            .iter()
            .map(|n| match n.as_str() {
                "delete" => Some(ZoneUndo::Delete),
                "uninstall" => Some(ZoneUndo::Uninstall),
                "halt" => Some(ZoneUndo::Halt),
                _ => None,
            })
            .collect()
    }
}

/// The journal of one build zone (in `STATE/ZONE.json`).
pub type ZoneJournal = crate::journal::Journal<ZoneUndo>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_in_the_first_format_is_read_and_rewritten_in_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ib1.json");
        std::fs::write(&path, r#"["delete","uninstall"]"#).unwrap();
        let mut j = ZoneJournal::open(dir.path(), "ib1").unwrap();
        assert_eq!(j.pending(), [ZoneUndo::Delete, ZoneUndo::Uninstall]);
        j.push(ZoneUndo::Halt).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"id": 0, "undo": "delete"},
                {"id": 1, "undo": "uninstall"},
                {"id": 2, "undo": "halt"}
            ])
        );
        assert_eq!(
            ZoneJournal::open(dir.path(), "ib1").unwrap().pending(),
            [ZoneUndo::Delete, ZoneUndo::Uninstall, ZoneUndo::Halt]
        );
        // Neither format: damaged, and named.
        std::fs::write(&path, r#"["reboot"]"#).unwrap();
        let Err(e) = ZoneJournal::open(dir.path(), "ib1") else {
            panic!("an unknown undo was read");
        };
        assert!(e.to_string().contains("ib1.json is damaged"), "{e}");
    }
}
