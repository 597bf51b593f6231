//! What a step gets to work with when it runs, and how it fails.

use std::path::{Path, PathBuf};

use confine::Root;
use runner::{Cmd, Output, RunError, Runner};

use crate::host::{Host, Tool};

/// How `seed_smf` builds the SMF repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmfSeeding {
    /// Import every manifest now with `svccfg`, as the reference tool does.
    #[default]
    Import,
    /// Install the image's seed repository only and let `manifest-import` import the
    /// manifests on first boot (for hosts without a compatible svccfg, e.g. Linux).
    AtFirstBoot,
}

impl SmfSeeding {
    /// The seeding `--smf-at-first-boot` asks for.
    pub fn from_flag(at_first_boot: bool) -> SmfSeeding {
        if at_first_boot {
            SmfSeeding::AtFirstBoot
        } else {
            SmfSeeding::Import
        }
    }
}

/// How `devfsadm` steps populate the image's `/dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevfsSetup {
    /// Run `devfsadm -r` against the image now, as the reference tool does.
    #[default]
    Devfsadm,
    /// Leave `/dev` to the image's first boot: create `/reconfigure`, so that boot is a
    /// reconfiguration boot in which illumos makes the device links itself (for hosts
    /// without devfsadm, e.g. Linux).
    AtFirstBoot,
}

impl DevfsSetup {
    /// The setup `--devfs-at-first-boot` asks for.
    pub fn from_flag(at_first_boot: bool) -> DevfsSetup {
        if at_first_boot {
            DevfsSetup::AtFirstBoot
        } else {
            DevfsSetup::Devfsadm
        }
    }
}

/// The pool a `pool` template builds, while it is imported on the build host.
#[derive(Debug, Clone)]
pub struct PoolCx {
    /// The temporary name it is imported under (`TEMPORARY-<group>-<output>`).
    pub temp_name: String,
    /// Its name on the booted system.
    pub name: String,
    pub bename: String,
    pub altroot: PathBuf,
    /// The EFI system partition's device when this host labelled the disk itself (Linux):
    /// `make_bootable` installs the image's loader there.
    pub esp: Option<String>,
    /// The labelled disk image when this host wrote its GPT (Linux): `make_bootable`
    /// writes the BIOS boot blocks into it.
    pub disk: Option<PathBuf>,
}

/// Everything a step may use. Steps reach the system only through these fields.
pub struct StepCx<'a> {
    pub host: Host,
    pub runner: &'a dyn Runner,
    pub zfs: &'a dyn zfs::Zfs,
    /// The image root, confined: no path a step writes leaves it.
    pub root: &'a Root,
    pub template_root: &'a Path,
    pub group: &'a str,
    pub external: &'a [PathBuf],
    /// The output dataset's directory (archives in and out).
    pub output_dir: &'a Path,
    /// This build's scratch directory.
    pub tmp_dir: &'a Path,
    /// The svccfg program for `seed_smf` (`-S`).
    pub svccfg: &'a Path,
    pub smf: SmfSeeding,
    /// How `devfsadm` steps run (`--devfs-at-first-boot`).
    pub devfs: DevfsSetup,
    pub source_date_epoch: Option<i64>,
    pub pool: Option<&'a PoolCx>,
    /// Label for the log lines of commands this step runs.
    pub tag: String,
}

impl StepCx<'_> {
    /// The image root as a host path, for tools that take `-R`.
    pub fn root_path(&self) -> &Path {
        self.root.host_path()
    }

    /// A command for `tool` on this host, tagged with the step.
    pub fn cmd(&self, tool: Tool) -> Cmd {
        Cmd::new(self.host.tool(tool)).tag(self.tag.clone())
    }

    /// Runs a command; non-zero exit is an error.
    pub fn run(&self, cmd: Cmd) -> Result<Output, StepError> {
        Ok(self.runner.run(&cmd)?)
    }

    /// A file from the template tree: `{T}/{group}/files/NAME`, then `{T}/files/NAME`.
    pub fn template_file(&self, name: &str) -> Result<PathBuf, StepError> {
        let candidates = [
            self.template_root.join(self.group).join("files").join(name),
            self.template_root.join("files").join(name),
        ];
        candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| StepError::msg(format!("template file {name:?} not found")))
    }

    /// A file from the `-E` trees, first match wins.
    pub fn external_file(&self, name: &str) -> Result<PathBuf, StepError> {
        self.external
            .iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                StepError::msg(format!(
                    "external source file {name:?} not found in any -E directory"
                ))
            })
    }

    /// A file in the output directory; `name` is relative (validation checked it).
    pub fn output_file(&self, name: &str) -> PathBuf {
        self.output_dir.join(name)
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Image(#[from] confine::Error),
    #[error(transparent)]
    Command(#[from] RunError),
    #[error(transparent)]
    Zfs(#[from] zfs::ZfsError),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Id(#[from] super::ids::IdError),
    #[error(transparent)]
    BootBlock(#[from] crate::build::bootblock::BootBlockError),
    #[error("{path}: {source}")]
    Host {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Message(String),
}

impl StepError {
    pub fn msg(m: impl Into<String>) -> Self {
        StepError::Message(m.into())
    }

    pub fn host(path: &Path, source: std::io::Error) -> Self {
        StepError::Host {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Running a step.
pub trait Execute {
    /// Host tools the step needs; the build refuses to start when one is missing.
    fn needs(&self) -> &'static [Tool] {
        &[]
    }

    /// Whether the step may read or write the build's scratch directory
    /// ([`StepCx::tmp_dir`]). A dataset stage makes its scratch dataset (two `zfs`
    /// commands, and one to destroy it) only when a step that runs says so; any step
    /// that touches `tmp_dir` must say so here.
    fn uses_scratch(&self) -> bool {
        false
    }

    /// Does the step's work. Running a step twice changes nothing the second time.
    fn execute(&self, cx: &StepCx) -> Result<(), StepError>;
}
