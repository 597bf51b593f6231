//! `image-builder clean`: undo what crashed builds left behind.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use image_builder::context::Context as Ctx;

/// Undo what crashed or killed builds under DATASET left behind (scratch datasets, work
/// datasets half-way through a stage), from their cleanup journals. Builds still running
/// are left alone.
#[derive(Args, Debug)]
pub struct CleanArgs {
    /// Root dataset the builds used.
    #[arg(short = 'd', long = "dataset", value_name = "DATASET")]
    dataset: String,
}

pub fn run(a: CleanArgs, ctx: &Ctx) -> Result<ExitCode> {
    let zfs = ctx.zfs();
    let done = image_builder::build::clean(&a.dataset, &ctx.system(&zfs))?;
    if done.is_empty() {
        eprintln!("nothing to clean under {}", a.dataset);
    }
    for d in done {
        eprintln!("undid {d}");
    }
    Ok(ExitCode::SUCCESS)
}
