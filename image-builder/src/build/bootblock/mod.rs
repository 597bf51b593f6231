//! BIOS boot blocks on a GPT disk whose root pool lives on a partition, written the way
//! illumos `installboot -b /boot` (x86, the loader boot blocks) writes them, for hosts
//! that cannot run illumos' `installboot` (Linux).
//!
//! From illumos-gate `usr/src/cmd/boot/installboot/i386/installboot.c` (`probe_gpt`,
//! `prepare_bblocks`, `prepare_stage1`, `prepare_bootblock`, `install_stage1_cb`,
//! `install_stage2_cb`), its `installboot.h`, `usr/src/boot/i386/pmbr/pmbr.s`,
//! `usr/src/cmd/boot/common/mboot_extra.c` and `bblk_einfo.h`, for a GPT disk without an
//! illumos boot partition and a ZFS partition at LBA `S`:
//!
//! | where | what | bytes |
//! |---|---|---|
//! | ZFS partition + 512 KiB (LBA `S + 1024`) | `gptzfsboot`, the 64-bit LBA `S` stored over its multiboot header's `bss_end_addr`/`entry_addr` | the whole file, at most 3.5 MiB |
//! | ZFS partition, sector 0 (the VBR) | `pmbr` with its stage2 fields set: size = `gptzfsboot` bytes / 512, LBA = `S + 1024`, a random disk UUID | 512 |
//! | disk LBA 0 (the MBR) | `pmbr` with stage2 size 1 and LBA `S` (it chain-loads the VBR), the same UUID | 440 (the disk signature, partition table and magic stay) |
//!
//! The boot area after the two front vdev labels (`VDEV_BOOT_OFFSET` = 2 x 256 KiB,
//! `VDEV_BOOT_SIZE` = 3.5 MiB) is reserved for boot code and never used by ZFS. The VBR
//! lies in the first 8 KiB of label 0 (`vl_pad1`), which ZFS reserves for boot blocks and
//! never writes (OpenZFS `vdev_label_init`: "Skip the 1st padding area"); `vl_be`,
//! `vl_vdev_phys` and the uberblocks are untouched. Nothing else is written: every write is
//! checked against the one region it may touch.
//!
//! `installboot` copies the BIOS parameter block (bytes 3-61) and bytes 440-511 from the
//! sector it replaces when that sector ends in 0x55AA; so does this module. The version
//! `installboot` records is the one the boot block carries (its "extended information",
//! EINFO, after the code): without `-u` it is written unchanged, as here.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use gptman::GPT;

use super::gpt::{guid_bytes, TYPE_ZFS};

pub const SECTOR: u64 = 512;
/// `sizeof (vdev_label_t)`.
pub const VDEV_LABEL_SIZE: u64 = 256 << 10;
/// `VDEV_PAD_SIZE`: the first pad of a label (`vl_pad1`), reserved for boot blocks.
pub const VDEV_PAD_SIZE: u64 = 8 << 10;
/// `VDEV_BOOT_OFFSET`: the boot area starts after the two front labels.
pub const BOOT_OFFSET: u64 = 2 * VDEV_LABEL_SIZE;
/// `VDEV_BOOT_SIZE`, installboot's `BBLK_ZFS_BLK_SIZE`: 3.5 MiB.
pub const BOOT_SIZE: u64 = 7 << 19;

/// illumos `V_BOOT` (the GPT "illumos boot" partition).
pub const TYPE_ILLUMOS_BOOT: &str = "6A82CB45-1DD2-11B2-99A6-080020736631";

/// Offsets in a stage1 sector (installboot.h, pmbr.s).
pub const STAGE1_BPB_OFFSET: usize = 0x3;
pub const STAGE1_BPB_SIZE: usize = 0x3b;
pub const STAGE1_STAGE2_SIZE: usize = 0xfc;
pub const STAGE1_STAGE2_LBA: usize = 0xfe;
pub const STAGE1_STAGE2_UUID: usize = 0x106;
/// From here on the MBR holds the disk signature, the partition table and the magic.
pub const STAGE1_SIG: usize = 0x1b8;
const MBR_PARTTBL: usize = 0x1be;
const MBR_MAGIC: usize = 0x1fe;

