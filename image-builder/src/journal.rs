//! The cleanup journal: every temporary thing is written down (durably) before it is
//! made, and crossed off when it is kept or removed. Whatever is still written down when
//! the work fails, is interrupted or crashes is undone newest first: at once, or by the
//! next run, or by `image-builder clean`. One type serves builds ([`crate::build::journal`])
//! and build zones ([`crate::buildzone`]); each says what its undos are.
//!
//! On disk a journal is a JSON array of entries, each `{"id": N, "undo": KIND, ...fields}`.

use std::fmt::{Debug, Display};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What one kind of journal records.
pub trait Undoable: Clone + Debug + Display + Serialize + DeserializeOwned {
    /// The journal file of `name` in its directory.
    fn file_name(name: &str) -> String;

    /// Whether a failed undo leaves every older entry in place too (each older thing can
    /// only be undone after the newer ones: a zone that will not halt cannot be
    /// uninstalled). Otherwise the others are still tried and only the failed one stays.
    const IN_ORDER: bool = false;

    /// The entries of a journal written in an older format, when `bytes` is one.
    fn legacy(_bytes: &[u8]) -> Option<Vec<Self>> {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cleanup journal {} is damaged: {source}", .path.display())]
    Damaged {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "U: Undoable")]
struct Entry<U> {
    id: u64,
    #[serde(flatten)]
    undo: U,
}

/// A token for an entry, to cross it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(u64);

pub struct Journal<U: Undoable> {
    path: PathBuf,
    entries: Vec<Entry<U>>,
    next: u64,
}

impl<U: Undoable> Journal<U> {
    /// Opens the journal `name` in `dir`, with whatever a previous run left in it.
    pub fn open(dir: &Path, name: &str) -> Result<Self, JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(U::file_name(name));
        let entries: Vec<Entry<U>> = match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(entries) => entries,
                Err(source) => match U::legacy(&b) {
                    Some(old) => old
                        .into_iter()
                        .zip(0..)
                        .map(|(undo, id)| Entry { id, undo })
                        .collect(),
                    None => return Err(JournalError::Damaged { path, source }),
                },
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        let next = entries.iter().map(|e| e.id + 1).max().unwrap_or(0);
        Ok(Journal {
            path,
            entries,
            next,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pending undos, oldest first.
    pub fn pending(&self) -> Vec<U> {
        self.entries.iter().map(|e| e.undo.clone()).collect()
    }

    /// Writes `undo` down (durably) before the thing it undoes is done.
    pub fn push(&mut self, undo: U) -> Result<Mark, JournalError> {
        let id = self.next;
        self.next += 1;
        self.entries.push(Entry { id, undo });
        self.save()?;
        Ok(Mark(id))
    }

    /// [`Journal::push`] of `undo` and [`Journal::done`] of `old` in one write: the undo of
    /// a thing that changed (a dataset's rollback target moved to a newer snapshot). The
    /// new entry is the newest, as a push would make it.
    pub fn replace(&mut self, old: Mark, undo: U) -> Result<Mark, JournalError> {
        let id = self.next;
        self.next += 1;
        self.entries.retain(|e| e.id != old.0);
        self.entries.push(Entry { id, undo });
        self.save()?;
        Ok(Mark(id))
    }

    /// Crosses an entry off: the thing is kept, or was undone.
    pub fn done(&mut self, mark: Mark) -> Result<(), JournalError> {
        self.entries.retain(|e| e.id != mark.0);
        self.save()
    }

    /// Undoes every pending entry with `undo`, newest first, except those `keep` selects
    /// (they stay, for `image-builder clean` or the next run). The journal is saved after
    /// each undo, so a crash part-way leaves only what is left to do. Returns what failed,
    /// as `what: why`; failed entries stay for the next attempt (with everything older, for
    /// an [`Undoable::IN_ORDER`] journal).
    pub fn unwind_with(
        &mut self,
        keep: &dyn Fn(&U) -> bool,
        mut undo: impl FnMut(&U) -> Result<(), String>,
    ) -> Vec<String> {
        let mut failed = Vec::new();
        let mut stays = Vec::new();
        while let Some(e) = self.entries.pop() {
            if keep(&e.undo) {
                stays.push(e);
                continue;
            }
            match undo(&e.undo) {
                Ok(()) => tracing::info!("cleanup: undid: {}", e.undo),
                Err(why) => {
                    tracing::error!("cleanup: could not {}: {why}", e.undo);
                    failed.push(format!("{}: {why}", e.undo));
                    stays.push(e);
                    if U::IN_ORDER {
                        break;
                    }
                }
            }
            if let Err(err) = self.save_with(&stays) {
                failed.push(err.to_string());
                break;
            }
        }
        self.entries.append(&mut stays);
        self.entries.sort_by_key(|e| e.id);
        if let Err(e) = self.save() {
            tracing::error!("cleanup: {e}");
        }
        failed
    }

    fn save(&self) -> Result<(), JournalError> {
        self.save_with(&[])
    }

    /// Saves the entries with `more` (entries taken out while unwinding).
    fn save_with(&self, more: &[Entry<U>]) -> Result<(), JournalError> {
        let mut all: Vec<&Entry<U>> = self.entries.iter().chain(more).collect();
        if all.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&self.path)(e)),
                _ => Ok(()),
            };
        }
        all.sort_by_key(|e| e.id);
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&all).unwrap_or_default();
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "undo", rename_all = "snake_case")]
    enum Step {
        Remove { what: String },
    }

    impl Display for Step {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let Step::Remove { what } = self;
            write!(f, "remove {what}")
        }
    }

    impl Undoable for Step {
        fn file_name(name: &str) -> String {
            format!("{name}.test.json")
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "undo", rename_all = "snake_case")]
    enum Ordered {
        Remove { what: String },
    }

    impl Display for Ordered {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let Ordered::Remove { what } = self;
            write!(f, "remove {what}")
        }
    }

    impl Undoable for Ordered {
        fn file_name(name: &str) -> String {
            format!("{name}.json")
        }
        const IN_ORDER: bool = true;
    }

    fn remove(what: &str) -> Step {
        Step::Remove { what: what.into() }
    }

    #[test]
    fn the_file_holds_each_entry_with_its_id_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::<Step>::open(dir.path(), "a").unwrap();
        j.push(remove("x")).unwrap();
        let m = j.push(remove("y")).unwrap();
        j.push(remove("z")).unwrap();
        j.done(m).unwrap();
        let text = std::fs::read_to_string(dir.path().join("a.test.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"id": 0, "undo": "remove", "what": "x"},
                {"id": 2, "undo": "remove", "what": "z"}
            ])
        );
        // Ids go on from the highest left.
        let mut j = Journal::<Step>::open(dir.path(), "a").unwrap();
        j.push(remove("w")).unwrap();
        let text = std::fs::read_to_string(dir.path().join("a.test.json")).unwrap();
        assert!(text.contains("\"id\": 3"), "{text}");
    }

    #[test]
    fn a_damaged_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.test.json"), "[{").unwrap();
        let Err(e) = Journal::<Step>::open(dir.path(), "b") else {
            panic!("a damaged journal opened");
        };
        let msg = e.to_string();
        assert!(msg.starts_with("cleanup journal "), "{msg}");
        assert!(msg.contains("b.test.json is damaged"), "{msg}");
    }

    #[test]
    fn unwinding_goes_on_past_a_failure_or_stops_there_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::<Step>::open(dir.path(), "c").unwrap();
        for w in ["a", "b", "c"] {
            j.push(remove(w)).unwrap();
        }
        let mut tried = Vec::new();
        let failed = j.unwind_with(&|_| false, |u| {
            tried.push(u.to_string());
            if *u == remove("b") {
                Err("busy".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(tried, ["remove c", "remove b", "remove a"]);
        assert_eq!(failed, ["remove b: busy"]);
        assert_eq!(
            Journal::<Step>::open(dir.path(), "c").unwrap().pending(),
            [remove("b")]
        );

        let mut j = Journal::<Ordered>::open(dir.path(), "d").unwrap();
        for w in ["a", "b", "c"] {
            j.push(Ordered::Remove { what: w.into() }).unwrap();
        }
        let mut tried = Vec::new();
        let failed = j.unwind_with(&|_| false, |u| {
            tried.push(u.to_string());
            match u {
                Ordered::Remove { what } if what == "b" => Err("busy".into()),
                _ => Ok(()),
            }
        });
        assert_eq!(tried, ["remove c", "remove b"]);
        assert_eq!(failed, ["remove b: busy"]);
        let left: Vec<String> = Journal::<Ordered>::open(dir.path(), "d")
            .unwrap()
            .pending()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(left, ["remove a", "remove b"]);
    }

    #[test]
    fn kept_entries_stay_and_an_empty_journal_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::<Step>::open(dir.path(), "e").unwrap();
        j.push(remove("kept")).unwrap();
        j.push(remove("gone")).unwrap();
        let failed = j.unwind_with(&|u| *u == remove("kept"), |_| Ok(()));
        assert!(failed.is_empty());
        assert_eq!(j.pending(), [remove("kept")]);
        j.unwind_with(&|_| false, |_| Ok(()));
        assert!(j.is_empty());
        assert!(!dir.path().join("e.test.json").exists());
    }

    #[test]
    fn a_replaced_entry_is_the_newest_and_the_old_one_is_gone_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::<Step>::open(dir.path(), "r").unwrap();
        let first = j.push(remove("input")).unwrap();
        j.push(remove("scratch")).unwrap();
        let now = j.replace(first, remove("checkpoint")).unwrap();
        // Read back as a crash would leave it.
        let again = Journal::<Step>::open(dir.path(), "r").unwrap();
        assert_eq!(again.pending(), [remove("scratch"), remove("checkpoint")]);
        let mut undone = Vec::new();
        j.unwind_with(&|_| false, |u| {
            undone.push(u.clone());
            Ok(())
        });
        assert_eq!(undone, [remove("checkpoint"), remove("scratch")]);
        assert_ne!(now, first);
    }
}
