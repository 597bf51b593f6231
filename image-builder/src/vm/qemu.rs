//! Running a spec with QEMU: the command line, and a running VM whose serial console is a
//! per-run Unix socket (plus a log file), stopped and cleaned up when dropped.
//!
//! Nothing listens on a TCP port and every path lives in a fresh private directory, so any
//! number of runs can share a host.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use runner::{Cmd, Sink, Spawned, SystemRunner};

use super::console::Console;
use super::probe;
use super::spec::{Firmware, Network, VmSpec};
use super::VmError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when the probe shows it works, TCG otherwise.
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// How to run QEMU (as opposed to what the VM is, which is the spec).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub qemu: PathBuf,
    pub accel: Accel,
    /// Keep the console log here; otherwise it lives (and dies) in the run directory.
    pub console_log: Option<PathBuf>,
    /// Parent of the per-run directory; default: $XDG_RUNTIME_DIR or the temp dir.
    pub run_root: Option<PathBuf>,
    /// Where the KVM verdict is cached; `None` probes every time.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            qemu: "qemu-system-x86_64".into(),
            accel: Accel::Auto,
            console_log: None,
            run_root: None,
            cache_dir: None,
        }
    }
}

/// Files of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    pub dir: PathBuf,
    pub console_socket: PathBuf,
    pub console_log: PathBuf,
    pub qemu_stderr: PathBuf,
    pub ovmf_vars: PathBuf,
}

impl RunPaths {
    pub fn new(dir: &Path, console_log: Option<&Path>) -> RunPaths {
        RunPaths {
            dir: dir.to_path_buf(),
            console_socket: dir.join("console.sock"),
            console_log: console_log
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.join("console.log")),
            qemu_stderr: dir.join("qemu.stderr"),
            ovmf_vars: dir.join("OVMF_VARS.fd"),
        }
    }
}

/// UEFI firmware locations tried when the spec names none (Debian, Fedora, Arch).
const OVMF_CANDIDATES: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
        "/usr/share/edk2/x64/OVMF_VARS.4m.fd",
    ),
];

