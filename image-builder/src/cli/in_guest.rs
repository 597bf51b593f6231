//! `--vm`: running `build` or `matrix` again inside the embedded ZFS guest, for Linux hosts
//! without `/dev/zfs`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use image_builder::embedded;
use image_builder::host::Host;
use runner::{Runner, SystemRunner};

/// Where the builds run: here, or in the embedded ZFS guest.
#[derive(Args, Debug, Clone)]
pub struct GuestArgs {
    /// Run the builds in the embedded ZFS guest (the default on a Linux host without
    /// /dev/zfs). The pool named by -d lives in ~/.cache/image-builder/embedded/POOL.img.
    #[arg(long, conflicts_with = "no_vm")]
    pub vm: bool,
    /// Never use the embedded ZFS guest.
    #[arg(long)]
    pub no_vm: bool,
    /// With the embedded guest: host directory that receives the outputs.
    #[arg(long, value_name = "DIR", default_value = "output")]
    pub vm_output: PathBuf,
    /// With the embedded guest: size in GiB of a new pool image (sparse).
    #[arg(long, value_name = "GIB", default_value_t = 32)]
    pub vm_disk_size: u64,
}

/// How a run in the guest ended.
pub enum GuestExit {
    /// The command ran in the guest and exited with this status.
    Finished(i32),
    /// The guest itself failed (it was set up wrong, hung or was interrupted); the reason
    /// was printed. The process should exit with this.
    Failed(ExitCode),
}

impl GuestArgs {
    /// Whether this run goes to the guest: asked for, or needed and not refused. Never from
    /// inside the guest (`inside`).
    pub fn wanted(&self, host: Host, inside: bool) -> bool {
        !inside && (self.vm || (!self.no_vm && embedded::needed(host)))
    }

    /// Runs this same command line in the guest, with `--guest-output` naming the output
    /// directory and `shares` shared read-write beside it.
    pub fn run(
        &self,
        dataset: &str,
        runner: &SystemRunner,
        shares: &[PathBuf],
    ) -> Result<GuestExit> {
        let pool = embedded::pool_of(dataset);
        let harness = embedded::harness()?;
        let (disk, new) = embedded::disk_image(runner, pool, self.vm_disk_size)?;
        std::fs::create_dir_all(&self.vm_output)?;
        let output = self.vm_output.canonicalize()?;
        eprintln!(
            "no /dev/zfs here: building in the embedded ZFS guest (pool {pool} in {}{}; outputs to {})",
            disk.display(),
            if new { ", new" } else { "" },
            output.display()
        );
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        args.push("--guest-output".into());
        args.push(output.display().to_string());
        let exe = std::env::current_exe()?;
        let all: Vec<PathBuf> = std::iter::once(output)
            .chain(shares.iter().cloned())
            .collect();
        let cmd = embedded::guest_command(&harness, Some(&disk), &all, &exe, &args).passthrough();
        finish(runner, &cmd, &harness)
    }
}

/// Runs `args`, a command line of this program that needs ZFS but no pool of its own (such
/// as `inspect`), in the guest: no pool disk, nothing shared read-write; the guest sees the
/// host's files read-only at the same paths and starts in the same directory.
pub fn run_without_pool(runner: &SystemRunner, args: &[String]) -> Result<GuestExit> {
    let harness = embedded::harness()?;
    let exe = std::env::current_exe()?;
    let cmd = embedded::guest_command(&harness, None, &[], &exe, args).passthrough();
    finish(runner, &cmd, &harness)
}

/// Runs the guest command `cmd` and tells its exit status from the harness's own.
fn finish(
    runner: &SystemRunner,
    cmd: &runner::Cmd,
    harness: &std::path::Path,
) -> Result<GuestExit> {
    let out = runner.output(cmd)?;
    Ok(match out.code {
        Some(124) => {
            eprintln!("error: the embedded ZFS guest did not finish in time");
            GuestExit::Failed(ExitCode::FAILURE)
        }
        Some(125) => {
            eprintln!(
                "error: the embedded ZFS guest could not run (set it up with `{} setup` as root)",
                harness.display()
            );
            GuestExit::Failed(ExitCode::FAILURE)
        }
        Some(c) => GuestExit::Finished(c),
        None => GuestExit::Failed(ExitCode::from(130)),
    })
}

/// The exit status for a guest command's `code`.
pub fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
