//! `devfsadm`: populate the image's `/dev` tree.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::template::check::{Checker, Expander};
use crate::template::TargetKind;

/// Run `devfsadm -r <root>` to create the expected `/dev` structure in the image. It can
/// leak device links of the build host into the image; templates remove what they do not
/// want afterwards (see the corpus `devfs` include). With `build --devfs-at-first-boot`
/// (hosts without devfsadm, such as Linux) it creates `/reconfigure` instead, so the
/// image's first boot is a reconfiguration boot that makes the device links.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Devfsadm {}

impl Devfsadm {
    pub const NAME: &'static str = "devfsadm";
}

impl super::StepArgs for Devfsadm {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        // A zone's /dev is built by the kernel (sdev) from the zone's configuration when it
        // boots; links made here would only copy the build host's devices into the image.
        if c.ctx.target == TargetKind::Zone {
            c.error(
                "t",
                "devfsadm makes no sense in a zone template: a zone's /dev is populated from its zonecfg devices when it boots",
            );
        }
    }
}

use super::exec::{DevfsSetup, Execute, StepCx, StepError};
use crate::host::Tool;

/// The file whose presence makes illumos boot as a reconfiguration boot (`boot -r`), in
/// which the device links under `/dev` are made for the hardware found.
pub const RECONFIGURE: &str = "/reconfigure";

impl Execute for Devfsadm {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Devfsadm]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        if cx.devfs == DevfsSetup::AtFirstBoot {
            // The image's own devfsadm does the work when it first boots; an existing
            // /reconfigure (a template may make its own) is left as it is.
            if cx.root.try_metadata(RECONFIGURE)?.is_none() {
                cx.root.write_atomic(RECONFIGURE, b"", 0o644)?;
                cx.root.set_owner(RECONFIGURE, Some(0), Some(0))?;
            }
            tracing::info!(
                "devfsadm: left to first boot ({RECONFIGURE} makes it a reconfiguration boot)"
            );
            return Ok(());
        }
        cx.run(cx.cmd(Tool::Devfsadm).arg("-r").arg(cx.root_path()))?;
        Ok(())
    }
}
