//! File-backed block devices and mounts: illumos lofi, Linux loop devices, and the mount
//! table, so that builds attach, detach and unmount through one place and cleanup can ask
//! whether something is still there before undoing it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runner::{Cmd, Runner};

use crate::host::{Host, Tool};

/// How long device and mount commands may take before they are killed.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(120);

/// The system a build manipulates: ZFS, commands, and which platform they run on.
pub struct System<'a> {
    pub host: Host,
    pub runner: &'a dyn Runner,
    pub zfs: &'a dyn zfs::Zfs,
}

impl System<'_> {
    pub fn cmd(&self, tool: Tool) -> Cmd {
        Cmd::new(self.host.tool(tool)).timeout(DEVICE_TIMEOUT)
    }
}

/// A file attached as a block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The whole-disk device: illumos `/dev/dsk/cXtYdZ` (labelled lofi, without a
    /// partition suffix, as zpool wants a whole disk) or `/dev/lofi/N`; Linux `/dev/loopN`.
    pub disk: String,
    /// The raw whole-disk device on illumos (`/dev/rdsk/cXtYdZp0` or `/dev/rlofi/N`), the
    /// same as `disk` on Linux.
    pub raw: String,
}

impl Device {
    /// The device of partition `n` (1-based GPT entry) on Linux (`/dev/loop0p2`).
    pub fn partition(&self, n: u32) -> String {
        format!("{}p{n}", self.disk)
    }

    /// The raw node of fdisk partition `n` of a labelled illumos lofi device
    /// (`/dev/rdsk/cXtYdZp2`); `None` for a device without a `p0` raw node.
    pub fn raw_partition(&self, n: u32) -> Option<String> {
        self.raw.strip_suffix("p0").map(|d| format!("{d}p{n}"))
    }

    /// The block node of slice `n` of a labelled illumos lofi device (`/dev/dsk/cXtYdZs0`).
    pub fn slice(&self, n: u32) -> String {
        format!("{}s{n}", self.disk)
    }
}

/// Why `lofiadm -a` did not give a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Run(#[from] runner::RunError),
    #[error("lofiadm -a {file} printed {printed:?}, not {expected}")]
    LofiOutput {
        file: PathBuf,
        printed: String,
        expected: &'static str,
    },
}

