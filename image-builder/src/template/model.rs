//! The typed template: one build target and a list of steps.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::check::{Checker, Expander};
use crate::steps::{assemble, boot, devfs, digest, files, pkg, shadow, smf, tar, StepArgs};

/// The kinds of build target a template can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Dataset,
    Pool,
    Ufs,
    Pcfs,
    Iso,
    Zone,
}

impl TargetKind {
    pub const ALL: [TargetKind; 6] = [
        TargetKind::Dataset,
        TargetKind::Pool,
        TargetKind::Ufs,
        TargetKind::Pcfs,
        TargetKind::Iso,
        TargetKind::Zone,
    ];

    /// The template's top-level key for this target.
    pub fn key(self) -> &'static str {
        match self {
            TargetKind::Dataset => "dataset",
            TargetKind::Pool => "pool",
            TargetKind::Ufs => "ufs",
            TargetKind::Pcfs => "pcfs",
            TargetKind::Iso => "iso",
            TargetKind::Zone => "zone",
        }
    }
}

/// A file tree built in a ZFS dataset under `DATASET/work/GROUP/NAME`, kept between builds
/// so stages chain through snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// Work dataset name under `DATASET/work/GROUP/`. Macros are expanded.
    pub name: String,
    /// Snapshot to roll back to before the steps run. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_snapshot: Option<String>,
    /// Snapshot taken after the steps ran; when it exists and is current the stage is
    /// skipped. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_snapshot: Option<String>,
}

/// A disk image holding a ZFS pool, written to `DATASET/output/GROUP-NAME.raw`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The pool's name on the booted system (it is imported under a temporary name while
    /// building).
    pub name: String,
    /// Image size in MiB.
    pub size: u64,
    /// Boot environment name (default: random, as beadm's namespace is shared with the
    /// build host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bename: Option<String>,
    /// Pool ashift (default 9: 512-byte sectors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ashift: Option<u8>,
    /// Create an EFI system partition (`zpool create -B`), default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uefi: Option<bool>,
    /// Also write the ZFS partition alone to `GROUP-NAME.partonly` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_only: Option<bool>,
    /// Create the pool with no features enabled (`zpool create -d`), default true, so
    /// that any illumos release can import it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_features: Option<bool>,
    /// `compression` of the pool's root dataset (default `on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Use a labelled (partitioned) device (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<bool>,
    /// Set `autoexpand=on` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoexpand: Option<bool>,
    /// TRIM the pool before export so the image compresses well (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim: Option<bool>,
    /// Extra pool properties (`-o`). Macros are expanded; `${@f}` allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Extra root dataset properties (`-O`). Macros are expanded; `${@f}` allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fsoptions: Vec<String>,
}

/// A UFS file system image (illumos hosts only), written to `GROUP-NAME.ufs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ufs {
    /// Image size in MiB.
    pub size: u64,
    /// Bytes per inode (`newfs -i`).
    pub inode_density: u64,
}

/// A FAT file system image, written to `GROUP-NAME.pcfs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pcfs {
    /// Volume label (at most 11 characters).
    pub label: String,
    /// Image size in MiB.
    pub size: u64,
}

/// An ISO 9660 image, written to `GROUP-NAME.iso`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Iso {
    /// Path (inside the image) of the BIOS El Torito boot file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_bios: Option<String>,
    /// Path (inside the image) of the UEFI El Torito boot image (an ESP image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_uefi: Option<String>,
    /// Volume ID. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// Make the ISO bootable from a USB disk too (needs `boot_uefi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hybrid: Option<Hybrid>,
}

/// Boot blocks for a hybrid ISO.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hybrid {
    /// Path inside the image of the stage1 boot block (e.g. `boot/pmbr`).
    pub stage1: String,
    /// Path inside the image of the stage2 boot block (e.g. `boot/isoboot`).
    pub stage2: String,
}

/// A zone image: the steps build a fresh root in the dataset `DATASET/work/GROUP/NAME`
/// (recreated on every build), which is then written as a zone root tarball for
/// `zoneadm install -a`, a `zfs send` stream with an imgadm-style manifest, or both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Image name: the work dataset under `DATASET/work/GROUP/` and the manifest's `name`.
    /// Macros are expanded.
    pub name: String,
    /// Zone brand the image is for: `ipkg`, `lipkg`, `nlipkg`, `sparse`, `pkgsrc`,
    /// `illumos` or `lx` (recorded in the manifest's `requirements.brand`). Hardware
    /// virtual machine brands (`bhyve`, `kvm`) boot a disk image: build a `pool` for them.
    pub brand: String,
    /// What to write (default `["tarball"]`): `tarball`, the root's contents as
    /// `GROUP-OUTPUT.zone.tar` (plus the compression's suffix), and `stream`, a `zfs send`
    /// stream of the root's snapshot as `GROUP-OUTPUT.zfs` (plus suffix) with its manifest
    /// `GROUP-OUTPUT.manifest.json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<ZoneOutput>,
    /// Compression of the tarball and the stream: `none` (the default; the form every
    /// illumos `zoneadm install -a` accepts), `gzip`, `zstd` or `xz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Image version for the manifest (default `1.0.0`). Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Image UUID for the manifest (default: a new random one for every build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// An output of a zone build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ZoneOutput {
    /// A tar archive of the zone root's contents, for `zoneadm install -a`.
    Tarball,
    /// A `zfs send` stream of the zone root's snapshot, with a JSON manifest.
    Stream,
}

