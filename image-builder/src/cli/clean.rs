//! `image-builder clean`: undo what crashed builds left behind.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use image_builder::host::{Host, Tool};
use runner::SystemRunner;

/// Undo what crashed or killed builds under DATASET left behind (scratch datasets, work
/// datasets half-way through a stage), from their cleanup journals. Builds still running
/// are left alone.
#[derive(Args, Debug)]
pub struct CleanArgs {
    /// Root dataset the builds used.
    #[arg(short = 'd', long = "dataset", value_name = "DATASET")]
    dataset: String,
}

pub fn run(a: CleanArgs) -> Result<ExitCode> {
    let host = Host::detect();
    let runner = SystemRunner::new();
    let zfs = zfs::ZfsCli::new(
        &runner,
        zfs::ZfsTools::new(host.tool(Tool::Zfs), host.tool(Tool::Zpool)),
    );
    let sys = image_builder::build::device::System {
        host,
        runner: &runner,
        zfs: &zfs,
    };
    let done = image_builder::build::clean(&a.dataset, &sys)?;
    if done.is_empty() {
        eprintln!("nothing to clean under {}", a.dataset);
    }
    for d in done {
        eprintln!("undid {d}");
    }
    Ok(ExitCode::SUCCESS)
}
