//! `pcfs` and `ufs` builds: a file system image of `size` MiB, as the reference's
//! `run_build_fs`.
//!
//! illumos: an unlabelled lofi device, `mkfs -F pcfs` or `newfs`, the file system mounted
//! at the image root while the steps run. Linux (pcfs only): the steps fill a staging tree,
//! `mkfs.vfat` formats the image file and mtools copies the tree in, with no kernel FAT
//! driver or mount involved. UFS needs illumos.

use std::path::{Path, PathBuf};

use runner::Cmd;

use super::device::{self, Device, DEVICE_TIMEOUT};
use super::error::BuildError;
use super::journal::Undo;
use super::layout::ImageFile;
use super::work::Work;
use crate::host::{Host, Tool};
use crate::template::model::{Pcfs, Ufs};

fn cmd(w: &Work, tool: Tool) -> Cmd {
    Cmd::new(w.env.host.tool(tool)).timeout(DEVICE_TIMEOUT)
}

fn run(w: &Work, c: Cmd) -> Result<runner::Output, BuildError> {
    Ok(w.env.runner.run(&c)?)
}

/// A fresh image file of `mib` MiB in the work directory.
fn image_file(w: &Work, name: &str, mib: u64) -> Result<PathBuf, BuildError> {
    let image = w.work_dir.join(name);
    device::detach(&w.system(), &image)?;
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(mib << 20))
        .map_err(|e| BuildError::io(&image, e))?;
    Ok(image)
}

/// The illumos sequence shared by pcfs and ufs: attach, make the file system (`mkfs`
/// receives the lofi device), mount it at the image root, run the steps, report, unmount,
/// detach.
fn illumos_fs(
    w: &mut Work,
    image: &Path,
    fstype: &str,
    mkfs: impl FnOnce(&Device) -> Cmd,
    mount_opts: &str,
) -> Result<(), BuildError> {
    let root = w.work_dir.join("a");
    std::fs::create_dir_all(&root).map_err(|e| BuildError::io(&root, e))?;
    let detach = w.journal.push(Undo::DetachDevice {
        file: image.to_path_buf(),
    })?;
    let dev = device::attach(&w.system(), image, false)?;
    // mkfs and newfs ask for confirmation on a terminal; answer for them.
    run(w, mkfs(&dev).stdin("y\n"))?;
    let unmount = w.journal.push(Undo::Unmount { path: root.clone() })?;
    run(
        w,
        cmd(w, Tool::Mount)
            .args(["-F", fstype, "-o", mount_opts])
            .arg(&dev.disk)
            .arg(&root),
    )?;
    w.run_steps(&root, None)?;
    if fstype == "ufs" {
        run(w, cmd(w, Tool::Df).args(["-o", "i"]).arg(&root))?;
    }
    run(w, cmd(w, Tool::Df).arg("-h").arg(&root))?;
    run(w, cmd(w, Tool::Umount).arg(&root))?;
    w.journal.done(unmount)?;
    device::detach(&w.system(), image)?;
    w.journal.done(detach)?;
    Ok(())
}

pub(super) fn build_pcfs(w: &mut Work, p: &Pcfs) -> Result<Vec<(PathBuf, String)>, BuildError> {
    let image = image_file(w, "lofi.pcfs", p.size)?;
    match w.env.host {
        Host::Illumos => {
            // With nofdisk, mkfs wants the size in 512-byte sectors.
            let opts = format!("b={},nofdisk,size={}", p.label, p.size * 1024 * 1024 / 512);
            illumos_fs(
                w,
                &image,
                "pcfs",
                |d| {
                    Cmd::new(Host::Illumos.tool(Tool::Mkfs))
                        .timeout(DEVICE_TIMEOUT)
                        .args(["-F", "pcfs", "-o", &opts])
                        .arg(&d.raw)
                },
                "noatime",
            )?;
        }
        Host::Linux => {
            let stage = w.tmp_dir.join("pcfs-root");
            std::fs::create_dir_all(&stage).map_err(|e| BuildError::io(&stage, e))?;
            w.run_steps(&stage, None)?;
            run(
                w,
                cmd(w, Tool::MkfsVfat)
                    .args(["--mbr=n", "-n", &p.label])
                    .arg(&image),
            )?;
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&stage)
                .map_err(|e| BuildError::io(&stage, e))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect();
            entries.sort();
            if !entries.is_empty() {
                run(
                    w,
                    cmd(w, Tool::Mcopy)
                        .args(["-s", "-p", "-Q", "-i"])
                        .arg(&image)
                        .args(&entries)
                        .arg("::/"),
                )?;
            }
        }
    }
    Ok(vec![(image, ImageFile::Pcfs.name(&w.stem()))])
}

pub(super) fn build_ufs(w: &mut Work, u: &Ufs) -> Result<Vec<(PathBuf, String)>, BuildError> {
    let image = image_file(w, "lofi.ufs", u.size)?;
    let density = u.inode_density.to_string();
    illumos_fs(
        w,
        &image,
        "ufs",
        |d| {
            Cmd::new(Host::Illumos.tool(Tool::Newfs))
                .timeout(DEVICE_TIMEOUT)
                .args(["-o", "space", "-m", "0", "-i", &density, "-b", "4096"])
                .arg(&d.disk)
        },
        "nologging,noatime",
    )?;
    Ok(vec![(image, ImageFile::Ufs.name(&w.stem()))])
}