/// Pull the steps of another template file in at this point.
///
/// `name` resolves `{T}/{group}/include/NAME.json`, then `{T}/include/NAME.json`; `file`
/// (absolute, macros expanded) names a file directly. `with`/`without` are checked before
/// the file is read, so a skipped include may name a file that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Include {
    /// Include name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Absolute path of the file to include, instead of `name`. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Declares every step type once: its `t` name, its struct, and the dispatch to it.
macro_rules! step_kinds {
    ($( $(#[$attr:meta])* $variant:ident = $name:literal ($ty:ty), )*) => {
        /// A step's type and arguments, tagged by its `t` field.
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
        #[serde(tag = "t")]
        pub enum StepKind {
            $( $(#[$attr])* #[serde(rename = $name)] $variant($ty), )*
        }

        impl StepKind {
            /// Every step type name, as templates write it.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The step's `t` name.
            pub fn name(&self) -> &'static str {
                match self { $( StepKind::$variant(_) => $name, )* }
            }

            /// A copy with macro fields expanded.
            pub fn expand(&self, x: &mut Expander) -> Self {
                match self { $( StepKind::$variant(s) => StepKind::$variant(s.expand(x)), )* }
            }

            /// The step's own validation.
            pub fn check(&self, c: &mut Checker) {
                match self { $( StepKind::$variant(s) => s.check(c), )* }
            }

            /// Host tools the step needs.
            pub fn needs(&self) -> &'static [crate::host::Tool] {
                match self { $( StepKind::$variant(s) => crate::steps::Execute::needs(s), )* }
            }

            /// Whether the step may use the build's scratch directory.
            pub fn uses_scratch(&self) -> bool {
                match self { $( StepKind::$variant(s) => crate::steps::Execute::uses_scratch(s), )* }
            }

            /// Runs the step.
            pub fn execute(&self, cx: &crate::steps::StepCx) -> Result<(), crate::steps::StepError> {
                match self { $( StepKind::$variant(s) => crate::steps::Execute::execute(s, cx), )* }
            }
        }
    };
}

step_kinds! {
    CreateBe = "create_be"(boot::CreateBe),
    CreateDataset = "create_dataset"(boot::CreateDataset),
    MakeBootable = "make_bootable"(boot::MakeBootable),
    UnpackTar = "unpack_tar"(tar::UnpackTar),
    PackTar = "pack_tar"(tar::PackTar),
    RemoveFiles = "remove_files"(files::RemoveFiles),
    #[serde(alias = "ensure_directory")]
    EnsureDir = "ensure_dir"(files::EnsureDir),
    EnsureFile = "ensure_file"(files::EnsureFile),
    EnsureSymlink = "ensure_symlink"(files::EnsureSymlink),
    EnsurePerms = "ensure_perms"(files::EnsurePerms),
    Shadow = "shadow"(shadow::Shadow),
    AssembleFiles = "assemble_files"(assemble::AssembleFiles),
    Gzip = "gzip"(digest::Gzip),
    Digest = "digest"(digest::Digest),
    Devfsadm = "devfsadm"(devfs::Devfsadm),
    SeedSmf = "seed_smf"(smf::SeedSmf),
    PkgImageCreate = "pkg_image_create"(pkg::PkgImageCreate),
    PkgSetPublisher = "pkg_set_publisher"(pkg::PkgSetPublisher),
    PkgApproveCaCert = "pkg_approve_ca_cert"(pkg::PkgApproveCaCert),
    PkgSetProperty = "pkg_set_property"(pkg::PkgSetProperty),
    PkgInstall = "pkg_install"(pkg::PkgInstall),
    PkgUninstall = "pkg_uninstall"(pkg::PkgUninstall),
    PkgChangeVariant = "pkg_change_variant"(pkg::PkgChangeVariant),
    PkgChangeFacet = "pkg_change_facet"(pkg::PkgChangeFacet),
    PkgPurgeHistory = "pkg_purge_history"(pkg::PkgPurgeHistory),
    Onu = "onu"(pkg::Onu),
    Include = "include"(Include),
}

/// Aliases accepted for `t`, with the name they stand for.
pub const STEP_ALIASES: &[(&str, &str)] = &[("ensure_directory", "ensure_dir")];

/// One step: its type and arguments plus the feature conditions every step may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Run only when this feature is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
    /// Run only when this feature is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without: Option<String>,
    #[serde(flatten)]
    pub kind: StepKind,
}

/// The features a step's conditions test.
impl Step {
    /// Why the step is skipped under `features`, or `None` when it runs.
    pub fn skip_reason(&self, features: &super::features::Features) -> Option<String> {
        if let Some(f) = &self.with {
            if !features.enabled(f) {
                return Some(format!("\"with\": {f:?} and feature {f:?} is not set"));
            }
        }
        if let Some(f) = &self.without {
            if features.enabled(f) {
                return Some(format!("\"without\": {f:?} and feature {f:?} is set"));
            }
        }
        None
    }
}

impl StepArgs for Include {
    fn expand(&self, x: &mut Expander) -> Self {
        Include {
            file: x.opt("file", &self.file),
            ..self.clone()
        }
    }

    /// Includes are resolved (and their problems reported) while loading.
    fn check(&self, _c: &mut Checker) {}
}

impl crate::steps::Execute for Include {
    /// Includes are spliced in while loading; one that reaches execution was skipped.
    fn execute(&self, _cx: &crate::steps::StepCx) -> Result<(), crate::steps::StepError> {
        Ok(())
    }
}