/// Multiboot header (`sys/multiboot.h`): magic, flags, checksum, header_addr, load_addr,
/// load_end_addr, bss_end_addr, entry_addr.
const MB_MAGIC: u32 = 0x1BAD_B002;
/// `BB_MBOOT_AOUT_FLAG`: installboot only accepts a header with the a.out kludge.
const MB_AOUT_KLUDGE: u32 = 0x0001_0000;
const MB_HEADER_LEN: usize = 32;
const MB_LOAD_ADDR: usize = 16;
const MB_LOAD_END_ADDR: usize = 20;
/// Where installboot stores the boot partition's LBA (64 bits).
pub const MB_BSS_END_ADDR: usize = 24;
/// `MBOOT_SCAN_SIZE`: the header must be in the first 32 KiB.
const MBOOT_SCAN_SIZE: usize = 32 << 10;

const EINFO_MAGIC: &[u8] = b"EXTINFO";
/// `sizeof (bblk_einfo_t)` (packed).
const EINFO_LEN: usize = 54;

#[derive(Debug, thiserror::Error)]
pub enum BootBlockError {
    #[error(
        "the image has {have} but no {missing}: BIOS boot needs both /boot/pmbr and \
         /boot/gptzfsboot"
    )]
    Missing { have: String, missing: String },
    #[error(transparent)]
    Image(#[from] confine::Error),
    #[error("{path}: {detail}")]
    Bad { path: String, detail: String },
    #[error("{path}: {len} bytes do not fit the ZFS boot area ({BOOT_SIZE} bytes, 3.5 MiB)")]
    TooLarge { path: String, len: u64 },
    #[error("{disk}: {detail}")]
    Layout { disk: PathBuf, detail: String },
    #[error("{disk}: {source}")]
    Io {
        disk: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The multiboot header of a loader boot block: its offset, if the first 32 KiB hold one
/// with the right magic and checksum and the a.out kludge flag (`find_multiboot`).
pub fn find_multiboot(buf: &[u8]) -> Option<usize> {
    let boundary = buf.len().min(MBOOT_SCAN_SIZE);
    (0..boundary)
        .step_by(4)
        .take_while(|i| i + MB_HEADER_LEN <= boundary)
        .find(|&i| {
            let magic = u32_at(buf, i);
            let flags = u32_at(buf, i + 4);
            let checksum = u32_at(buf, i + 8);
            magic == MB_MAGIC
                && magic.wrapping_add(flags).wrapping_add(checksum) == 0
                && flags & MB_AOUT_KLUDGE != 0
        })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// `/boot/pmbr`: one sector.
#[derive(Debug, Clone)]
pub struct Stage1(pub [u8; 512]);

impl Stage1 {
    pub fn parse(path: &str, bytes: &[u8]) -> Result<Stage1, BootBlockError> {
        let sector: [u8; 512] = bytes.try_into().map_err(|_| BootBlockError::Bad {
            path: path.into(),
            detail: format!(
                "{} bytes, but the stage1 boot block (pmbr) is one 512-byte sector",
                bytes.len()
            ),
        })?;
        Ok(Stage1(sector))
    }
}

/// `/boot/gptzfsboot`: the loader's BIOS stage2, with its fake multiboot header.
#[derive(Debug, Clone)]
pub struct Stage2 {
    pub bytes: Vec<u8>,
    /// Offset of the multiboot header.
    pub mboot: usize,
    /// `load_end_addr - load_addr`: the code, before the extended information.
    pub code_len: usize,
}

impl Stage2 {
    pub fn parse(path: &str, bytes: Vec<u8>) -> Result<Stage2, BootBlockError> {
        let bad = |detail: String| BootBlockError::Bad {
            path: path.into(),
            detail,
        };
        if bytes.len() as u64 > BOOT_SIZE {
            return Err(BootBlockError::TooLarge {
                path: path.into(),
                len: bytes.len() as u64,
            });
        }
        let mboot = find_multiboot(&bytes).ok_or_else(|| {
            bad(
                "no multiboot header (with the a.out kludge) in the first 32 KiB: not a \
                 loader boot block"
                    .into(),
            )
        })?;
        let load = u32_at(&bytes, mboot + MB_LOAD_ADDR);
        let end = u32_at(&bytes, mboot + MB_LOAD_END_ADDR);
        let code_len = end
            .checked_sub(load)
            .map(|n| n as usize)
            .filter(|n| *n <= bytes.len())
            .ok_or_else(|| {
                bad(format!(
                    "its multiboot header says the code ends at {end:#x} from {load:#x}, \
                     which does not fit the {} bytes of the file",
                    bytes.len()
                ))
            })?;
        Ok(Stage2 {
            bytes,
            mboot,
            code_len,
        })
    }

    /// The version string of the boot block's extended information, when it has a valid
    /// one (`find_einfo`: a size/checksum header, then `EXTINFO`).
    pub fn version(&self) -> Option<String> {
        let b = &self.bytes;
        let extra = self.code_len.checked_add(7)? & !7;
        let hdr = b.get(extra..extra.checked_add(8)?)?;
        let size = u32_at(hdr, 0) as usize;
        let checksum = u32_at(hdr, 4);
        let body = b.get(extra + 8..(extra + 8).checked_add(size)?)?;
        let sum = body.chunks(4).fold(0u32, |s, c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            s.wrapping_add(u32::from_le_bytes(w))
        });
        if sum.wrapping_neg() != checksum || body.len() < EINFO_LEN {
            return None;
        }
        if &body[..EINFO_MAGIC.len()] != EINFO_MAGIC {
            return None;
        }
        let str_off = u32_at(body, 9) as usize;
        let str_size = u16_at(body, 13) as usize;
        let s = body.get(str_off..str_off.checked_add(str_size)?)?;
        Some(
            String::from_utf8_lossy(s)
                .trim_end_matches('\0')
                .to_string(),
        )
    }

    /// Sectors the stage1 loads: installboot's `buf_size / SECTOR_SIZE`.
    pub fn sectors(&self) -> u16 {
        // At most 3.5 MiB (checked in parse): 7168 sectors.
        (self.bytes.len() as u64 / SECTOR) as u16
    }
}

/// The two BIOS boot programs of an image.
#[derive(Debug, Clone)]
pub struct BootFiles {
    pub stage1: Stage1,
    pub stage2: Stage2,
}

pub const PMBR: &str = "/boot/pmbr";
pub const GPTZFSBOOT: &str = "/boot/gptzfsboot";

impl BootFiles {
    /// Reads `/boot/pmbr` and `/boot/gptzfsboot` from the image (resolved inside it:
    /// symlinks never lead out of the image). `None` when the image has neither.
    pub fn read(root: &confine::Root) -> Result<Option<BootFiles>, BootBlockError> {
        let pmbr = read_bounded(root, PMBR, 512)?;
        let stage2 = read_bounded(root, GPTZFSBOOT, BOOT_SIZE)?;
        match (pmbr, stage2) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(BootBlockError::Missing {
                have: PMBR.into(),
                missing: GPTZFSBOOT.into(),
            }),
            (None, Some(_)) => Err(BootBlockError::Missing {
                have: GPTZFSBOOT.into(),
                missing: PMBR.into(),
            }),
            (Some((p, plen)), Some((s, slen))) => {
                if slen > BOOT_SIZE {
                    return Err(BootBlockError::TooLarge {
                        path: GPTZFSBOOT.into(),
                        len: slen,
                    });
                }
                if plen != 512 {
                    return Err(BootBlockError::Bad {
                        path: PMBR.into(),
                        detail: format!(
                            "{plen} bytes, but the stage1 boot block (pmbr) is one 512-byte \
                             sector"
                        ),
                    });
                }
                Ok(Some(BootFiles {
                    stage1: Stage1::parse(PMBR, &p)?,
                    stage2: Stage2::parse(GPTZFSBOOT, s)?,
                }))
            }
        }
    }
}

/// A regular file of the image and its length, reading at most `max` + 1 bytes; `None`
/// when it does not exist.
fn read_bounded(
    root: &confine::Root,
    path: &str,
    max: u64,
) -> Result<Option<(Vec<u8>, u64)>, BootBlockError> {
    let f = match root.open_read(path) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let io = |e: std::io::Error| BootBlockError::Bad {
        path: path.into(),
        detail: e.to_string(),
    };
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(BootBlockError::Bad {
            path: path.into(),
            detail: "not a regular file".into(),
        });
    }
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf).map_err(io)?;
    let len = meta.len().max(buf.len() as u64);
    Ok(Some((buf, len)))
}

