//! `image-builder build`: validate a template, then build it.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::args::{report, TemplateArgs};

/// Build an image from a template.
///
/// The whole template is validated first; nothing on the system is touched when it has
/// errors.
#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    template: TemplateArgs,
    /// Root dataset for the build's work, output and scratch datasets.
    #[arg(short = 'd', long = "dataset", value_name = "DATASET")]
    dataset: String,
    /// Name for the work area and output files instead of the template name.
    #[arg(short = 'N', long = "output-name", value_name = "NAME")]
    output_name: Option<String>,
    /// svccfg program for seed_smf (its DTD and repository format must match the image's).
    #[arg(short = 'S', long = "svccfg", value_name = "PATH")]
    svccfg: Option<std::path::PathBuf>,
    /// Rebuild this stage even when its output snapshot is current.
    #[arg(short = 'r', long = "reset")]
    reset: bool,
    /// Destroy the work dataset first and build from nothing.
    #[arg(short = 'x', long = "fullreset")]
    fullreset: bool,
}

pub fn run(a: BuildArgs) -> Result<ExitCode> {
    let plan = a.template.plan()?;
    let errors = report(&plan);
    if errors > 0 {
        eprintln!(
            "error: {}/{} has {errors} error(s); nothing was built",
            plan.group, plan.name
        );
        return Ok(ExitCode::FAILURE);
    }
    let _ = (&a.dataset, &a.output_name, &a.svccfg, a.reset, a.fullreset);
    eprintln!(
        "error: {}/{} is valid ({} steps), but executing builds is not implemented in this version; \
         use `image-builder plan` to see what the build would do",
        plan.group,
        plan.name,
        plan.steps.len()
    );
    Ok(ExitCode::from(super::EXIT_USAGE))
}
