//! `iso` builds: an ISO 9660 image of a tree the steps fill, as the reference's
//! `run_build_iso`: `mkisofs` with Rock Ridge, El Torito BIOS and/or UEFI boot entries, and
//! optionally a hybrid MBR so the image also boots from a USB disk.
//!
//! Linux uses `xorriso -as mkisofs` with the same flags. There the hybrid image gets its
//! MBR/GPT entry for the EFI system image from xorriso (`-isohybrid-gpt-basdat`, UEFI USB
//! boot); the BIOS USB boot blocks need illumos `installboot` and are not written.

use std::path::PathBuf;

use runner::Cmd;

use super::device::{self, DEVICE_TIMEOUT};
use super::error::BuildError;
use super::journal::Undo;
use super::layout::ImageFile;
use super::work::Work;
use crate::host::{Host, Tool};
use crate::template::model::Iso;

fn run(w: &Work, c: Cmd) -> Result<runner::Output, BuildError> {
    Ok(w.env.runner.run(&c.timeout(DEVICE_TIMEOUT * 10))?)
}

/// The reference's `mkisofs` arguments, before `-o`.
pub fn mkisofs_args(iso: &Iso) -> Vec<String> {
    let mut a: Vec<String> = [
        "-N",
        "-l",
        "-R",
        "-U",
        "-d",
        "-D",
        "-c",
        ".catalog",
        "-allow-multidot",
        "-no-iso-translate",
        "-cache-inodes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(v) = &iso.volume_id {
        a.extend(["-V".into(), v.clone()]);
    }
    if let Some(b) = &iso.boot_bios {
        a.extend(
            ["-eltorito-boot", b, "-no-emul-boot", "-boot-info-table"]
                .iter()
                .map(|s| s.to_string()),
        );
    }
    if let Some(u) = &iso.boot_uefi {
        if iso.boot_bios.is_some() {
            a.push("-eltorito-alt-boot".into());
        }
        a.extend(
            [
                "-eltorito-platform",
                "efi",
                "-eltorito-boot",
                u,
                "-no-emul-boot",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
    }
    a
}

pub(super) fn build(w: &mut Work, iso: &Iso) -> Result<Vec<(PathBuf, String)>, BuildError> {
    if iso.hybrid.is_some() && iso.boot_uefi.is_none() {
        // installboot needs a partition with a file system it knows: the ESP image.
        return Err(BuildError::HybridWithoutUefi);
    }
    let proto = w.tmp_dir.join("proto");
    std::fs::create_dir_all(&proto).map_err(|e| BuildError::io(&proto, e))?;
    w.run_steps(&proto, None)?;
    let image = w.work_dir.join("output.iso");
    let host = w.env.host;
    let mut args = mkisofs_args(iso);
    let tool = match host {
        Host::Illumos => Tool::Mkisofs,
        Host::Linux => {
            args.insert(0, "mkisofs".into());
            args.insert(0, "-as".into());
            if iso.hybrid.is_some() {
                args.push("-isohybrid-gpt-basdat".into());
                tracing::warn!(
                    "hybrid ISO on Linux: UEFI USB boot only; the BIOS boot blocks need illumos installboot"
                );
            }
            Tool::Xorriso
        }
    };
    run(
        w,
        Cmd::new(host.tool(tool))
            .args(&args)
            .arg("-o")
            .arg(&image)
            .arg(&proto),
    )?;
    if let (Some(h), Host::Illumos) = (&iso.hybrid, host) {
        let detach = w.journal.push(Undo::DetachDevice {
            file: image.clone(),
        })?;
        let dev = device::attach(&w.system(), &image, true)?;
        // An x86 boot partition (190) from sector 3 to 63 for installboot's stage2; the ISO
        // data starts at sector 64.
        fdisk(w, &dev.raw, 190, 3, 60)?;
        let (start, sectors) = esp_entry(w, &image)?;
        fdisk(w, &dev.raw, 239, start, sectors)?;
        // installboot wants a partition with a file system it recognises: the ESP, p2.
        let p2 = dev
            .raw_partition(2)
            .ok_or_else(|| BuildError::LofiPath(dev.raw.clone()))?;
        // The boot blocks are the image's: read inside the tree (an absolute path or a
        // symlink never leads to the build host's), handed to installboot as copies.
        let stage1 = boot_block(w, &proto, "stage1", &h.stage1)?;
        let stage2 = boot_block(w, &proto, "stage2", &h.stage2)?;
        run(
            w,
            Cmd::new(host.tool(Tool::Installboot))
                .arg("-fm")
                .arg(&stage1)
                .arg(&stage2)
                .arg(p2),
        )?;
        device::detach(&w.system(), &image)?;
        w.journal.done(detach)?;
    }
    Ok(vec![(image, ImageFile::Iso.name(&w.stem()))])
}

/// Copies the image file `path` (`iso.hybrid.FIELD`, resolved inside the image tree
/// `proto` as the image sees it) to the build's scratch directory; returns the copy.
fn boot_block(
    w: &Work,
    proto: &std::path::Path,
    field: &str,
    path: &str,
) -> Result<PathBuf, BuildError> {
    let root = super::open_root(proto, "image")?;
    let bad = |why: String| BuildError::BootBlock {
        field: field.to_string(),
        path: path.to_string(),
        why,
    };
    let mut from = root.open_read(path).map_err(|e| bad(e.to_string()))?;
    let meta = from.metadata().map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file in the image".into()));
    }
    let copy = w.tmp_dir.join(format!("installboot.{field}"));
    let mut to = std::fs::File::create(&copy).map_err(|e| BuildError::io(&copy, e))?;
    std::io::copy(&mut from, &mut to).map_err(|e| BuildError::io(&copy, e))?;
    Ok(copy)
}

fn fdisk(w: &Work, rdev: &str, id: u8, start: u64, n: u64) -> Result<(), BuildError> {
    run(
        w,
        Cmd::new(w.env.host.tool(Tool::Fdisk))
            .arg("-A")
            .arg(format!("{id}:0:0:0:0:0:0:0:{start}:{n}"))
            .arg(rdev),
    )?;
    Ok(())
}

/// Start and length (512-byte sectors) of the UEFI El Torito image, from `etdump`.
fn esp_entry(w: &Work, image: &std::path::Path) -> Result<(u64, u64), BuildError> {
    let out = run(
        w,
        Cmd::new(w.env.host.tool(Tool::Etdump))
            .args(["--format", "shell"])
            .arg(image),
    )?;
    parse_etdump(&out.stdout_str()).ok_or(BuildError::NoEfiEntry)
}

/// The `efi`/`i386` entry of `etdump --format shell` output: (start, length) in 512-byte
/// sectors (etdump gives the LBA in 2048-byte blocks and the length in 512-byte sectors).
pub fn parse_etdump(text: &str) -> Option<(u64, u64)> {
    for line in text.lines() {
        let kv: Vec<(&str, &str)> = line
            .split(';')
            .filter_map(|t| t.trim().split_once('='))
            .filter_map(|(k, v)| Some((k.strip_prefix("et_")?, v)))
            .collect();
        let get = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        if get("platform") == Some("efi") && get("system") == Some("i386") {
            let lba: u64 = get("lba")?.parse().ok()?;
            let sectors: u64 = get("sectors")?.parse().ok()?;
            return Some((lba * 4, sectors));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etdump_efi_entry() {
        let text = "et_platform=x86;et_system=i386;et_lba=35;et_sectors=4;et_bootable=1;et_media=none\n\
                    et_platform=efi;et_system=i386;et_lba=40;et_sectors=8192;et_bootable=1;et_media=none\n";
        assert_eq!(parse_etdump(text), Some((160, 8192)));
        assert_eq!(
            parse_etdump("et_platform=x86;et_system=i386;et_lba=1;et_sectors=4"),
            None
        );
    }
}