/// The OVMF code image and variable template for a UEFI spec.
pub fn find_ovmf(spec: &VmSpec) -> Result<(PathBuf, PathBuf), VmError> {
    let f = &spec.firmware_files;
    if let (Some(c), Some(v)) = (&f.ovmf_code, &f.ovmf_vars) {
        return Ok((c.clone(), v.clone()));
    }
    for (c, v) in OVMF_CANDIDATES {
        let (c, v) = (PathBuf::from(c), PathBuf::from(v));
        let code = f.ovmf_code.clone().unwrap_or(c);
        let vars = f.ovmf_vars.clone().unwrap_or(v);
        if code.is_file() && vars.is_file() {
            return Ok((code, vars));
        }
    }
    Err(VmError::NoFirmware {
        looked: OVMF_CANDIDATES
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// QEMU's option parser splits on ',' and reads ",," as a literal comma.
fn opt(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// The QEMU arguments (without the program) for `spec` with `accel` (`Kvm` or `Tcg`);
/// `ovmf_code` is the firmware for UEFI specs (its variables are `paths.ovmf_vars`).
pub fn args(
    spec: &VmSpec,
    paths: &RunPaths,
    accel: Accel,
    ovmf_code: Option<&Path>,
) -> Result<Vec<String>, VmError> {
    spec.validate()?;
    let (accel, cpu) = match accel {
        Accel::Kvm => ("kvm", "host"),
        _ => ("tcg", "max"),
    };
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    push(&["-name", &spec.name, "-machine", "q35", "-accel", accel]);
    push(&["-cpu", cpu, "-smp", &spec.cpus.to_string()]);
    push(&["-m", &spec.memory_mib.to_string()]);
    // No default devices, config files, display or monitor: the spec is the whole VM.
    // A guest reboot ends the run, as with bhyve.
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-monitor", "none", "-no-reboot"]);
    // wait=on: QEMU holds the guest until our console connects, so no early output is lost.
    push(&[
        "-chardev",
        &format!(
            "socket,id=console,path={},server=on,wait=on,logfile={},logappend=off",
            opt(&paths.console_socket),
            opt(&paths.console_log)
        ),
        "-serial",
        "chardev:console",
    ]);
    if spec.firmware == Firmware::Uefi {
        let code = ovmf_code.ok_or_else(|| VmError::NoFirmware {
            looked: "(none given)".into(),
        })?;
        push(&[
            "-drive",
            &format!("if=pflash,format=raw,unit=0,readonly=on,file={}", opt(code)),
            "-drive",
            &format!("if=pflash,format=raw,unit=1,file={}", opt(&paths.ovmf_vars)),
        ]);
    }
    if let Some(k) = &spec.kernel {
        push(&["-kernel", &k.kernel.to_string_lossy()]);
        if let Some(i) = &k.initrd {
            push(&["-initrd", &i.to_string_lossy()]);
        }
        push(&["-append", &k.cmdline]);
    }
    for (i, d) in spec.disks.iter().enumerate() {
        let mut v = format!(
            "file={},format={},if=virtio,index={i}",
            opt(&d.path),
            d.format.as_str()
        );
        if d.readonly {
            v.push_str(",readonly=on");
        }
        if d.snapshot {
            v.push_str(",snapshot=on");
        }
        push(&["-drive", &v]);
    }
    for (i, s) in spec.shares.iter().enumerate() {
        // security_model=none: files keep the host's ownership and a non-root QEMU works.
        // multidevs=remap: a share spanning several host file systems (a share of `/`)
        // gets inode numbers that cannot collide in the guest.
        let mut v = format!(
            "local,id=fs{i},path={},security_model=none,multidevs=remap",
            opt(&s.path)
        );
        if s.readonly {
            v.push_str(",readonly=on");
        }
        push(&[
            "-fsdev",
            &v,
            "-device",
            &format!("virtio-9p-pci,fsdev=fs{i},mount_tag={}", s.tag),
        ]);
    }
    match &spec.network {
        Network::None => {}
        Network::User => push(&[
            "-netdev",
            "user,id=net0",
            "-device",
            "virtio-net-pci,netdev=net0",
        ]),
        Network::Vnic(v) => {
            return Err(VmError::Unsupported {
                backend: "QEMU",
                reason: format!("vnic {v:?} is an illumos link; use network \"user\""),
            })
        }
    }
    Ok(a)
}

/// A VM running under QEMU. Dropping it stops QEMU and removes the run directory.
pub struct QemuVm {
    // Field order is drop order: console, then the process, then the directory.
    console: Console,
    process: Spawned,
    dir: tempfile::TempDir,
    paths: RunPaths,
    accel: Accel,
    started: Instant,
}

impl QemuVm {
    /// Starts QEMU and connects to its console; the guest runs once this returns.
    pub fn start(
        spec: &VmSpec,
        opts: &RunOptions,
        runner: &SystemRunner,
    ) -> Result<QemuVm, VmError> {
        let started = Instant::now();
        spec.validate()?;
        let dir = run_dir(opts)?;
        let paths = RunPaths::new(dir.path(), opts.console_log.as_deref());
        let accel = resolve_accel(opts, runner, dir.path());
        let ovmf = match spec.firmware {
            Firmware::Uefi => {
                let (code, vars) = find_ovmf(spec)?;
                std::fs::copy(&vars, &paths.ovmf_vars).map_err(|source| VmError::Io {
                    what: format!("cannot copy {}", vars.display()),
                    source,
                })?;
                Some(code)
            }
            Firmware::Bios => None,
        };
        let cmd = Cmd::new(&opts.qemu)
            .args(args(spec, &paths, accel, ovmf.as_deref())?)
            .tag("qemu");
        tracing::info!("{} ({})", cmd.display(), accel.as_str());
        let mut process = runner.spawn(&cmd, Sink::Null, Sink::File(paths.qemu_stderr.clone()))?;
        let console = connect(&mut process, &paths)?;
        Ok(QemuVm {
            console,
            process,
            dir,
            paths,
            accel,
            started,
        })
    }

    pub fn console(&mut self) -> &mut Console {
        &mut self.console
    }

    pub fn paths(&self) -> &RunPaths {
        &self.paths
    }

    pub fn run_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// When [`QemuVm::start`] was called, for timing the boot.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, VmError> {
        Ok(self.process.try_wait()?)
    }

    pub fn wait_timeout(&mut self, limit: Duration) -> Result<Option<ExitStatus>, VmError> {
        Ok(self.process.wait_timeout(limit)?)
    }

    /// What QEMU wrote to standard error so far.
    pub fn qemu_stderr(&self) -> String {
        std::fs::read_to_string(&self.paths.qemu_stderr).unwrap_or_default()
    }

    /// Stops QEMU (SIGTERM, then SIGKILL) and removes the run directory.
    pub fn stop(mut self) -> Result<ExitStatus, VmError> {
        Ok(self.process.stop()?)
    }
}

fn run_dir(opts: &RunOptions) -> Result<tempfile::TempDir, VmError> {
    let root = opts
        .run_root
        .clone()
        .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from))
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("ib-vm-")
        .tempdir_in(&root)
        .map_err(|source| VmError::Io {
            what: format!("cannot create a run directory in {}", root.display()),
            source,
        })?;
    // sun_path holds 108 bytes; a deep temp dir would make the socket unreachable.
    if dir.path().join("console.sock").as_os_str().len() >= 100 {
        return Err(VmError::Unsupported {
            backend: "QEMU",
            reason: format!(
                "run directory {} is too deep for a Unix socket path",
                dir.path().display()
            ),
        });
    }
    Ok(dir)
}

fn resolve_accel(opts: &RunOptions, runner: &SystemRunner, scratch: &Path) -> Accel {
    if opts.accel != Accel::Auto {
        return opts.accel;
    }
    if !Path::new("/dev/kvm").exists() {
        return Accel::Tcg;
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cached = opts
        .cache_dir
        .as_deref()
        .filter(|_| !boot_id.is_empty())
        .and_then(|d| probe::cached(d, &boot_id));
    let works = cached.unwrap_or_else(|| {
        let w = probe::accel_works(runner, &opts.qemu, "kvm", scratch);
        if let Some(d) = opts.cache_dir.as_deref().filter(|_| !boot_id.is_empty()) {
            probe::remember(d, &boot_id, w);
        }
        w
    });
    if works {
        Accel::Kvm
    } else {
        tracing::info!("KVM does not work on this host; using TCG");
        Accel::Tcg
    }
}

/// Connects to the console socket while watching for QEMU dying first (bad option, missing
/// file), which would otherwise look like a slow start.
fn connect(process: &mut Spawned, paths: &RunPaths) -> Result<Console, VmError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if paths.console_socket.exists() {
            if let Ok(c) = Console::connect(&paths.console_socket, Duration::ZERO) {
                return Ok(c);
            }
        }
        if let Some(status) = process.try_wait()? {
            return Err(VmError::EarlyExit {
                status: format!("{status}"),
                stderr: std::fs::read_to_string(&paths.qemu_stderr).unwrap_or_default(),
            });
        }
        if Instant::now() >= deadline {
            return Err(Console::connect(&paths.console_socket, Duration::ZERO)
                .err()
                .map(VmError::from)
                .unwrap_or(VmError::EarlyExit {
                    status: "console never came up".into(),
                    stderr: String::new(),
                }));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::spec::Disk;

    fn spec() -> VmSpec {
        VmSpec {
            disks: vec![Disk {
                path: "/img/a.raw".into(),
                format: Default::default(),
                snapshot: false,
                readonly: true,
            }],
            network: Network::User,
            ..VmSpec::default()
        }
    }

    fn pairs(a: &[String]) -> Vec<String> {
        a.windows(2).map(|w| format!("{} {}", w[0], w[1])).collect()
    }

    #[test]
    fn uefi_boots_from_pflash_with_the_runs_own_variables() {
        let paths = RunPaths::new(Path::new("/run/x"), None);
        let a = args(&spec(), &paths, Accel::Kvm, Some(Path::new("/fw/CODE.fd"))).unwrap();
        let p = pairs(&a);
        for want in [
            "-accel kvm",
            "-cpu host",
            "-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd",
            "-drive if=pflash,format=raw,unit=1,file=/run/x/OVMF_VARS.fd",
            "-drive file=/img/a.raw,format=raw,if=virtio,index=0,readonly=on",
            "-netdev user,id=net0",
            "-serial chardev:console",
        ] {
            assert!(p.iter().any(|x| x == want), "missing {want:?} in {a:?}");
        }
        // A UEFI spec without firmware is an error, not a BIOS boot.
        assert!(matches!(
            args(&spec(), &paths, Accel::Tcg, None),
            Err(VmError::NoFirmware { .. })
        ));
    }

    #[test]
    fn firmware_overrides_win_and_missing_firmware_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (code, vars) = (dir.path().join("c.fd"), dir.path().join("v.fd"));
        std::fs::write(&code, b"c").unwrap();
        std::fs::write(&vars, b"v").unwrap();
        let mut s = spec();
        s.firmware_files.ovmf_code = Some(code.clone());
        s.firmware_files.ovmf_vars = Some(vars.clone());
        assert_eq!(find_ovmf(&s).unwrap(), (code, vars));
        s.firmware_files.ovmf_code = Some(dir.path().join("absent.fd"));
        s.firmware_files.ovmf_vars = None;
        assert!(matches!(find_ovmf(&s), Err(VmError::NoFirmware { .. })));
    }

    #[test]
    fn vnic_is_an_illumos_thing() {
        let mut s = spec();
        s.network = Network::Vnic("v0".into());
        let paths = RunPaths::new(Path::new("/r"), None);
        assert!(matches!(
            args(&s, &paths, Accel::Tcg, Some(Path::new("/c"))),
            Err(VmError::Unsupported { .. })
        ));
    }
}