/// The ZFS partition of a disk: its GPT entry number and first LBA, sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZfsPartition {
    pub number: u32,
    pub first_lba: u64,
    pub sectors: u64,
}

impl ZfsPartition {
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }

    /// The bytes of the boot area (after the two front labels).
    pub fn boot_area(&self) -> Range<u64> {
        self.offset() + BOOT_OFFSET..self.offset() + BOOT_OFFSET + BOOT_SIZE
    }
}

/// What was written, for the build log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub partition: ZfsPartition,
    /// LBA of gptzfsboot (partition start + 1024).
    pub stage2_lba: u64,
    pub stage2_bytes: u64,
    /// The stage2 size recorded in the VBR.
    pub stage2_sectors: u16,
    /// The boot block's own version (EINFO), if it has one.
    pub version: Option<String>,
    pub disk_uuid: [u8; 16],
}

impl Installed {
    pub fn describe(&self) -> String {
        let p = &self.partition;
        format!(
            "gptzfsboot ({} bytes, version {}) at LBA {} (ZFS partition {} + 512 KiB, boot \
             partition LBA {} recorded in it); pmbr as the partition boot record at LBA {} \
             (loads {} sectors from LBA {}) and as the MBR (loads LBA {}; partition table \
             kept); disk UUID {}",
            self.stage2_bytes,
            self.version.as_deref().unwrap_or("not recorded"),
            self.stage2_lba,
            p.number,
            p.first_lba,
            p.first_lba,
            self.stage2_sectors,
            self.stage2_lba,
            p.first_lba,
            uuid_text(&self.disk_uuid),
        )
    }
}

