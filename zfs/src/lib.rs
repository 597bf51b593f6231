//! Typed ZFS operations.
//!
//! [`Zfs`] is what the rest of the workspace calls; [`ZfsCli`] implements it with the
//! `zfs` and `zpool` commands (machine-readable `-H -p` output) through a
//! [`runner::Runner`], so tests pin the exact command lines with [`runner::Recorder`] and
//! the ZFS test tier runs the same code against a real OpenZFS.

mod cli;
mod error;
pub mod name;
mod options;

pub use cli::{ExportRetry, ZfsCli, ZfsTools};
pub use error::{Result, ZfsError};
pub use options::{CreateOptions, Health, PoolCreate, PoolImport};

/// A file system as [`Zfs::filesystems`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filesystem {
    pub name: String,
    /// The `mountpoint` property: a path, `legacy` or `none`.
    pub mountpoint: String,
    pub mounted: bool,
}

/// A file system or snapshot as [`Zfs::list`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    /// The asked properties' parsable values, in the order asked; `None` where `zfs list`
    /// prints `-` (a user property that is not set, or a property this type lacks).
    pub values: Vec<Option<String>>,
}

impl Listed {
    /// Whether this is a snapshot of `dataset` itself.
    pub fn is_snapshot_of(&self, dataset: &str) -> bool {
        self.name
            .strip_prefix(dataset)
            .is_some_and(|rest| rest.starts_with('@'))
    }
}

/// ZFS operations. Names are full names (`pool/a/b`, `pool/a@snap`).
pub trait Zfs {
    /// Creates a file system (or a volume) with properties.
    fn create(&self, dataset: &str, opts: &CreateOptions) -> Result<()>;

    /// Destroys a data set or snapshot; `recursive` also destroys its children and
    /// snapshots.
    fn destroy(&self, name: &str, recursive: bool) -> Result<()>;

    /// Destroys the snapshots `names` (the part after `@`) of `dataset` together. The
    /// default destroys them one by one.
    fn destroy_snapshots(&self, dataset: &str, names: &[&str]) -> Result<()> {
        for n in names {
            self.destroy(&format!("{dataset}@{n}"), false)?;
        }
        Ok(())
    }

    /// Creates `dataset@name`, with properties set atomically at creation.
    fn snapshot(&self, snapshot: &str, props: &[(&str, &str)]) -> Result<()>;

    /// Rolls the data set back to `snapshot`, destroying any later snapshots.
    fn rollback(&self, snapshot: &str) -> Result<()>;

    /// Creates `target` as a clone of `snapshot`.
    fn clone_snapshot(&self, snapshot: &str, target: &str, props: &[(&str, &str)]) -> Result<()>;

    /// Whether a data set, volume or snapshot exists. Decided by listing, never by reading
    /// an error message; an error means ZFS itself could not be asked.
    fn exists(&self, name: &str) -> Result<bool>;

    /// A property's parsable value (`-p`: bytes, not "1.5G"); `None` for a user property
    /// that is not set.
    fn get(&self, name: &str, property: &str) -> Result<Option<String>>;

    fn set(&self, name: &str, property: &str, value: &str) -> Result<()>;

    /// Direct child file systems and volumes, sorted by name.
    fn children(&self, dataset: &str) -> Result<Vec<String>>;

    /// The file systems `roots` and their descendants down to `depth` levels (0: the roots
    /// only), with where each is mounted, in one listing. Fails, like `zfs list`, when a
    /// root does not exist.
    fn filesystems(&self, roots: &[&str], depth: u32) -> Result<Vec<Filesystem>>;

    /// The file systems and snapshots of `roots` and their descendants down to `depth`
    /// levels (a data set's own snapshots are one level below it), with the values of
    /// `props`, oldest first (by creation txg), in one listing. Fails, like `zfs list`,
    /// when a root does not exist.
    fn list(&self, roots: &[&str], depth: u32, props: &[&str]) -> Result<Vec<Listed>>;

    /// Snapshots of `dataset` itself, oldest first.
    fn snapshots(&self, dataset: &str) -> Result<Vec<String>>;

    fn mount(&self, dataset: &str) -> Result<()>;

    /// Writes a full replication-free stream of `snapshot` (`zfs send SNAPSHOT`, no
    /// properties, no compressed or large-block records, so any ZFS can receive it) to the
    /// file `out`.
    fn send(&self, snapshot: &str, out: &std::path::Path) -> Result<()>;

    /// Writes an incremental stream from `from` to `snapshot`, two snapshots of one
    /// dataset (`zfs send -i FROM SNAPSHOT`, zfs-send(8)), to the file `out`. Like
    /// [`Zfs::send`], no properties and no compressed or large-block records.
    fn send_incremental(&self, from: &str, snapshot: &str, out: &std::path::Path) -> Result<()>;

    /// Receives the stream in the file `stream` as `snapshot` (`zfs receive SNAPSHOT`,
    /// zfs-receive(8)); with `force` (`-F`) the dataset is first rolled back to its most
    /// recent snapshot, which an incremental stream's source must be. The received
    /// snapshot keeps the GUID it had where it was sent from.
    fn receive(&self, snapshot: &str, stream: &std::path::Path, force: bool) -> Result<()>;

    fn unmount(&self, dataset: &str, force: bool) -> Result<()>;

    fn pool_create(&self, spec: &PoolCreate) -> Result<()>;

    /// Destroys a pool and everything in it.
    fn pool_destroy(&self, pool: &str, force: bool) -> Result<()>;

    /// Exports a pool, retrying for a bounded time while it is still busy (a file system
    /// released a moment ago may still hold it).
    fn pool_export(&self, pool: &str, force: bool) -> Result<()>;

    fn pool_import(&self, spec: &PoolImport) -> Result<()>;

    /// Names of the imported pools, sorted.
    fn pools(&self) -> Result<Vec<String>>;

    /// A pool property's parsable value.
    fn pool_get(&self, pool: &str, property: &str) -> Result<String>;

    fn pool_set(&self, pool: &str, property: &str, value: &str) -> Result<()>;

    fn pool_health(&self, pool: &str) -> Result<Health>;
}
