//! `image-builder test`: boot built images, run a checklist on the serial console, write
//! a JSON and Markdown report.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use image_builder::boottest::{self, seed, Checklist, Login, Report, TestRun};
use image_builder::context::Context as Ctx;
use image_builder::vm::{
    Accel, DirectBoot, Disk, DiskFormat, Firmware, Network, RunOptions, Share, VmSpec,
};
use runner::SystemRunner;

use super::args::ImageFormat;

/// Boot-test images: boot each IMAGE in a QEMU VM (writes go to a throw-away overlay)
/// with a NoCloud `cidata` seed (fresh SSH key and instance id), log in on the serial
/// console, run the checklist, and write report.json and report.md.
///
/// Exit status: 0 when every image booted and passed every check, 1 otherwise, 2 for a
/// bad checklist, 130 when interrupted (the VMs are stopped and the report says so).
#[derive(Args, Debug, Clone)]
pub struct TestArgs {
    /// Disk image(s) to test, one VM each, in order.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub opts: TestOpts,
}

/// The test options, shared with `build --matrix --test`.
#[derive(Args, Debug, Clone)]
pub struct TestOpts {
    /// A checklist file (JSON, see docs/boot-testing.md); repeatable, run in order.
    #[arg(long = "check", value_name = "FILE")]
    pub checks: Vec<PathBuf>,
    /// A built-in checklist: illumos (the default when no --check is given), openzfs, or
    /// pool-image (a pool image attached to an OpenZFS guest as a data disk).
    #[arg(long = "builtin", value_name = "NAME")]
    pub builtin: Vec<String>,
    /// Seconds to wait for the guest to boot to its login and shell prompt (`--timeout`
    /// before; `vm --timeout` stops a guest after a time).
    #[arg(
        long = "boot-timeout",
        alias = "timeout",
        value_name = "SECS",
        default_value_t = 600
    )]
    pub boot_timeout: u64,
    /// Directory for report.json, report.md and the console logs.
    #[arg(long, value_name = "DIR", default_value = "test-report")]
    pub report: PathBuf,
    /// Text of the login prompt.
    #[arg(long, value_name = "TEXT", default_value = "login: ")]
    pub login_prompt: String,
    /// The console goes straight to a shell: no login.
    #[arg(long)]
    pub no_login: bool,
    /// The user to log in as at the login prompt.
    #[arg(long, value_name = "NAME", default_value = "root")]
    pub user: String,
    /// Read the password for --user, if the image asks for one, from this file (its
    /// first line). IMAGE_BUILDER_TEST_PASSWORD, when set, gives it instead.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Refused: a password on the command line is visible to every user of the host
    /// (ps, /proc). Kept, hidden, to say what to use instead.
    #[arg(long, value_name = "TEXT", hide = true)]
    pub password: Option<String>,
    /// Text of the shell prompt.
    #[arg(long, value_name = "TEXT", default_value = "# ")]
    pub prompt: String,
    /// Do not boot anything: run the checks on this system with `sh -c` (for a machine
    /// or harness guest that already has the image attached); IMAGE only names the run.
    #[arg(long)]
    pub local: bool,
    /// Do not attach a NoCloud seed.
    #[arg(long)]
    pub no_seed: bool,
    /// Guest memory in MiB.
    #[arg(short = 'm', long, value_name = "MIB", default_value_t = 2048)]
    pub memory: u32,
    /// Virtual CPUs.
    #[arg(short = 'c', long, default_value_t = 2)]
    pub cpus: u32,
    /// Boot firmware: uefi (OVMF) or bios.
    #[arg(long, value_enum, default_value = "uefi")]
    pub firmware: Firmware,
    /// Format of the images.
    #[arg(long, value_enum, default_value = "raw")]
    pub image_format: ImageFormat,
    /// Hidden alias of `--image-format qcow2`, its name before.
    #[arg(long, hide = true, conflicts_with = "image_format")]
    pub qcow2: bool,
    /// Boot this kernel directly (the image is then a data disk).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk for --kernel.
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line for --kernel.
    #[arg(long, value_name = "ARGS", requires = "kernel")]
    pub append: Option<String>,
    /// Share a host directory over 9P: TAG=DIR, or TAG=DIR,ro (repeatable).
    #[arg(long = "share", value_name = "TAG=DIR")]
    pub shares: Vec<String>,
    /// Network: user (the default) or none (no network device).
    #[arg(long, value_name = "KIND", value_parser = ["user", "none"], default_value = "user")]
    pub net: String,
    /// Hidden alias of `--net none`, its name before.
    #[arg(long, hide = true, conflicts_with = "net")]
    pub no_net: bool,
    /// QEMU accelerator.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: Accel,
    /// QEMU program.
    #[arg(long, value_name = "PROGRAM", default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
}

