//! `devfsadm`: populate the image's `/dev` tree.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::template::check::{Checker, Expander};
use crate::template::TargetKind;

/// Run `devfsadm -r <root>` to create the expected `/dev` structure in the image. It can
/// leak device links of the build host into the image; templates remove what they do not
/// want afterwards (see the corpus `devfs` include).
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

use super::exec::{Execute, StepCx, StepError};
use crate::host::Tool;

impl Execute for Devfsadm {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Devfsadm]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        cx.run(cx.cmd(Tool::Devfsadm).arg("-r").arg(cx.root_path()))?;
        Ok(())
    }
}
