//! What a dataset stage asks of its work dataset and the work dataset's snapshots,
//! answered from the listing the session opened with when there is one, and from `zfs`
//! otherwise. Each `zfs` process counts when the builder runs emulated (about 0.1-0.5 s
//! under QEMU TCG), so a rebuild that resumes from a checkpoint asks the listing whether
//! the output snapshot exists, what key it carries, which checkpoints there are and what
//! prefix keys they carry, and where the work dataset is mounted, in one command.

use std::path::PathBuf;

use super::cache::KEY_PROPERTY;
use super::checkpoint::PREFIX_PROPERTY;
use super::error::BuildError;
use super::layout;

/// The properties a dataset stage lists its work dataset and snapshots with (after
/// `mountpoint` and `mounted`, which the session's listing always has).
pub(super) const PROPS: [&str; 4] = ["guid", "written", KEY_PROPERTY, PREFIX_PROPERTY];

/// A property in that listing.
#[derive(Debug, Clone, Copy)]
pub(super) enum Prop {
    Guid,
    Written,
    Key,
    Prefix,
}

impl Prop {
    fn name(self) -> &'static str {
        PROPS[self.index() - 2]
    }
    /// Its column among a work row's values: mountpoint, mounted, then [`PROPS`].
    pub(super) fn index(self) -> usize {
        match self {
            Prop::Guid => 2,
            Prop::Written => 3,
            Prop::Key => 4,
            Prop::Prefix => 5,
        }
    }
}

pub(super) struct WorkView<'a> {
    zfs: &'a dyn zfs::Zfs,
    work: &'a str,
    rows: Option<&'a [zfs::Listed]>,
}

impl<'a> WorkView<'a> {
    /// `rows`: the session's listing of `work` and its snapshots, listed with [`PROPS`],
    /// none when the listing said `work` does not exist (`None` when there is no listing,
    /// and every answer comes from `zfs`).
    pub fn new(zfs: &'a dyn zfs::Zfs, work: &'a str, rows: Option<&'a [zfs::Listed]>) -> Self {
        // `zfs list` of a missing data set fails, so a listing that succeeded has the work
        // dataset's own row; one with rows but without it (or without the columns)
        // answers nothing.
        let rows = rows.filter(|r| {
            r.is_empty()
                || (r.iter().all(|r| r.values.len() >= 2 + PROPS.len())
                    && r.iter().any(|r| r.name == work))
        });
        WorkView { zfs, work, rows }
    }

    /// From here on every answer comes from `zfs` (the work dataset was changed).
    pub fn forget(&mut self) {
        self.rows = None;
    }

    /// From here on the work dataset is known not to exist (it was destroyed).
    pub fn gone(&mut self) {
        self.rows = Some(&[]);
    }

    /// The rows, when `name` is the work dataset or one of its snapshots and there is
    /// a listing.
    fn rows_for(&self, name: &str) -> Option<&'a [zfs::Listed]> {
        let ours = name == self.work
            || name
                .strip_prefix(self.work)
                .is_some_and(|r| r.starts_with('@'));
        self.rows.filter(|_| ours)
    }

    pub fn exists(&self, name: &str) -> Result<bool, BuildError> {
        match self.rows_for(name) {
            Some(rows) => Ok(rows.iter().any(|r| r.name == name)),
            None => Ok(self.zfs.exists(name)?),
        }
    }

    /// A property's value; `None` when it is not set (`-`) or `name` does not exist in
    /// the listing.
    pub fn get(&self, name: &str, prop: Prop) -> Result<Option<String>, BuildError> {
        match self.rows_for(name) {
            Some(rows) => Ok(rows
                .iter()
                .find(|r| r.name == name)
                .and_then(|r| r.values.get(prop.index()).cloned().flatten())),
            None => Ok(self.zfs.get(name, prop.name())?),
        }
    }

    /// The work dataset's snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<String>, BuildError> {
        match self.rows {
            Some(rows) => Ok(rows
                .iter()
                .filter(|r| r.is_snapshot_of(self.work))
                .map(|r| r.name.clone())
                .collect()),
            None => Ok(self.zfs.snapshots(self.work)?),
        }
    }

    /// Where the work dataset is mounted (mounting it when it is not); it must exist.
    pub fn mount_dir(&self) -> Result<PathBuf, BuildError> {
        let row = self
            .rows
            .and_then(|rows| rows.iter().find(|r| r.name == self.work));
        match row {
            Some(r) => {
                let value = |i: usize| r.values.get(i).cloned().flatten().unwrap_or_default();
                let fs = zfs::Filesystem {
                    name: self.work.to_string(),
                    mountpoint: value(0),
                    mounted: value(1) == "yes",
                };
                layout::mount_dir(self.zfs, &fs)
            }
            None => layout::mountpoint(self.zfs, self.work),
        }
    }
}
