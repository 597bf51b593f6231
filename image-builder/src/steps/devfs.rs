//! `devfsadm`: populate the image's `/dev` tree.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::no_args_step;

/// Run `devfsadm -r <root>` to create the expected `/dev` structure in the image. It can
/// leak device links of the build host into the image; templates remove what they do not
/// want afterwards (see the corpus `devfs` include).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Devfsadm {}

impl Devfsadm {
    pub const NAME: &'static str = "devfsadm";
}
no_args_step!(Devfsadm);

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
