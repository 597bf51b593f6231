//! `--vm`: running `build` or `matrix` again inside the embedded ZFS guest, for Linux hosts
//! without `/dev/zfs`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use image_builder::embedded::{self, warm};
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
    /// Boot a guest for this command alone and stop it afterwards, instead of using (or
    /// starting) the warm guest of the pool.
    #[arg(long)]
    pub vm_cold: bool,
    /// With the warm guest: stop it after it has been idle this many seconds (default
    /// $IMAGE_BUILDER_VM_IDLE or 300).
    #[arg(long, value_name = "SECS")]
    pub vm_idle: Option<u64>,
}

/// The idle time of a warm guest: `flag`, else `$IMAGE_BUILDER_VM_IDLE`, else the default.
pub fn idle_time(flag: Option<u64>) -> Result<Duration> {
    if let Some(s) = flag {
        return Ok(Duration::from_secs(s));
    }
    match std::env::var("IMAGE_BUILDER_VM_IDLE") {
        Ok(v) => v.trim().parse().map(Duration::from_secs).map_err(|_| {
            anyhow::anyhow!("IMAGE_BUILDER_VM_IDLE: '{v}' is not a whole number of seconds")
        }),
        Err(_) => Ok(warm::DEFAULT_IDLE),
    }
}

/// The guest's lifetime limit, `$IMAGE_BUILDER_VM_TIMEOUT` (seconds) or a day.
fn lifetime() -> u64 {
    std::env::var("IMAGE_BUILDER_VM_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(86400)
}

/// How to start the warm guest of `pool` when none runs.
pub fn start_spec(
    runner: &SystemRunner,
    pool: &str,
    disk_size: u64,
    idle: Duration,
) -> Result<warm::StartSpec> {
    let harness = embedded::harness()?;
    let (disk, new) = embedded::disk_image(runner, pool, disk_size)?;
    if new {
        eprintln!("embedded guest {pool}: new pool image {}", disk.display());
    }
    Ok(warm::StartSpec {
        harness,
        disk,
        exe: std::env::current_exe()?,
        idle,
        lifetime_secs: lifetime(),
        boot_timeout: Duration::from_secs(
            std::env::var("IMAGE_BUILDER_VM_BOOT_TIMEOUT")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(300),
        ),
    })
}

/// Runs `argv` in the warm guest of `pool` (started if need be) with `rw` writable, in
/// the current directory; its exit status, or how the guest failed.
pub fn run_warm(
    spec: &warm::StartSpec,
    pool: &str,
    argv: Vec<String>,
    rw: Vec<PathBuf>,
) -> Result<GuestExit> {
    let g = warm::GuestDir::new(pool);
    let _turn = g.turn(false)?;
    let req = warm::RunRequest {
        id: warm::request_id(),
        argv,
        cwd: std::env::current_dir()?,
        env: std::iter::once(("IMAGE_BUILDER_LOG".to_string(), "info".to_string()))
            .chain(
                std::env::var("NO_COLOR")
                    .ok()
                    .map(|v| ("NO_COLOR".to_string(), v)),
            )
            .collect(),
        rw,
        idle_secs: spec.idle.as_secs(),
    };
    match g.run(spec, req) {
        Ok(code) => Ok(GuestExit::Finished(code)),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(GuestExit::Failed(if runner::interrupt::requested() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }))
        }
    }
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
        let (disk, new) = embedded::disk_image(runner, pool, self.vm_disk_size)?;
        std::fs::create_dir_all(&self.vm_output)?;
        let output = self.vm_output.canonicalize()?;
        eprintln!(
            "no /dev/zfs here: building in the {} embedded ZFS guest (pool {pool} in {}{}; outputs to {})",
            if self.vm_cold { "one-shot" } else { "warm" },
            disk.display(),
            if new { ", new" } else { "" },
            output.display()
        );
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        args.push("--guest-output".into());
        args.push(output.display().to_string());
        let all: Vec<PathBuf> = std::iter::once(output)
            .chain(shares.iter().cloned())
            .collect();
        self.run_args(pool, runner, args, &all)
    }

    /// Runs `plan -d` in the guest: no output directory, its standard output as it is.
    pub fn run_plan(&self, dataset: &str, runner: &SystemRunner) -> Result<GuestExit> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        self.run_args(embedded::pool_of(dataset), runner, args, &[])
    }

    /// Runs this program with `args` in the warm guest of `pool`, or (`--vm-cold`) in a
    /// guest of its own, with `rw` writable.
    fn run_args(
        &self,
        pool: &str,
        runner: &SystemRunner,
        args: Vec<String>,
        rw: &[PathBuf],
    ) -> Result<GuestExit> {
        let exe = std::env::current_exe()?;
        if !self.vm_cold {
            let spec = start_spec(runner, pool, self.vm_disk_size, idle_time(self.vm_idle)?)?;
            let argv = std::iter::once(exe.display().to_string())
                .chain(args)
                .collect();
            return run_warm(&spec, pool, argv, rw.to_vec());
        }
        let harness = embedded::harness()?;
        let (disk, _) = embedded::disk_image(runner, pool, self.vm_disk_size)?;
        // Cold: a guest of its own, so a warm one on the same pool image stops first (two
        // guests cannot share the image), and none starts meanwhile.
        let g = warm::GuestDir::new(pool);
        if g.qemu_pid().is_some() {
            eprintln!("embedded guest {pool}: stopping the warm guest for this cold run");
            g.stop()?;
        }
        let _turn = g.turn(false)?;
        let cmd = embedded::guest_command(&harness, Some(&disk), rw, &exe, &args).passthrough();
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
        None => GuestExit::Failed(super::exit::interrupted()),
    })
}

/// The exit status for a guest command's `code`.
pub fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
