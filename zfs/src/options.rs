//! Option sets for the operations that take more than a name.

use std::fmt;

/// `zfs create` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// `-p`: create missing parents.
    pub parents: bool,
    /// `-V size`: a volume of this many bytes instead of a file system.
    pub volume_size: Option<u64>,
    /// `-o prop=value`, in order.
    pub props: Vec<(String, String)>,
}

impl CreateOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn parents(mut self) -> Self {
        self.parents = true;
        self
    }

    pub fn volume(mut self, bytes: u64) -> Self {
        self.volume_size = Some(bytes);
        self
    }

    pub fn prop(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.props.push((k.into(), v.into()));
        self
    }
}

/// `zpool create` options and layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolCreate {
    pub name: String,
    /// Vdev specification as `zpool` takes it: devices or files, optionally with
    /// keywords (`mirror`, `log`, ...).
    pub vdevs: Vec<String>,
    /// `-f`: use devices that appear in use.
    pub force: bool,
    /// `-d`: enable no features. Pools meant for illumos images want this (or a checked
    /// compatibility list): a feature illumos lacks makes the pool unimportable there.
    pub no_features: bool,
    /// `-B`: on illumos, label the whole disk with an EFI system partition before the ZFS
    /// partition (OpenZFS on Linux has no such option).
    pub boot_partition: bool,
    /// `-t name`: the in-core name while imported; `name` is what is written on disk.
    pub temp_name: Option<String>,
    /// `-R root`: altroot (also sets `cachefile=none`).
    pub altroot: Option<String>,
    /// `-m mountpoint` of the root data set.
    pub mountpoint: Option<String>,
    /// `-o prop=value` pool properties, in order.
    pub pool_props: Vec<(String, String)>,
    /// `-O prop=value` root file system properties, in order.
    pub fs_props: Vec<(String, String)>,
}

impl PoolCreate {
    pub fn new<S: Into<String>>(
        name: impl Into<String>,
        vdevs: impl IntoIterator<Item = S>,
    ) -> Self {
        PoolCreate {
            name: name.into(),
            vdevs: vdevs.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }

    pub fn no_features(mut self) -> Self {
        self.no_features = true;
        self
    }

    pub fn boot_partition(mut self) -> Self {
        self.boot_partition = true;
        self
    }

    pub fn temp_name(mut self, n: impl Into<String>) -> Self {
        self.temp_name = Some(n.into());
        self
    }

    pub fn altroot(mut self, dir: impl Into<String>) -> Self {
        self.altroot = Some(dir.into());
        self
    }

    pub fn mountpoint(mut self, m: impl Into<String>) -> Self {
        self.mountpoint = Some(m.into());
        self
    }

    pub fn pool_prop(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.pool_props.push((k.into(), v.into()));
        self
    }

    pub fn fs_prop(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.fs_props.push((k.into(), v.into()));
        self
    }
}

/// `zpool import` of one pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolImport {
    /// The pool's on-disk name or its numeric GUID.
    pub pool: String,
    /// Import under this name instead (renames the pool on disk unless `temporary`).
    pub new_name: Option<String>,
    /// `-t`: `new_name` is in-core only; the on-disk name stays.
    pub temporary: bool,
    /// `-d dir` (repeatable): where to look for devices, e.g. a directory of files.
    pub dirs: Vec<String>,
    /// `-R root`: altroot.
    pub altroot: Option<String>,
    /// `-N`: do not mount any file system.
    pub no_mount: bool,
    /// `-o readonly=on`.
    pub readonly: bool,
    /// `-f`: import a pool that looks in use by another system.
    pub force: bool,
    /// Further `-o prop=value` pool properties, in order.
    pub props: Vec<(String, String)>,
}

impl PoolImport {
    pub fn new(pool: impl Into<String>) -> Self {
        PoolImport {
            pool: pool.into(),
            ..Self::default()
        }
    }

    pub fn new_name(mut self, n: impl Into<String>) -> Self {
        self.new_name = Some(n.into());
        self
    }

    pub fn temporary(mut self) -> Self {
        self.temporary = true;
        self
    }

    pub fn dir(mut self, d: impl Into<String>) -> Self {
        self.dirs.push(d.into());
        self
    }

    pub fn altroot(mut self, d: impl Into<String>) -> Self {
        self.altroot = Some(d.into());
        self
    }

    pub fn no_mount(mut self) -> Self {
        self.no_mount = true;
        self
    }

    pub fn readonly(mut self) -> Self {
        self.readonly = true;
        self
    }

    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }

    pub fn prop(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.props.push((k.into(), v.into()));
        self
    }
}

/// A pool's `health` property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Online,
    Degraded,
    Faulted,
    Offline,
    Removed,
    Unavail,
    Suspended,
    /// A state this code does not know; kept verbatim.
    Other(String),
}

impl Health {
    pub fn parse(s: &str) -> Health {
        match s {
            "ONLINE" => Health::Online,
            "DEGRADED" => Health::Degraded,
            "FAULTED" => Health::Faulted,
            "OFFLINE" => Health::Offline,
            "REMOVED" => Health::Removed,
            "UNAVAIL" => Health::Unavail,
            "SUSPENDED" => Health::Suspended,
            other => Health::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Health::Online => "ONLINE",
            Health::Degraded => "DEGRADED",
            Health::Faulted => "FAULTED",
            Health::Offline => "OFFLINE",
            Health::Removed => "REMOVED",
            Health::Unavail => "UNAVAIL",
            Health::Suspended => "SUSPENDED",
            Health::Other(s) => s,
        };
        f.write_str(s)
    }
}
