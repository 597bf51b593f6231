//! `image-builder vm`: print a VM as a bhyve command or a libvirt domain, or run it with
//! QEMU on the serial console.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::args::ImageFormat;
use super::exit::bad_input;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use image_builder::context::Context as Ctx;
use image_builder::vm::{
    bhyve, libvirt, Accel, DirectBoot, Disk, DiskFormat, Firmware, Network, QemuVm, RunOptions,
    Share, VmSpec,
};

/// Describe or run a development VM from one spec.
///
/// The spec comes from --spec FILE (JSON), adjusted by the flags below. The project
/// checkout is shared over 9P with the tag `repo` unless --no-repo. Without --print, the
/// VM runs under QEMU: its serial console is copied to standard output and standard input
/// is sent to it line by line; the command exits with the guest. Ctrl-C stops the guest
/// and removes the run's files.
#[derive(Args, Debug)]
pub struct VmArgs {
    /// Disk image(s) to attach, in order (raw unless --image-format).
    #[arg(value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Read the VM spec from this JSON file first.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Print instead of running: a bhyve command, a libvirt domain, the QEMU command, or
    /// the resolved spec.
    #[arg(long, value_enum, value_name = "WHAT")]
    print: Option<Print>,
    /// Guest name (bhyve vmname, libvirt domain, QEMU -name).
    #[arg(long)]
    name: Option<String>,
    /// Guest memory in MiB.
    #[arg(short = 'm', long, value_name = "MIB")]
    memory: Option<u32>,
    /// Virtual CPUs.
    #[arg(short = 'c', long)]
    cpus: Option<u32>,
    /// Boot firmware (UEFI: OVMF for QEMU and libvirt, BHYVE_UEFI.fd for bhyve).
    #[arg(long, value_enum)]
    firmware: Option<Firmware>,
    /// Format of the IMAGE arguments (`--format` before; `build --format` names the
    /// formats a build writes).
    #[arg(
        long = "image-format",
        alias = "format",
        value_enum,
        default_value = "raw"
    )]
    image_format: ImageFormat,
    /// Attach the images with throw-away writes (QEMU).
    #[arg(long)]
    snapshot: bool,
    /// Share a host directory: TAG=DIR, or TAG=DIR,ro (repeatable).
    #[arg(long = "share", value_name = "TAG=DIR")]
    shares: Vec<String>,
    /// Directory shared as `repo` [default: the enclosing git checkout].
    #[arg(long, value_name = "DIR", conflicts_with = "no_repo")]
    repo: Option<PathBuf>,
    /// Do not share the repository.
    #[arg(long)]
    no_repo: bool,
    /// Network: user (the default), none, or vnic:NAME (illumos bhyve).
    #[arg(long, value_name = "KIND")]
    net: Option<String>,
    /// bhyve: connect com1 to this Unix socket instead of bhyve's stdio.
    #[arg(long, value_name = "PATH")]
    serial_socket: Option<PathBuf>,
    /// Boot this kernel directly (QEMU, libvirt).
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Initial ramdisk for --kernel.
    #[arg(long, value_name = "FILE", requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "ARGS", requires = "kernel")]
    append: Option<String>,
    /// OVMF code image (QEMU, libvirt).
    #[arg(long, value_name = "FILE")]
    ovmf_code: Option<PathBuf>,
    /// OVMF variable-store template (QEMU copies it per run).
    #[arg(long, value_name = "FILE")]
    ovmf_vars: Option<PathBuf>,
    /// bhyve boot ROM.
    #[arg(long, value_name = "FILE")]
    bootrom: Option<PathBuf>,
    /// QEMU accelerator.
    #[arg(long, value_enum, default_value = "auto")]
    accel: Accel,
    /// QEMU program.
    #[arg(long, value_name = "PROGRAM", default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// Keep the console log at this path (otherwise it is removed with the run).
    #[arg(long, value_name = "FILE")]
    console_log: Option<PathBuf>,
    /// Stop the guest after this many seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Print {
    Bhyve,
    Libvirt,
    Qemu,
    Spec,
}

pub fn run(a: VmArgs, ctx: &Ctx) -> Result<ExitCode> {
    // A spec or flags that cannot describe a VM are bad input (2); a VM that fails to run
    // is a failure (1).
    let spec = build_spec(&a).map_err(bad_input)?;
    match a.print {
        Some(Print::Bhyve) => print!(
            "{}",
            bhyve::render(&bhyve::command(&spec).map_err(bad_input)?)
        ),
        Some(Print::Libvirt) => {
            let kind = if a.accel == Accel::Tcg { "qemu" } else { "kvm" };
            print!("{}", libvirt::domain(&spec, kind).map_err(bad_input)?);
        }
        Some(Print::Qemu) => print_qemu(&spec, &a).map_err(bad_input)?,
        Some(Print::Spec) => println!("{}", serde_json::to_string_pretty(&spec)?),
        None => return run_qemu(&spec, &a, ctx),
    }
    Ok(ExitCode::SUCCESS)
}

