//! Boot environment steps for `pool` templates: `create_be`, `create_dataset`,
//! `make_bootable`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{no_args_step, StepArgs};
use crate::template::check::{Checker, Expander};
use crate::template::model::TargetKind;

/// Create the boot environment `ROOT/<bename>` in the pool and mount it as the image root.
///
/// `ROOT` gets `canmount=off` and `mountpoint=legacy`; the BE gets `canmount=noauto`,
/// `mountpoint=legacy` and the libbe properties `org.opensolaris.libbe:uuid` (random) and
/// `org.opensolaris.libbe:policy=static`. The BE name is the pool's `bename`, or a random
/// one: beadm cannot take an altroot, so BE names on the build host and in the image share
/// one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBe {}

impl CreateBe {
    pub const NAME: &'static str = "create_be";
}
no_args_step!(CreateBe, targets = &[TargetKind::Pool]);

/// Create a dataset in the pool, e.g. `export/home`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDataset {
    /// Dataset name relative to the pool (`export/home`).
    pub name: String,
    /// Mountpoint property to set, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
}

impl StepArgs for CreateDataset {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        c.target_is(&[TargetKind::Pool], "create_dataset");
        if self.name.is_empty() || self.name.starts_with('/') || self.name.contains('@') {
            c.error(
                "name",
                format!("invalid dataset name {:?}: expected a name relative to the pool such as \"export/home\"", self.name),
            );
        }
        if let Some(mp) = &self.mountpoint {
            if !(mp.starts_with('/') || mp == "legacy" || mp == "none") {
                c.error(
                    "mountpoint",
                    format!("invalid mountpoint {mp:?}: expected an absolute path, \"legacy\" or \"none\""),
                );
            }
        }
    }
}

/// Make the pool bootable from the boot environment: set `bootfs`, activate the BE and
/// install the boot loader and boot archive into the image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MakeBootable {}

impl MakeBootable {
    pub const NAME: &'static str = "make_bootable";
}
no_args_step!(MakeBootable, targets = &[TargetKind::Pool]);

use super::exec::{Execute, StepCx, StepError};

fn pool_only(cx: &StepCx, step: &str) -> Result<(), StepError> {
    match cx.pool {
        Some(_) => Err(StepError::msg(format!(
            "{step}: building pool images is not available in this version"
        ))),
        None => Err(StepError::msg(format!(
            "{step} only runs in a pool template"
        ))),
    }
}

impl Execute for CreateBe {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        pool_only(cx, "create_be")
    }
}

impl Execute for CreateDataset {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        pool_only(cx, "create_dataset")
    }
}

impl Execute for MakeBootable {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        pool_only(cx, "make_bootable")
    }
}
