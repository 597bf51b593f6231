//! `unpack_tar` and `pack_tar`: archives in the output dataset.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StepArgs;
use crate::template::check::{Checker, Expander};

/// Unpack an archive from the output directory into the image root (or, with `into_tmp`,
/// into a scratch directory that `ensure_file` can read with `tarsrc`).
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
