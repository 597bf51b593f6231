//! `image-builder inspect`: what is in a raw disk image.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use image_builder::build::inspect;
use image_builder::context::Context as Ctx;
use image_builder::embedded;

use super::in_guest::{self, GuestExit};

/// Print a raw disk image's partition table and, when it holds a ZFS pool, the pool's
/// on-disk name, bootfs, datasets and boot environment properties. The pool is imported
/// read-only under a temporary name, without mounting anything, and exported again; on a
/// Linux host without /dev/zfs that happens in the embedded ZFS guest, as for `build`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image (e.g. DATASET/output/GROUP-NAME.raw).
    file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub(super) json: bool,
    /// Read the pool in the embedded ZFS guest (the default on a Linux host without
    /// /dev/zfs). The guest reads the image through the host's file system, read-only.
    #[arg(long)]
    vm: bool,
    /// Never use the embedded ZFS guest (wins over --vm).
    #[arg(long)]
    no_vm: bool,
}

pub fn run(a: InspectArgs, ctx: &Ctx) -> Result<ExitCode> {
    if !a.no_vm && (a.vm || embedded::needed(ctx.host())) {
        // A file that is missing or no disk image fails here, before the guest boots.
        inspect::partitions(&a.file)?;
        // The same command line with --no-vm, which wins over a --vm in it.
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        args.push("--no-vm".into());
        return Ok(match in_guest::run_without_pool(ctx.runner(), &args)? {
            GuestExit::Finished(c) => in_guest::exit_code(c),
            GuestExit::Failed(code) => code,
        });
    }
    let zfs = ctx.zfs();
    let report = inspect::inspect(&ctx.system(&zfs), &a.file)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", inspect::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}