pub fn run(a: TestArgs, ctx: &Ctx) -> Result<ExitCode> {
    ctx.handle_interrupts()
        .context("cannot install signal handlers")?;
    let list = checklist(&a.opts).map_err(super::exit::bad_input)?;
    let reports = test_images(&a.images, &a.opts, &list, ctx.runner())?;
    let (json, md) = boottest::report::write(&a.opts.report, &reports)
        .with_context(|| format!("cannot write the report in {}", a.opts.report.display()))?;
    eprintln!("test: report in {} and {}", json.display(), md.display());
    Ok(exit_code(&reports, ctx.interrupted()))
}

pub fn exit_code(reports: &[Report], interrupted: bool) -> ExitCode {
    if interrupted {
        super::exit::interrupted()
    } else if reports.iter().all(|r| r.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The environment variable that can hold the console password.
pub const PASSWORD_ENV: &str = "IMAGE_BUILDER_TEST_PASSWORD";

/// The console password: from --password-file, else the environment; never argv.
pub fn password(o: &TestOpts) -> Result<Option<String>> {
    if o.password.is_some() {
        anyhow::bail!(
            "--password is no longer accepted: a password on the command line can be read by \
             every user of this host; use --password-file FILE or {PASSWORD_ENV}"
        );
    }
    if let Some(f) = &o.password_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read --password-file {}", f.display()))?;
        return Ok(Some(text.lines().next().unwrap_or("").to_string()));
    }
    Ok(std::env::var(PASSWORD_ENV).ok())
}

pub fn checklist(o: &TestOpts) -> Result<Checklist> {
    // A bad password option is refused before anything boots.
    password(o)?;
    let mut lists = Vec::new();
    for b in &o.builtin {
        lists.push(Checklist::builtin(b)?);
    }
    for f in &o.checks {
        lists.push(Checklist::load(f)?);
    }
    if lists.is_empty() {
        lists.push(Checklist::builtin("illumos")?);
    }
    Checklist::concat(lists).map_err(|e| anyhow::anyhow!("checklists: {e}"))
}

/// Tests each image in turn (each boot is a full VM; two cores do not run two at once
/// usefully), stopping early when interrupted.
pub fn test_images(
    images: &[PathBuf],
    o: &TestOpts,
    list: &Checklist,
    runner: &SystemRunner,
) -> Result<Vec<Report>> {
    std::fs::create_dir_all(&o.report)
        .with_context(|| format!("cannot create {}", o.report.display()))?;
    let report_dir = std::path::absolute(&o.report)?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let shares = o
        .shares
        .iter()
        .map(|s| super::vm::parse_share(&cwd, s))
        .collect::<Result<Vec<_>>>()?;
    let mut used = HashSet::new();
    let mut reports = Vec::new();
    for image in images {
        if runner::interrupt::requested() {
            break;
        }
        let image = std::path::absolute(image)?;
        if o.local {
            let r = boottest::local_report(&image, runner, list, &runner::interrupt::flag());
            reports.push(r);
            continue;
        }
        let log = report_dir.join(format!("{}.console.log", unique_stem(&image, &mut used)));
        reports.push(test_one(&image, o, &shares, list, runner, log)?);
    }
    Ok(reports)
}

fn unique_stem(image: &Path, used: &mut HashSet<String>) -> String {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let mut name = stem.clone();
    let mut n = 1;
    while !used.insert(name.clone()) {
        n += 1;
        name = format!("{stem}-{n}");
    }
    name
}

fn instance_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "iid-ib-test-{secs}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn test_one(
    image: &Path,
    o: &TestOpts,
    shares: &[Share],
    list: &Checklist,
    runner: &SystemRunner,
    console_log: PathBuf,
) -> Result<Report> {
    let iid = instance_id();
    let seed_dir = tempfile::Builder::new()
        .prefix("ib-seed-")
        .tempdir()
        .context("cannot create a directory for the seed")?;
    let mut disks = vec![Disk {
        path: image.to_path_buf(),
        format: if o.qcow2 {
            DiskFormat::Qcow2
        } else {
            o.image_format.into()
        },
        snapshot: true,
        readonly: false,
    }];
    if !o.no_seed {
        let s = seed::make(runner, seed_dir.path(), &iid, "ib-test")?;
        disks.push(Disk {
            path: s.volume,
            format: DiskFormat::Raw,
            snapshot: false,
            readonly: true,
        });
    }
    let spec = VmSpec {
        name: "ib-test".into(),
        memory_mib: o.memory,
        cpus: o.cpus,
        firmware: o.firmware,
        disks,
        shares: shares.to_vec(),
        network: if o.no_net || o.net == "none" {
            Network::None
        } else {
            Network::User
        },
        kernel: o.kernel.as_ref().map(|k| DirectBoot {
            kernel: k.clone(),
            initrd: o.initrd.clone(),
            cmdline: o.append.clone().unwrap_or_default(),
        }),
        ..VmSpec::default()
    };
    let t = TestRun {
        image,
        spec,
        run: RunOptions {
            qemu: o.qemu.clone(),
            accel: o.accel,
            ..RunOptions::default()
        },
        login: Login {
            login_prompt: (!o.no_login).then(|| o.login_prompt.clone()),
            user: o.user.clone(),
            password: password(o)?,
            shell_prompt: o.prompt.clone(),
            boot_timeout: Duration::from_secs(o.boot_timeout),
        },
        instance_id: iid,
        console_log,
    };
    eprintln!("test: booting {}", image.display());
    let r = boottest::boot_and_check(t, list, runner, runner::interrupt::flag());
    eprintln!(
        "test: {}: {}",
        image.display(),
        if r.passed { "passed" } else { "FAILED" }
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        opts: TestOpts,
    }

    fn opts(args: &[&str]) -> TestOpts {
        T::parse_from(std::iter::once("test").chain(args.iter().copied())).opts
    }

    #[test]
    fn the_password_is_the_first_line_of_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\nignored\n").unwrap();
        let o = opts(&["--password-file", f.to_str().unwrap()]);
        assert_eq!(password(&o).unwrap().as_deref(), Some("s3cret"));
        // The only test that touches this variable.
        std::env::set_var(PASSWORD_ENV, "from-env");
        assert_eq!(password(&opts(&[])).unwrap().as_deref(), Some("from-env"));
        std::env::remove_var(PASSWORD_ENV);
        assert_eq!(password(&opts(&[])).unwrap(), None);
        assert!(password(&opts(&["--password", "x"])).is_err());
    }

    #[test]
    fn renamed_flags_keep_their_old_names_hidden() {
        let o = opts(&[
            "--boot-timeout",
            "5",
            "--image-format",
            "qcow2",
            "--net",
            "none",
        ]);
        assert_eq!(
            (o.boot_timeout, o.image_format, o.net.as_str()),
            (5, ImageFormat::Qcow2, "none")
        );
        let old = opts(&["--timeout", "7", "--qcow2", "--no-net"]);
        assert_eq!((old.boot_timeout, old.qcow2, old.no_net), (7, true, true));
        let d = opts(&[]);
        assert_eq!(
            (d.boot_timeout, d.image_format, d.net.as_str()),
            (600, ImageFormat::Raw, "user")
        );
        for both in [
            ["--qcow2", "--image-format=raw"],
            ["--no-net", "--net=user"],
        ] {
            let r = T::try_parse_from(std::iter::once("test").chain(both));
            assert!(r.is_err(), "{both:?} must conflict");
        }
    }
}
