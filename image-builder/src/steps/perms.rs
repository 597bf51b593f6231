//! Owner, group and mode handling shared by the file steps.

use std::path::Path;

use super::exec::{StepCx, StepError};
use super::ids;
use crate::template::check::parse_mode;

/// Resolved numeric owner, group and (optionally) mode.
pub struct Perms {
    pub uid: u32,
    pub gid: u32,
    pub mode: Option<u32>,
}

impl Perms {
    /// Resolves names through the image's files; `mode` was checked by validation.
    pub fn resolve(
        cx: &StepCx,
        owner: &str,
        group: &str,
        mode: Option<&str>,
    ) -> Result<Perms, StepError> {
        let mode = match mode {
            Some(m) => {
                Some(parse_mode(m).ok_or_else(|| StepError::msg(format!("invalid mode {m:?}")))?)
            }
            None => None,
        };
        Ok(Perms {
            uid: ids::uid(cx.root, owner)?,
            gid: ids::gid(cx.root, group)?,
            mode,
        })
    }

    /// Applies owner, group and mode to `path` where they differ.
    pub fn apply(&self, cx: &StepCx, path: &Path) -> Result<(), StepError> {
        let meta = cx.root.metadata(path)?;
        if meta.uid != self.uid || meta.gid != self.gid {
            cx.root.set_owner(path, Some(self.uid), Some(self.gid))?;
        }
        if let Some(mode) = self.mode {
            // chown clears setuid/setgid bits, so the mode is set after the owner.
            if cx.root.metadata(path)?.mode & 0o7777 != mode {
                cx.root.set_mode(path, mode)?;
            }
        }
        Ok(())
    }
}