/// The devices of what `lofiadm [-l] -a FILE` printed.
///
/// illumos lofiadm prints the block node of the new device (`add_mapping()` in
/// usr/src/cmd/lofiadm/main.c prints `make_blkdevname()`: the kernel's raw path with its
/// first `r` removed, plus `p0` for a labelled device), so a labelled device is
/// `/dev/dsk/cXtYdZp0` and an unlabelled one `/dev/lofi/N`. The raw form
/// (`/dev/rdsk/cXtYdZp0`) is accepted too. Anything else is refused with the output quoted.
pub fn parse_lofi(file: &Path, printed: &str, labelled: bool) -> Result<Device, DeviceError> {
    let printed = printed.trim();
    let bad = |expected| DeviceError::LofiOutput {
        file: file.to_path_buf(),
        printed: printed.to_string(),
        expected,
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    };
    if labelled {
        let expected = "a labelled device /dev/dsk/cXtYdZp0";
        let rest = printed
            .strip_prefix("/dev/dsk/")
            .or_else(|| printed.strip_prefix("/dev/rdsk/"))
            .ok_or_else(|| bad(expected))?;
        let disk = rest.strip_suffix("p0").ok_or_else(|| bad(expected))?;
        if !plain(disk) {
            return Err(bad(expected));
        }
        Ok(Device {
            disk: format!("/dev/dsk/{disk}"),
            raw: format!("/dev/rdsk/{disk}p0"),
        })
    } else {
        let expected = "an unlabelled device /dev/lofi/N";
        let n = printed
            .strip_prefix("/dev/lofi/")
            .or_else(|| printed.strip_prefix("/dev/rlofi/"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(expected))?;
        Ok(Device {
            disk: format!("/dev/lofi/{n}"),
            raw: format!("/dev/rlofi/{n}"),
        })
    }
}

/// Attaches `file`: illumos `lofiadm [-l] -a FILE`, Linux `losetup -f --show -P FILE`.
/// `labelled` asks lofi for a device with partitions and slices; loop devices always scan
/// the partition table (`-P`).
pub fn attach(sys: &System, file: &Path, labelled: bool) -> Result<Device, DeviceError> {
    attach_with(sys, file, labelled, false)
}

/// [`attach`] read-only: illumos `lofiadm -r [-l] -a FILE`, Linux `losetup -f --show -P -r
/// FILE`.
pub fn attach_readonly(sys: &System, file: &Path, labelled: bool) -> Result<Device, DeviceError> {
    attach_with(sys, file, labelled, true)
}

fn attach_with(
    sys: &System,
    file: &Path,
    labelled: bool,
    readonly: bool,
) -> Result<Device, DeviceError> {
    match sys.host {
        Host::Illumos => {
            // `-a` takes the file as its argument, so every flag comes before it
            // (lofiadm's getopt string is "a:c:Cd:efk:lrs:T:U").
            let mut cmd = sys.cmd(Tool::Lofiadm);
            if readonly {
                cmd = cmd.arg("-r");
            }
            if labelled {
                cmd = cmd.arg("-l");
            }
            let out = sys.runner.run(&cmd.arg("-a").arg(file))?;
            parse_lofi(file, &out.stdout_str(), labelled)
        }
        Host::Linux => {
            let mut cmd = sys.cmd(Tool::Losetup).args(["-f", "--show", "-P"]);
            if readonly {
                cmd = cmd.arg("-r");
            }
            let out = sys.runner.run(&cmd.arg(file))?;
            let dev = out.stdout_str().trim().to_string();
            Ok(Device {
                disk: dev.clone(),
                raw: dev,
            })
        }
    }
}

/// Detaches every device backed by `file`; a file with none is fine.
pub fn detach(sys: &System, file: &Path) -> Result<(), runner::RunError> {
    match sys.host {
        Host::Illumos => {
            // `lofiadm FILE` prints the device, or fails when there is none.
            let probe = sys.runner.output(&sys.cmd(Tool::Lofiadm).arg(file))?;
            if probe.success() {
                sys.runner
                    .run(&sys.cmd(Tool::Lofiadm).arg("-d").arg(file))?;
            }
            Ok(())
        }
        Host::Linux => {
            for dev in attached(sys, file)? {
                sys.runner
                    .run(&sys.cmd(Tool::Losetup).arg("-d").arg(&dev))?;
            }
            Ok(())
        }
    }
}

/// Detaches the device `attach` gave for `file`, without asking which one it is:
/// illumos `lofiadm -d FILE`, Linux `losetup -d DEVICE`.
pub fn detach_device(sys: &System, file: &Path, dev: &Device) -> Result<(), runner::RunError> {
    let cmd = match sys.host {
        Host::Illumos => sys.cmd(Tool::Lofiadm).arg("-d").arg(file),
        Host::Linux => sys.cmd(Tool::Losetup).arg("-d").arg(&dev.disk),
    };
    sys.runner.run(&cmd)?;
    Ok(())
}

/// The loop devices backed by `file` (Linux).
pub fn attached(sys: &System, file: &Path) -> Result<Vec<String>, runner::RunError> {
    let out = sys.runner.run(
        &sys.cmd(Tool::Losetup)
            .args(["--noheadings", "--output", "NAME", "--associated"])
            .arg(file),
    )?;
    Ok(out
        .stdout_str()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Whether a file system is mounted at `path`, from the kernel's table (Linux
/// `/proc/self/mounts`, illumos `/etc/mnttab`; both have the mount point second).
pub fn mounted(host: Host, path: &Path) -> bool {
    let table = match host {
        Host::Illumos => "/etc/mnttab",
        Host::Linux => "/proc/self/mounts",
    };
    let want = path.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string(table)
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .any(|m| m == want)
        })
        .unwrap_or(false)
}

/// Unmounts `path` if something is mounted there, forcing it when a plain unmount fails.
pub fn unmount(sys: &System, path: &Path) -> Result<(), runner::RunError> {
    if !mounted(sys.host, path) {
        return Ok(());
    }
    let plain = sys.runner.output(&sys.cmd(Tool::Umount).arg(path))?;
    if plain.success() || !mounted(sys.host, path) {
        return Ok(());
    }
    sys.runner.run(&sys.cmd(Tool::Umount).arg("-f").arg(path))?;
    Ok(())
}

/// Mounts a ZFS file system with `mountpoint=legacy` at `dir`: illumos `mount -F zfs`,
/// Linux `mount -t zfs`. (OpenZFS' mount helper refuses `-o zfsutil` for a legacy
/// mountpoint: that option means "called by `zfs mount`", which legacy file systems are not.)
pub fn mount_zfs(sys: &System, dataset: &str, dir: &Path) -> Result<(), runner::RunError> {
    let cmd = match sys.host {
        Host::Illumos => sys.cmd(Tool::Mount).args(["-F", "zfs"]),
        Host::Linux => sys.cmd(Tool::Mount).args(["-t", "zfs"]),
    };
    sys.runner.run(&cmd.arg(dataset).arg(dir))?;
    Ok(())
}

/// A path beside `p` with `suffix` appended to its name.
pub fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(printed: &str, labelled: bool) -> Result<Device, DeviceError> {
        parse_lofi(Path::new("/w/lofi.raw"), printed, labelled)
    }

    #[test]
    fn a_labelled_lofi_prints_its_block_p0_node() {
        // illumos lofiadm add_mapping() prints make_blkdevname(): the block path with
        // "p0" for a labelled device (usr/src/cmd/lofiadm/main.c).
        let d = parse("/dev/dsk/c2t1d0p0\n", true).unwrap();
        assert_eq!(d.disk, "/dev/dsk/c2t1d0");
        assert_eq!(d.raw, "/dev/rdsk/c2t1d0p0");
        assert_eq!(d.raw_partition(2).as_deref(), Some("/dev/rdsk/c2t1d0p2"));
        assert_eq!(d.slice(1), "/dev/dsk/c2t1d0s1");
        // The raw form is accepted too.
        assert_eq!(parse("/dev/rdsk/c2t1d0p0", true).unwrap(), d);
    }

    #[test]
    fn an_unlabelled_lofi_prints_dev_lofi_n() {
        // lofiadm(8) EXAMPLES: "# lofiadm -a /home/mike_s/RH6.0/sparc.iso" prints
        // "/dev/lofi/1".
        let d = parse("/dev/lofi/1\n", false).unwrap();
        assert_eq!(d.disk, "/dev/lofi/1");
        assert_eq!(d.raw, "/dev/rlofi/1");
        assert_eq!(d.raw_partition(2), None);
    }

    #[test]
    fn anything_else_is_refused_with_the_output_quoted() {
        for (printed, labelled) in [
            ("/dev/dsk/c2t1d0", true),
            ("/dev/dsk/c2t1d0s0", true),
            ("/dev/lofi/1", true),
            ("unknown", true),
            ("", true),
            ("/dev/dsk/../c2t1d0p0", true),
            ("/dev/dsk/c2t1d0p0", false),
            ("/dev/lofi/x", false),
        ] {
            let e = parse(printed, labelled).unwrap_err().to_string();
            assert!(
                e.starts_with("lofiadm -a /w/lofi.raw printed ")
                    && e.contains(&format!("{printed:?}")),
                "{printed}: {e}"
            );
        }
    }
}