/// A disk image or device opened for the boot blocks.
struct Disk {
    path: PathBuf,
    f: File,
    len: u64,
}

impl Disk {
    fn open(path: &Path, write: bool) -> Result<Disk, BootBlockError> {
        let io = |source| BootBlockError::Io {
            disk: path.into(),
            source,
        };
        let mut f = File::options()
            .read(true)
            .write(write)
            .open(path)
            .map_err(io)?;
        // Works for block devices too, whose metadata length is 0.
        let len = f.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(Disk {
            path: path.into(),
            f,
            len,
        })
    }

    fn layout(&self, detail: impl Into<String>) -> BootBlockError {
        BootBlockError::Layout {
            disk: self.path.clone(),
            detail: detail.into(),
        }
    }

    fn io(&self, source: std::io::Error) -> BootBlockError {
        BootBlockError::Io {
            disk: self.path.clone(),
            source,
        }
    }

    fn sector(&self, at: u64) -> Result<[u8; 512], BootBlockError> {
        let mut s = [0u8; 512];
        self.f.read_exact_at(&mut s, at).map_err(|e| self.io(e))?;
        Ok(s)
    }

    /// Writes `bytes` at `at`, refusing anything that would leave `allowed` or the disk.
    fn write(&self, at: u64, bytes: &[u8], allowed: &Range<u64>) -> Result<(), BootBlockError> {
        let end = at.checked_add(bytes.len() as u64);
        match end {
            Some(end) if at >= allowed.start && end <= allowed.end && end <= self.len => {
                self.f.write_all_at(bytes, at).map_err(|e| self.io(e))
            }
            _ => Err(self.layout(format!(
                "refusing to write {} bytes at {at}: outside {}..{}",
                bytes.len(),
                allowed.start,
                allowed.end
            ))),
        }
    }

    /// The ZFS partition, on a GPT disk with a protective MBR and no illumos boot
    /// partition.
    fn zfs_partition(&mut self) -> Result<ZfsPartition, BootBlockError> {
        let mbr = self.sector(0)?;
        let protective = mbr[MBR_MAGIC..] == [0x55, 0xAA]
            && (0..4).any(|i| mbr[MBR_PARTTBL + 16 * i + 4] == 0xEE);
        if !protective {
            return Err(self.layout("no protective MBR: not a GPT disk"));
        }
        let gpt = GPT::read_from(&mut self.f, SECTOR)
            .map_err(|e| self.layout(format!("cannot read the GPT: {e}")))?;
        let zfs = guid_bytes(TYPE_ZFS);
        let boot = guid_bytes(TYPE_ILLUMOS_BOOT);
        let used: Vec<_> = gpt.iter().filter(|(_, e)| e.is_used()).collect();
        if let Some((n, _)) = used.iter().find(|(_, e)| e.partition_type_guid == boot) {
            return Err(self.layout(format!(
                "partition {n} is an illumos boot partition; installing boot blocks into one \
                 is not implemented (image-builder's layouts have none)"
            )));
        }
        let mut found = used.iter().filter(|(_, e)| e.partition_type_guid == zfs);
        let (n, e) = found
            .next()
            .ok_or_else(|| self.layout("no ZFS (illumos usr) partition in the GPT"))?;
        if found.next().is_some() {
            return Err(self.layout("more than one ZFS (illumos usr) partition in the GPT"));
        }
        let p = ZfsPartition {
            number: *n,
            first_lba: e.starting_lba,
            sectors: e.ending_lba.saturating_sub(e.starting_lba) + 1,
        };
        let needs = BOOT_OFFSET + BOOT_SIZE + 2 * VDEV_LABEL_SIZE;
        if p.sectors * SECTOR < needs || p.offset() + p.sectors * SECTOR > self.len {
            return Err(self.layout(format!(
                "ZFS partition {} ({} sectors at LBA {}) cannot hold the labels and boot area",
                p.number, p.sectors, p.first_lba
            )));
        }
        Ok(p)
    }
}

