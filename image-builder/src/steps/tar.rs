//! `unpack_tar` and `pack_tar`: archives in the output dataset.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StepArgs;
use crate::template::check::{Checker, Expander};

/// Unpack an archive from the output directory into the image root (or, with `into_tmp`,
/// into a scratch directory that `ensure_file` can read with `tarsrc`). Reads POSIX ustar
/// and pax, GNU tar's long names and illumos tar's `X` extended headers; extended
/// attributes (illumos `E` entries) are refused, naming the file (see "Archive format" in
/// docs/images.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnpackTar {
    /// Archive name in the output directory; `.tar`, `.tar.gz`, `.tgz`, `.tar.zst` or
    /// `.tar.xz`. Macros are expanded.
    pub name: String,
    /// Unpack into the build's scratch directory instead of the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into_tmp: Option<bool>,
}

impl StepArgs for UnpackTar {
    fn expand(&self, x: &mut Expander) -> Self {
        UnpackTar {
            name: x.one("name", &self.name),
            ..self.clone()
        }
    }

    fn check(&self, c: &mut Checker) {
        check_archive_name(c, &self.name);
    }
}

/// Pack the image root (or only the listed paths) into an archive in the output directory.
/// Writes POSIX ustar, with illumos tar's `X` extended headers for long names, long link
/// targets and large sizes, ids and times, which illumos, GNU and BSD tar all read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackTar {
    /// Archive name in the output directory; the compression follows the name. Macros are
    /// expanded.
    pub name: String,
    /// Paths relative to the image root to pack instead of the whole root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
}

impl StepArgs for PackTar {
    fn expand(&self, x: &mut Expander) -> Self {
        PackTar {
            name: x.one("name", &self.name),
            ..self.clone()
        }
    }

    fn check(&self, c: &mut Checker) {
        check_archive_name(c, &self.name);
        for (i, p) in self.include.iter().flatten().enumerate() {
            c.relative(&format!("include[{i}]"), p.trim_start_matches("./"));
        }
    }
}

fn check_archive_name(c: &mut Checker, name: &str) {
    c.relative("name", name);
    const SUFFIXES: &[&str] = &[".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz"];
    if !SUFFIXES.iter().any(|s| name.ends_with(s)) {
        c.error(
            "name",
            format!(
                "archive name {name:?} must end in one of {}",
                SUFFIXES.join(", ")
            ),
        );
    }
}

use std::path::PathBuf;

use super::exec::{Execute, StepCx, StepError};
use crate::archive::{self, PackOptions, UnpackOptions};

impl Execute for UnpackTar {
    /// `into_tmp` unpacks into the scratch directory.
    fn uses_scratch(&self) -> bool {
        self.into_tmp == Some(true)
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let archive = cx.output_file(&self.name);
        if !archive.is_file() {
            return Err(StepError::msg(format!(
                "archive {} not found in the output directory (build the stage that packs it first)",
                archive.display()
            )));
        }
        let opts = UnpackOptions::default();
        if self.into_tmp == Some(true) {
            // A fresh scratch tree each time, for `ensure_file` with `tarsrc`.
            let dir = cx.tmp_dir.join("unpack_tar");
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| StepError::host(&dir, e))?;
            }
            std::fs::create_dir(&dir).map_err(|e| StepError::host(&dir, e))?;
            let tree = confine::Root::open(&dir)?;
            archive::unpack(&archive, &tree, &opts, &mut |p| {
                crate::progress::report(&self.name, p.done, p.total)
            })?;
        } else {
            archive::unpack(&archive, cx.root, &opts, &mut |p| {
                crate::progress::report(&self.name, p.done, p.total)
            })?;
        }
        Ok(())
    }
}

impl Execute for PackTar {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let archive = cx.output_file(&self.name);
        let opts = PackOptions {
            include: self
                .include
                .iter()
                .flatten()
                .map(|p| PathBuf::from(p.trim_start_matches("./")))
                .collect(),
            source_date_epoch: cx.source_date_epoch,
            ..PackOptions::default()
        };
        archive::pack(cx.root, &archive, &opts, &mut |p| {
            crate::progress::report(&self.name, p.done, p.total)
        })?;
        Ok(())
    }
}
