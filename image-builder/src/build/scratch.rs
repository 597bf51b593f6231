//! A dataset stage's scratch dataset (`DATASET/tmp/GROUP/NAME`): made when something
//! first needs it (the steps, or a stage fetched from a registry), and destroyed at the
//! end of the stage. Each `zfs` process counts when the builder runs emulated, so a stage
//! that is a cache hit, or is received from a `file://` store (whose blob `zfs receive`
//! reads where it is), makes none.

use std::path::PathBuf;

use zfs::CreateOptions;

use super::error::BuildError;
use super::journal::{scratch_dataset, Journal, Mark};
use super::layout;

pub(super) struct Scratch<'a> {
    zfs: &'a dyn zfs::Zfs,
    name: &'a str,
    /// Its undo in the journal and where it is mounted, once made.
    made: Option<(Mark, PathBuf)>,
}

impl<'a> Scratch<'a> {
    pub fn new(zfs: &'a dyn zfs::Zfs, name: &'a str) -> Self {
        Scratch {
            zfs,
            name,
            made: None,
        }
    }

    /// Where it is mounted; the first call makes it (afresh, with its undo in the journal,
    /// and without sync: it is never worth syncing).
    pub fn dir(&mut self, journal: &mut Journal) -> Result<PathBuf, BuildError> {
        if let Some((_, dir)) = &self.made {
            return Ok(dir.clone());
        }
        let create = CreateOptions::new().parents().prop("sync", "disabled");
        let mark = scratch_dataset(self.zfs, journal, self.name, &create)?;
        let dir = layout::mountpoint(self.zfs, self.name)?;
        self.made = Some((mark, dir.clone()));
        Ok(dir)
    }

    /// Destroys it, when it was made.
    pub fn remove(self, journal: &mut Journal) -> Result<(), BuildError> {
        if let Some((mark, _)) = self.made {
            self.zfs.destroy(self.name, true)?;
            journal.done(mark)?;
        }
        Ok(())
    }
}
