//! Where a build's datasets and files live, following the reference tool's layout:
//!
//! | dataset | holds |
//! |---|---|
//! | `DATASET/work/GROUP/NAME` | the image tree of a dataset build, kept between stages |
//! | `DATASET/output` | archives and images, `SHA256SUMS`, build records |
//! | `DATASET/tmp/GROUP/OUTPUT` | scratch for one dataset or zone build, `sync=disabled`, destroyed after |
//!
//! Locks and the cleanup journal live in `DATASET/output/.image-builder/`, and so does an
//! image build's work directory (`work/GROUP-OUTPUT`, see `build/work.rs`).

use std::path::{Path, PathBuf};

use zfs::Zfs;

use super::error::BuildError;

/// A file an image-file target writes to the output directory, named after the build's
/// stem `GROUP-OUTPUT` (before `--format` conversions, which add their own extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFile {
    /// A pool's whole disk.
    Raw,
    /// A pool's ZFS partition alone (`partition_only`).
    PartOnly,
    Pcfs,
    Ufs,
    Iso,
}

impl ImageFile {
    pub fn name(self, stem: &str) -> String {
        let ext = match self {
            ImageFile::Raw => "raw",
            ImageFile::PartOnly => "partonly",
            ImageFile::Pcfs => "pcfs",
            ImageFile::Ufs => "ufs",
            ImageFile::Iso => "iso",
        };
        format!("{stem}.{ext}")
    }

    /// The files `target` writes (none for dataset and zone targets, whose steps and
    /// outputs name their files).
    pub fn of(target: &crate::template::Target) -> Vec<ImageFile> {
        use crate::template::Target;
        match target {
            Target::Pool(p) if p.label.unwrap_or(true) && p.partition_only.unwrap_or(false) => {
                vec![ImageFile::Raw, ImageFile::PartOnly]
            }
            Target::Pool(_) => vec![ImageFile::Raw],
            Target::Pcfs(_) => vec![ImageFile::Pcfs],
            Target::Ufs(_) => vec![ImageFile::Ufs],
            Target::Iso(_) => vec![ImageFile::Iso],
            Target::Dataset(_) | Target::Zone(_) => Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: String,
    pub output: String,
    pub tmp: String,
    /// The work dataset of a dataset build.
    pub work: Option<String>,
}

impl Layout {
    pub fn new(root: &str, group: &str, output_name: &str, work_name: Option<&str>) -> Layout {
        Layout {
            root: root.to_string(),
            output: format!("{root}/output"),
            tmp: format!("{root}/tmp/{group}/{output_name}"),
            work: work_name.map(|n| format!("{root}/work/{group}/{n}")),
        }
    }
}

/// A dataset stage as a build with `opts` would lay it out, for the questions asked
/// without building (`plan -d`, the store): its layout, its work dataset and its output
/// name (`-N`, or the template's name).
pub(crate) struct Stage {
    pub layout: Layout,
    pub work: String,
    pub output_name: String,
}

impl Stage {
    pub(crate) fn new(
        plan: &crate::template::Plan,
        target: &crate::template::model::Dataset,
        opts: &super::BuildOptions,
    ) -> Stage {
        let output_name = opts
            .output_name
            .clone()
            .unwrap_or_else(|| plan.name.clone());
        let layout = Layout::new(&opts.dataset, &plan.group, &output_name, Some(&target.name));
        let work = layout.work.clone().unwrap_or_default();
        Stage {
            layout,
            work,
            output_name,
        }
    }

    /// `WORK@NAME`.
    pub(crate) fn snap(&self, name: &str) -> String {
        format!("{}@{name}", self.work)
    }

    /// Where the output dataset is mounted, or a path that holds nothing when it does not
    /// exist yet (files a step reads from there are then missing, as they would be).
    pub(crate) fn output_dir(&self, zfs: &dyn Zfs) -> Result<PathBuf, BuildError> {
        if zfs.exists(&self.layout.output)? {
            mountpoint(zfs, &self.layout.output)
        } else {
            Ok(PathBuf::from("/nonexistent"))
        }
    }
}

/// The directory a mounted dataset lives at.
pub fn mountpoint(zfs: &dyn Zfs, dataset: &str) -> Result<PathBuf, BuildError> {
    // One listing answers both (each `zfs` process counts when the builder runs
    // emulated); a dataset it cannot list is asked about property by property, for the
    // error that says why.
    if let Ok(listed) = zfs.filesystems(&[dataset], 0) {
        if let Some(fs) = listed.iter().find(|f| f.name == dataset) {
            return mount_dir(zfs, fs);
        }
    }
    let mp = zfs.get(dataset, "mountpoint")?.unwrap_or_default();
    if !mp.starts_with('/') {
        return Err(BuildError::NotMounted {
            dataset: dataset.to_string(),
            mountpoint: mp,
        });
    }
    if zfs.get(dataset, "mounted")?.as_deref() != Some("yes") {
        zfs.mount(dataset)?;
    }
    Ok(PathBuf::from(mp))
}

/// The directory a listed file system lives at, mounting it first when it is not.
pub fn mount_dir(zfs: &dyn Zfs, fs: &zfs::Filesystem) -> Result<PathBuf, BuildError> {
    if !fs.mountpoint.starts_with('/') {
        return Err(BuildError::NotMounted {
            dataset: fs.name.clone(),
            mountpoint: fs.mountpoint.clone(),
        });
    }
    if !fs.mounted {
        zfs.mount(&fs.name)?;
    }
    Ok(PathBuf::from(&fs.mountpoint))
}

/// The directory for locks and journals under the output directory.
pub fn state_dir(output_dir: &Path) -> PathBuf {
    output_dir.join(".image-builder")
}
