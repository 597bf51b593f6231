//! `digest` and `gzip`: derive a file in the image from a file in the output directory.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StepArgs;
use crate::template::check::{Checker, Expander};

/// Write the hex digest of an output file (followed by a newline) into the image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    /// `md5`, `sha1` or `sha256`.
    pub algorithm: String,
    /// Absolute path inside the image to write. Macros are expanded.
    pub target: String,
    /// Relative path in the output directory to hash. Macros are expanded.
    pub src: String,
    /// User name or numeric id.
    pub owner: String,
    /// Group name or numeric id.
    pub group: String,
    /// Octal mode, e.g. `"644"`.
    pub mode: String,
}

pub const DIGEST_ALGORITHMS: &[&str] = &["md5", "sha1", "sha256"];

impl StepArgs for Digest {
    fn expand(&self, x: &mut Expander) -> Self {
        Digest {
            target: x.one("target", &self.target),
            src: x.one("src", &self.src),
            ..self.clone()
        }
    }

    fn check(&self, c: &mut Checker) {
        if !DIGEST_ALGORITHMS.contains(&self.algorithm.as_str()) {
            c.error(
                "algorithm",
                format!(
                    "unknown digest algorithm {:?}: expected one of {}",
                    self.algorithm,
                    DIGEST_ALGORITHMS.join(", ")
                ),
            );
        }
        c.image_path("target", &self.target);
        c.relative("src", &self.src);
        c.owner("owner", &self.owner);
        c.group("group", &self.group);
        c.mode("mode", &self.mode);
    }
}

/// Write a gzip-compressed copy of an output file into the image (replacing any file
/// already there).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gzip {
    /// Absolute path inside the image to write. Macros are expanded.
    pub target: String,
    /// Relative path in the output directory to compress. Macros are expanded.
    pub src: String,
    /// User name or numeric id.
    pub owner: String,
    /// Group name or numeric id.
    pub group: String,
    /// Octal mode, e.g. `"644"`.
    pub mode: String,
}

impl StepArgs for Gzip {
    fn expand(&self, x: &mut Expander) -> Self {
        Gzip {
            target: x.one("target", &self.target),
            src: x.one("src", &self.src),
            ..self.clone()
        }
    }

    fn check(&self, c: &mut Checker) {
        c.image_path("target", &self.target);
        c.relative("src", &self.src);
        c.owner("owner", &self.owner);
        c.group("group", &self.group);
        c.mode("mode", &self.mode);
    }
}
