//! The build host: which platform we run on, decided at run time, and where its tools are.
//!
//! Both platforms are compiled and tested everywhere; nothing here uses `cfg(target_os)`,
//! so the illumos command lines are pinned by tests on Linux too.

use std::path::Path;

/// The platform the build runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Host {
    Illumos,
    Linux,
}

/// External tools the builder may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Zfs,
    Zpool,
    Pkg,
    Svccfg,
    Devfsadm,
    Beadm,
    Bootadm,
    Mount,
    Umount,
    /// illumos file-backed block devices.
    Lofiadm,
    /// Linux loop devices.
    Losetup,
    /// illumos `mkfs -F pcfs`.
    Mkfs,
    /// Linux FAT file systems.
    MkfsVfat,
    /// illumos UFS.
    Newfs,
    /// illumos ISO 9660 images.
    Mkisofs,
    /// Linux ISO 9660 images (`xorriso -as mkisofs`).
    Xorriso,
    /// illumos MBR editing for hybrid ISOs.
    Fdisk,
    /// illumos El Torito catalogue listing for hybrid ISOs.
    Etdump,
    /// illumos boot blocks.
    Installboot,
    QemuImg,
    Df,
    /// mtools, to write FAT file systems without mounting them.
    Mmd,
    Mcopy,
    Zonecfg,
    Zoneadm,
    Zlogin,
    /// `shell`: a command inside a stage's tree.
    Chroot,
}

impl Host {
    /// The running system: illumos when `uname -s` says SunOS, Linux otherwise.
    pub fn detect() -> Host {
        if rustix::system::uname().sysname().to_bytes() == b"SunOS" {
            Host::Illumos
        } else {
            Host::Linux
        }
    }

    /// Absolute path of `tool` on this platform. On illumos these are the paths the
    /// reference image-builder uses (the root file system's `/sbin` copies of the ZFS and
    /// boot tools, which work before `/usr` is mounted).
    pub fn tool(self, tool: Tool) -> &'static str {
        match (self, tool) {
            (Host::Illumos, Tool::Zfs) => "/sbin/zfs",
            (Host::Illumos, Tool::Zpool) => "/sbin/zpool",
            (Host::Illumos, Tool::Mount) => "/sbin/mount",
            (Host::Illumos, Tool::Umount) => "/sbin/umount",
            (Host::Linux, Tool::Zfs) => "/usr/sbin/zfs",
            (Host::Linux, Tool::Zpool) => "/usr/sbin/zpool",
            (Host::Linux, Tool::Mount) => "/usr/bin/mount",
            (Host::Linux, Tool::Umount) => "/usr/bin/umount",
            (Host::Illumos, Tool::Df) => "/usr/bin/df",
            (Host::Linux, Tool::Df) => "/usr/bin/df",
            (_, Tool::Lofiadm) => "/usr/sbin/lofiadm",
            (_, Tool::Losetup) => "/usr/sbin/losetup",
            (_, Tool::Mkfs) => "/usr/sbin/mkfs",
            (_, Tool::MkfsVfat) => "/usr/sbin/mkfs.vfat",
            (_, Tool::Newfs) => "/usr/sbin/newfs",
            (_, Tool::Mkisofs) => "/usr/bin/mkisofs",
            (_, Tool::Xorriso) => "/usr/bin/xorriso",
            (_, Tool::Fdisk) => "/usr/sbin/fdisk",
            (_, Tool::Etdump) => "/usr/bin/etdump",
            (_, Tool::Installboot) => "/usr/sbin/installboot",
            (_, Tool::QemuImg) => "/usr/bin/qemu-img",
            (_, Tool::Mmd) => "/usr/bin/mmd",
            (_, Tool::Mcopy) => "/usr/bin/mcopy",
            (_, Tool::Pkg) => "/usr/bin/pkg",
            (_, Tool::Svccfg) => "/usr/sbin/svccfg",
            (_, Tool::Devfsadm) => "/usr/sbin/devfsadm",
            (_, Tool::Beadm) => "/sbin/beadm",
            (_, Tool::Bootadm) => "/sbin/bootadm",
            (_, Tool::Zonecfg) => "/usr/sbin/zonecfg",
            (_, Tool::Zoneadm) => "/usr/sbin/zoneadm",
            (_, Tool::Zlogin) => "/usr/sbin/zlogin",
            // chroot(8) on illumos (usr/src/cmd/chroot); coreutils' chroot(8) on Linux.
            (_, Tool::Chroot) => "/usr/sbin/chroot",
        }
    }

    /// Whether `tool` can run here: present at its path and executable.
    pub fn has(self, tool: Tool) -> bool {
        is_executable(Path::new(self.tool(tool)))
    }

    pub fn name(self) -> &'static str {
        match self {
            Host::Illumos => "illumos",
            Host::Linux => "Linux",
        }
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn illumos_uses_the_root_file_system_tools() {
        assert_eq!(Host::Illumos.tool(Tool::Zfs), "/sbin/zfs");
        assert_eq!(Host::Illumos.tool(Tool::Zpool), "/sbin/zpool");
        assert_eq!(Host::Illumos.tool(Tool::Pkg), "/usr/bin/pkg");
        assert_eq!(Host::Linux.tool(Tool::Zfs), "/usr/sbin/zfs");
    }
}
