//! `assemble_files`: concatenate the files of a directory into one file, as OmniOS'
//! `bootadm` does for `/etc/system.d`-style fragments.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StepArgs;
use crate::template::check::{Checker, Expander};

/// Concatenate the regular files of `dir` (sorted by name, optionally only those whose
/// name starts with `prefix`) into `output`, each trimmed and ending in a newline; empty
/// files are skipped. The output is owned by root:root with mode 0644.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssembleFiles {
    /// Absolute path of the directory inside the image.
    pub dir: String,
    /// Absolute path of the file to write inside the image.
    pub output: String,
    /// Only files whose names start with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl StepArgs for AssembleFiles {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        c.image_path("dir", &self.dir);
        c.image_path("output", &self.output);
    }
}
