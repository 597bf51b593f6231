//! Boot environment steps for `pool` templates: `create_be`, `create_dataset`,
//! `make_bootable`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{no_args_step, StepArgs};
use crate::template::check::{Checker, Expander};
use crate::template::model::TargetKind;

/// Create the boot environment `ROOT/<bename>` in the pool and mount it as the image root.
///
/// `ROOT` gets `canmount=off` and `mountpoint=legacy`; the BE gets `canmount=noauto`,
/// `mountpoint=legacy` and the libbe properties `org.opensolaris.libbe:uuid` (random) and
/// `org.opensolaris.libbe:policy=static`. The BE name is the pool's `bename`, or a random
/// one: beadm cannot take an altroot, so BE names on the build host and in the image share
/// one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBe {}

impl CreateBe {
    pub const NAME: &'static str = "create_be";
}
no_args_step!(CreateBe, targets = &[TargetKind::Pool]);

/// Create a dataset in the pool, e.g. `export/home`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDataset {
    /// Dataset name relative to the pool (`export/home`).
    pub name: String,
    /// Mountpoint property to set, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
}

impl StepArgs for CreateDataset {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        c.target_is(&[TargetKind::Pool], "create_dataset");
        if self.name.is_empty() || self.name.starts_with('/') || self.name.contains('@') {
            c.error(
                "name",
                format!("invalid dataset name {:?}: expected a name relative to the pool such as \"export/home\"", self.name),
            );
        }
        if let Some(mp) = &self.mountpoint {
            if !(mp.starts_with('/') || mp == "legacy" || mp == "none") {
                c.error(
                    "mountpoint",
                    format!("invalid mountpoint {mp:?}: expected an absolute path, \"legacy\" or \"none\""),
                );
            }
        }
    }
}

/// Make the pool bootable from the boot environment: set `bootfs`, activate the BE and
/// install the boot loader and boot archive into the image.
///
/// On Linux hosts `bootfs` is set, the image's own BIOS boot blocks (`/boot/pmbr`,
/// `/boot/gptzfsboot`) are written as illumos `installboot` writes them and its UEFI
/// loader is placed into the EFI system partition; the boot archive and `beadm activate`
/// need an illumos host (see docs/images.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MakeBootable {}

impl MakeBootable {
    pub const NAME: &'static str = "make_bootable";
}
no_args_step!(MakeBootable, targets = &[TargetKind::Pool]);

use super::exec::{Execute, PoolCx, StepCx, StepError};
use crate::build::bootblock;
use crate::build::device::{self, System};
use crate::host::{Host, Tool};
use zfs::CreateOptions;

fn pool<'a>(cx: &StepCx<'a>, step: &str) -> Result<&'a PoolCx, StepError> {
    cx.pool
        .ok_or_else(|| StepError::msg(format!("{step} only runs in a pool template")))
}

fn system<'a>(cx: &StepCx<'a>) -> System<'a> {
    System {
        host: cx.host,
        runner: cx.runner,
        zfs: cx.zfs,
    }
}