/// The ZFS partition of the GPT disk `disk`.
pub fn zfs_partition(disk: &Path) -> Result<ZfsPartition, BootBlockError> {
    Disk::open(disk, false)?.zfs_partition()
}

/// installboot's `prepare_stage1`: `pmbr` with the BPB and the tail of the sector it
/// replaces (when that one is a boot sector), the disk UUID and the stage2 it loads.
pub fn prepare_stage1(
    replaced: &[u8; 512],
    pmbr: &Stage1,
    uuid: &[u8; 16],
    stage2_sectors: u16,
    stage2_lba: u64,
) -> [u8; 512] {
    let mut s = pmbr.0;
    if replaced[MBR_MAGIC..] == [0x55, 0xAA] {
        let bpb = STAGE1_BPB_OFFSET..STAGE1_BPB_OFFSET + STAGE1_BPB_SIZE;
        s[bpb.clone()].copy_from_slice(&replaced[bpb]);
        s[STAGE1_SIG..].copy_from_slice(&replaced[STAGE1_SIG..]);
    }
    s[STAGE1_STAGE2_UUID..STAGE1_STAGE2_UUID + 16].copy_from_slice(uuid);
    s[STAGE1_STAGE2_SIZE..STAGE1_STAGE2_SIZE + 2].copy_from_slice(&stage2_sectors.to_le_bytes());
    s[STAGE1_STAGE2_LBA..STAGE1_STAGE2_LBA + 8].copy_from_slice(&stage2_lba.to_le_bytes());
    s
}

/// Writes the BIOS boot blocks onto the GPT disk `disk` (an image file or a device), as
/// `installboot` does for a whole-disk root pool: see the module documentation.
pub fn install(
    disk: &Path,
    files: &BootFiles,
    uuid: [u8; 16],
) -> Result<Installed, BootBlockError> {
    let mut d = Disk::open(disk, true)?;
    let p = d.zfs_partition()?;
    let stage2_lba = p.first_lba + BOOT_OFFSET / SECTOR;
    let s2 = &files.stage2;
    let sectors = s2.sectors();

    // prepare_bootblock: the boot partition's LBA over bss_end_addr (64 bits).
    let mut stage2 = s2.bytes.clone();
    let at = s2.mboot + MB_BSS_END_ADDR;
    stage2[at..at + 8].copy_from_slice(&p.first_lba.to_le_bytes());

    let vbr = prepare_stage1(
        &d.sector(p.offset())?,
        &files.stage1,
        &uuid,
        sectors,
        stage2_lba,
    );
    // The MBR gets the same, then points at the VBR, which is one sector.
    let mbr = prepare_stage1(&d.sector(0)?, &files.stage1, &uuid, 1, p.first_lba);

    // installboot commits the last prepared block first: stage2, the VBR, the MBR.
    d.write(p.boot_area().start, &stage2, &p.boot_area())?;
    let pad1 = p.offset()..p.offset() + SECTOR;
    d.write(p.offset(), &vbr, &pad1)?;
    // Only the boot code: the disk signature, the partition table and the magic stay
    // (prepare_stage1 copied them from this very sector anyway).
    d.write(0, &mbr[..STAGE1_SIG], &(0..STAGE1_SIG as u64))?;
    d.f.sync_all().map_err(|e| d.io(e))?;
    Ok(Installed {
        partition: p,
        stage2_lba,
        stage2_bytes: stage2.len() as u64,
        stage2_sectors: sectors,
        version: s2.version(),
        disk_uuid: uuid,
    })
}

/// installboot's `prepare_bootblock` for an EFI boot program: when `loader` carries the
/// loader's multiboot header, the boot partition's LBA goes over its `bss_end_addr` (the
/// loader's `start_sector`, which makes it prefer the pool on that partition). Returns
/// whether it did.
pub fn patch_efi_loader(loader: &mut [u8], partition_lba: u64) -> bool {
    match find_multiboot(loader) {
        Some(m) => {
            let at = m + MB_BSS_END_ADDR;
            loader[at..at + 8].copy_from_slice(&partition_lba.to_le_bytes());
            true
        }
        None => false,
    }
}

/// A UUID in `uuid_unparse` form (bytes in order).
pub fn uuid_text(u: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*u).hyphenated().to_string()
}

/// A random RFC 4122 version 4 UUID in its byte order (installboot's `uuid_generate`):
/// the stage1 disk identity.
pub fn random_uuid() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

#[cfg(test)]
mod tests;