fn build_spec(a: &VmArgs) -> Result<VmSpec> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut spec = match &a.spec {
        Some(f) => VmSpec::load(f)?,
        None => VmSpec::default(),
    };
    if let Some(n) = &a.name {
        spec.name = n.clone();
    }
    if let Some(m) = a.memory {
        spec.memory_mib = m;
    }
    if let Some(c) = a.cpus {
        spec.cpus = c;
    }
    if let Some(f) = a.firmware {
        spec.firmware = f;
    }
    let format = DiskFormat::from(a.image_format);
    for img in &a.images {
        spec.disks.push(Disk {
            path: absolute(&cwd, img),
            format,
            snapshot: a.snapshot,
            readonly: false,
        });
    }
    if !a.no_repo {
        let repo = a.repo.clone().or_else(|| find_checkout(&cwd));
        match repo {
            Some(r) => spec.set_share(Share {
                tag: "repo".into(),
                path: absolute(&cwd, &r),
                readonly: false,
            }),
            None if !spec.shares.iter().any(|s| s.tag == "repo") => tracing::warn!(
                "not inside a git checkout: nothing shared as `repo` (use --repo DIR)"
            ),
            None => {}
        }
    }
    for s in &a.shares {
        spec.set_share(parse_share(&cwd, s)?);
    }
    if let Some(n) = &a.net {
        spec.network = parse_net(n)?;
    }
    if let Some(p) = &a.serial_socket {
        spec.serial_socket = Some(absolute(&cwd, p));
    }
    if let Some(k) = &a.kernel {
        spec.kernel = Some(DirectBoot {
            kernel: absolute(&cwd, k),
            initrd: a.initrd.as_ref().map(|i| absolute(&cwd, i)),
            cmdline: a.append.clone().unwrap_or_default(),
        });
    }
    let ff = &mut spec.firmware_files;
    for (flag, slot) in [
        (&a.ovmf_code, &mut ff.ovmf_code),
        (&a.ovmf_vars, &mut ff.ovmf_vars),
        (&a.bootrom, &mut ff.bhyve_bootrom),
    ] {
        if let Some(p) = flag {
            *slot = Some(absolute(&cwd, p));
        }
    }
    spec.validate()?;
    Ok(spec)
}

/// `TAG=DIR` or `TAG=DIR,ro`, a relative DIR taken from `cwd`.
pub(super) fn parse_share(cwd: &Path, s: &str) -> Result<Share> {
    let Some((tag, rest)) = s.split_once('=') else {
        bail!("--share {s:?}: expected TAG=DIR or TAG=DIR,ro");
    };
    let (dir, readonly) = match rest.strip_suffix(",ro") {
        Some(d) => (d, true),
        None => (rest, false),
    };
    Ok(Share {
        tag: tag.to_string(),
        path: absolute(cwd, Path::new(dir)),
        readonly,
    })
}

fn parse_net(s: &str) -> Result<Network> {
    Ok(match s {
        "user" => Network::User,
        "none" => Network::None,
        _ => match s.strip_prefix("vnic:") {
            Some(v) => Network::Vnic(v.to_string()),
            None => bail!("--net {s:?}: expected user, none or vnic:NAME"),
        },
    })
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// The nearest directory at or above `dir` holding `.git` (a checkout or a worktree).
fn find_checkout(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

fn options(a: &VmArgs) -> RunOptions {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("image-builder/vm"));
    RunOptions {
        qemu: a.qemu.clone(),
        accel: a.accel,
        console_log: a.console_log.clone(),
        run_root: None,
        cache_dir: cache,
    }
}

fn print_qemu(spec: &VmSpec, a: &VmArgs) -> Result<()> {
    use image_builder::vm::qemu::{args, find_ovmf, RunPaths};
    let accel = if a.accel == Accel::Kvm {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let paths = RunPaths::new(Path::new("RUNDIR"), a.console_log.as_deref());
    let ovmf = match spec.firmware {
        Firmware::Uefi => Some(find_ovmf(spec)?.0),
        Firmware::Bios => None,
    };
    let cmd = runner::Cmd::new(&a.qemu).args(args(spec, &paths, accel, ovmf.as_deref())?);
    println!("{}", cmd.display());
    Ok(())
}

fn run_qemu(spec: &VmSpec, a: &VmArgs, ctx: &Ctx) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    let mut vm = QemuVm::start(spec, &options(a), ctx.runner())?;
    eprintln!(
        "vm: {} running (qemu pid {}, {}); console socket {}, log {}",
        spec.name,
        vm.pid(),
        vm.accel().as_str(),
        vm.paths().console_socket.display(),
        vm.paths().console_log.display()
    );
    vm.console().tee(Box::new(std::io::stdout()));
    let mut writer = vm.console().writer()?;
    // Standard input goes to the console a line at a time; the thread dies with the process.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if writer.send(format!("{line}\n").as_bytes()).is_err() {
                break;
            }
        }
    });
    let deadline = a.timeout.map(|s| vm.started() + Duration::from_secs(s));
    loop {
        if let Some(status) = vm.wait_timeout(Duration::from_millis(100))? {
            std::io::stdout().flush().ok();
            return Ok(match status.code() {
                Some(0) => ExitCode::SUCCESS,
                Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
                None => ExitCode::from(1),
            });
        }
        if stop.load(Ordering::Relaxed) {
            eprintln!("vm: interrupted; stopping the guest");
            vm.stop()?;
            return Ok(super::exit::interrupted());
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            eprintln!("vm: timed out; stopping the guest");
            vm.stop()?;
            return Ok(ExitCode::from(124));
        }
    }
}