/// Creates (or, when run again, keeps) a file system with properties. The create is tried
/// first and an existing file system given the properties instead, so a fresh pool costs
/// one `zfs` process per file system (each counts when the builder runs emulated).
/// Returns whether it was created.
fn ensure_fs(cx: &StepCx, name: &str, props: &[(&str, &str)]) -> Result<bool, StepError> {
    let mut o = CreateOptions::new();
    for (k, v) in props {
        o = o.prop(*k, *v);
    }
    match cx.zfs.create(name, &o) {
        Ok(()) => Ok(true),
        Err(zfs::ZfsError::AlreadyExists { .. }) => {
            for (k, v) in props {
                cx.zfs.set(name, k, v)?;
            }
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

impl Execute for CreateBe {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let p = pool(cx, "create_be")?;
        let root_ds = format!("{}/ROOT", p.temp_name);
        let be = format!("{root_ds}/{}", p.bename);
        ensure_fs(
            cx,
            &root_ds,
            &[("canmount", "off"), ("mountpoint", "legacy")],
        )?;
        let mut o = CreateOptions::new();
        let uuid = crate::build::gpt::random_uuid();
        for (k, v) in [
            ("canmount", "noauto"),
            ("mountpoint", "legacy"),
            ("org.opensolaris.libbe:uuid", uuid.as_str()),
            ("org.opensolaris.libbe:policy", "static"),
        ] {
            o = o.prop(k, v);
        }
        match cx.zfs.create(&be, &o) {
            Ok(()) => tracing::info!("boot environment {be}: uuid {uuid}"),
            // Run again: the BE keeps its uuid.
            Err(zfs::ZfsError::AlreadyExists { .. }) => {
                ensure_fs(cx, &be, &[("canmount", "noauto"), ("mountpoint", "legacy")])?;
                if cx.zfs.get(&be, "org.opensolaris.libbe:uuid")?.is_none() {
                    cx.zfs.set(&be, "org.opensolaris.libbe:uuid", &uuid)?;
                }
                cx.zfs.set(&be, "org.opensolaris.libbe:policy", "static")?;
            }
            Err(e) => return Err(e.into()),
        }
        let dir = cx.root_path();
        if !device::mounted(cx.host, dir) {
            device::mount_zfs(&system(cx), &be, dir)?;
        }
        Ok(())
    }
}

impl Execute for CreateDataset {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let p = pool(cx, "create_dataset")?;
        let ds = format!("{}/{}", p.temp_name, self.name);
        match &self.mountpoint {
            Some(mp) => ensure_fs(cx, &ds, &[("mountpoint", mp)])?,
            None => ensure_fs(cx, &ds, &[])?,
        };
        Ok(())
    }
}

impl Execute for MakeBootable {
    /// The EFI loaders are staged in the scratch directory for mcopy.
    fn uses_scratch(&self) -> bool {
        true
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let p = pool(cx, "make_bootable")?;
        let be = format!("{}/ROOT/{}", p.temp_name, p.bename);
        cx.zfs.pool_set(&p.temp_name, "bootfs", &be)?;
        match cx.host {
            Host::Illumos => {
                let root = cx.root_path().to_path_buf();
                cx.run(cx.cmd(Tool::Beadm).args(["activate", &p.bename]))?;
                cx.run(
                    cx.cmd(Tool::Bootadm)
                        .args(["install-bootloader", "-M", "-f", "-P", &p.temp_name, "-R"])
                        .arg(&root),
                )?;
                cx.run(
                    cx.cmd(Tool::Bootadm)
                        .args(["update-archive", "-f", "-R"])
                        .arg(&root),
                )?;
                Ok(())
            }
            Host::Linux => linux_bootable(cx, p),
        }
    }
}

/// What `installboot -b /boot` and `bootadm` would do, done without illumos tools:
/// `bootfs`; the image's BIOS boot blocks (`/boot/pmbr` as MBR and partition boot record,
/// `/boot/gptzfsboot` in the ZFS partition's boot area, see [`bootblock`]) when the image
/// has them; a FAT file system on the EFI system partition holding the image's own UEFI
/// loader as the removable-media boot file. Not done (they need illumos tools): the boot
/// archive (`bootadm update-archive`) and `beadm activate` (bootfs is set instead).
fn linux_bootable(cx: &StepCx, p: &PoolCx) -> Result<(), StepError> {
    let mut done = vec![format!("bootfs={}/ROOT/{}", p.name, p.bename)];
    let mut not_done = vec![
        "boot archive (bootadm update-archive needs illumos: the image must carry \
         /platform/i86pc/amd64/boot_archive)"
            .to_string(),
        "beadm activate (needs illumos; bootfs is set instead)".to_string(),
    ];
    if cx
        .root
        .try_metadata("platform/i86pc/amd64/boot_archive")?
        .is_none()
    {
        tracing::warn!(
            "make_bootable: the image has no /platform/i86pc/amd64/boot_archive and none can \
             be made on this host: the loader will find no kernel archive to boot"
        );
    }
    let partition = match &p.disk {
        Some(disk) => Some(bootblock::zfs_partition(disk)?),
        None => None,
    };

    match (bootblock::BootFiles::read(cx.root)?, &p.disk) {
        (Some(files), Some(disk)) => {
            let r = bootblock::install(disk, &files, bootblock::random_uuid())?;
            tracing::info!("make_bootable: BIOS boot blocks: {}", r.describe());
            done.push(format!(
                "BIOS boot blocks (/boot/pmbr in the MBR and the ZFS partition's first \
                 sector, /boot/gptzfsboot at LBA {})",
                r.stage2_lba
            ));
        }
        (Some(_), None) => {
            not_done.push("BIOS boot blocks (the pool has no partition table: label is off)".into())
        }
        (None, _) => not_done
            .push("BIOS boot blocks (the image has no /boot/pmbr and /boot/gptzfsboot)".into()),
    }

    match &p.esp {
        Some(esp) => {
            let lba = partition.map(|z| z.first_lba);
            let installed = install_efi_loaders(cx, esp, lba)?;
            done.push(format!(
                "UEFI loader in the EFI system partition ({})",
                installed.join(", ")
            ));
        }
        None => not_done.push("UEFI loader (no EFI system partition: uefi is off)".into()),
    }
    tracing::info!("make_bootable on Linux: done: {}", done.join("; "));
    tracing::warn!("make_bootable on Linux: NOT done: {}", not_done.join("; "));
    Ok(())
}

/// The image's `/boot/loader64.efi` (and `loader32.efi`) as `/EFI/BOOT/BOOTX64.EFI`
/// (`BOOTIA32.EFI`) on a new FAT32 file system on `esp`. A loader carrying the loader's
/// multiboot header gets the ZFS partition's LBA in it, as installboot does.
fn install_efi_loaders(
    cx: &StepCx,
    esp: &str,
    partition_lba: Option<u64>,
) -> Result<Vec<String>, StepError> {
    let loaders = [
        ("boot/loader64.efi", "BOOTX64.EFI"),
        ("boot/loader32.efi", "BOOTIA32.EFI"),
    ];
    let mut found = Vec::new();
    for (src, dst) in loaders {
        match cx.root.read(src) {
            Ok(bytes) => found.push((src, dst, bytes)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    if found.is_empty() {
        return Err(StepError::msg(
            "make_bootable: the image has no /boot/loader64.efi to install into the EFI system partition",
        ));
    }
    cx.run(cx.cmd(Tool::MkfsVfat).args(["-F", "32"]).arg(esp))?;
    cx.run(cx.cmd(Tool::Mmd).args(["-i", esp, "::/EFI", "::/EFI/BOOT"]))?;
    let mut installed = Vec::new();
    for (src, dst, mut bytes) in found {
        let patched = partition_lba
            .map(|lba| bootblock::patch_efi_loader(&mut bytes, lba))
            .unwrap_or(false);
        let staged = cx.tmp_dir.join(dst);
        std::fs::write(&staged, bytes).map_err(|e| StepError::host(&staged, e))?;
        cx.run(
            cx.cmd(Tool::Mcopy)
                .args(["-o", "-i", esp])
                .arg(&staged)
                .arg(format!("::/EFI/BOOT/{dst}")),
        )?;
        let how = if patched {
            " (ZFS partition LBA recorded in its multiboot header)"
        } else {
            ""
        };
        tracing::info!("make_bootable: /{src} -> ESP /EFI/BOOT/{dst}{how}");
        installed.push(format!("/{src} as /EFI/BOOT/{dst}{how}"));
    }
    Ok(installed)
}
