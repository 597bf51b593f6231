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

use std::path::Path;

use super::exec::{Execute, StepCx, StepError};
use super::perms::Perms;

impl Execute for AssembleFiles {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let mut names: Vec<String> = cx
            .root
            .read_dir(&self.dir)?
            .into_iter()
            .filter(|e| e.metadata.is_file())
            .map(|e| e.name.to_string_lossy().into_owned())
            .filter(|n| self.prefix.as_deref().is_none_or(|p| n.starts_with(p)))
            .collect();
        names.sort();
        let mut out = String::new();
        for n in names {
            let path = Path::new(&self.dir).join(&n);
            if path == Path::new(&self.output) {
                continue;
            }
            let text = String::from_utf8_lossy(&cx.root.read(&path)?).into_owned();
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            out.push_str(text);
            out.push('\n');
        }
        let current = cx
            .root
            .try_metadata(&self.output)?
            .map(|_| cx.root.read(&self.output))
            .transpose()?;
        if current.as_deref() != Some(out.as_bytes()) {
            cx.root.write_atomic(&self.output, out.as_bytes(), 0o644)?;
        }
        Perms {
            uid: 0,
            gid: 0,
            mode: Some(0o644),
        }
        .apply(cx, Path::new(&self.output))
    }
}
