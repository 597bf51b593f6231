//! `image-builder inspect`: what is in a raw disk image.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use image_builder::build::{device::System, inspect};
use image_builder::host::{Host, Tool};
use runner::SystemRunner;

/// Print a raw disk image's partition table and, when it holds a ZFS pool, the pool's
/// on-disk name, bootfs, datasets and boot environment properties. The pool is imported
/// read-only under a temporary name, without mounting anything, and exported again.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image (e.g. DATASET/output/GROUP-NAME.raw).
    file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: InspectArgs) -> Result<ExitCode> {
    let host = Host::detect();
    let runner = SystemRunner::new();
    let zfs = zfs::ZfsCli::new(
        &runner,
        zfs::ZfsTools::new(host.tool(Tool::Zfs), host.tool(Tool::Zpool)),
    )
    .with_timeout(std::time::Duration::from_secs(300));
    let sys = System {
        host,
        runner: &runner,
        zfs: &zfs,
    };
    let report = inspect::inspect(&sys, &a.file)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", inspect::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}
