//! The GPT an illumos `zpool create` writes on a whole disk, written by us on hosts whose
//! `zpool` cannot (OpenZFS on Linux has no `-B` and labels disks its own way).
//!
//! illumos `zpool_label_disk()` (libzfs) with 512-byte sectors:
//!
//! | slice | start | size | type | name |
//! |---|---|---|---|---|
//! | 0 (with `-B`) | LBA 256 | boot size (256 MiB) | EFI system | `loader` |
//! | 0, or 1 with `-B` | LBA 256 (+ ESP) | up to the reserved slice | illumos `usr` (ZFS) | `zfs` |
//! | 8 | after the ZFS slice | 16384 sectors (8 MiB) | illumos reserved | |
//!
//! The first usable LBA is 34 and the last is `sectors - 34` (a 16 KiB entry array at both
//! ends), which the data slices fill exactly. illumos declares 9 entries in the header; this
//! writer declares the usual 128 (the same 16 KiB array), which every reader accepts.

use std::fs::File;
use std::path::Path;

use gptman::{GPTPartitionEntry, GPT};

pub const SECTOR: u64 = 512;
/// libzfs `NEW_START_BLOCK`: the first slice starts 128 KiB into the disk.
pub const START_LBA: u64 = 256;
/// The EFI system partition `zpool create -B` makes (libzfs default boot size).
pub const ESP_BYTES: u64 = 256 << 20;
/// libefi `EFI_MIN_RESV_SIZE`: the reserved slice 8 at the end of the disk.
pub const RESERVED_SECTORS: u64 = 16384;
/// Blocks for the header and the 16 KiB partition entry array at each end.
const ARRAY_BLOCKS: u64 = 16384 / SECTOR + 1;

/// EFI system partition, C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
pub const TYPE_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// illumos `V_USR`, the type illumos gives a ZFS slice.
pub const TYPE_ZFS: &str = "6A898CC3-1DD2-11B2-99A6-080020736631";
/// illumos `V_RESERVED`.
pub const TYPE_RESERVED: &str = "6A945A3B-1DD2-11B2-99A6-080020736631";

/// One slice of the label: its GPT entry number (1-based, as Linux names partitions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub number: u32,
    pub first_lba: u64,
    pub last_lba: u64,
    pub type_guid: &'static str,
    pub name: &'static str,
}

impl Slice {
    pub fn bytes(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * SECTOR
    }

    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
}

/// The label for a disk of `bytes`, with an EFI system partition when `esp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub slices: Vec<Slice>,
}

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("a disk of {bytes} bytes is too small for this label (needs more than {needs})")]
    TooSmall { bytes: u64, needs: u64 },
    #[error("cannot write the partition table: {0}")]
    Write(#[from] gptman::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Label {
    pub fn plan(bytes: u64, esp: bool) -> Result<Label, GptError> {
        let sectors = bytes / SECTOR;
        let esp_sectors = if esp { ESP_BYTES / SECTOR } else { 0 };
        let needs = (START_LBA + esp_sectors + RESERVED_SECTORS + ARRAY_BLOCKS + 1 + 2048) * SECTOR;
        if bytes < needs {
            return Err(GptError::TooSmall { bytes, needs });
        }
        // libefi: efi_last_u_lba = (sectors - 1) - ARRAY_BLOCKS.
        let usable_end = sectors - 1 - ARRAY_BLOCKS + 1;
        let zfs_first = START_LBA + esp_sectors;
        let zfs_sectors = usable_end - RESERVED_SECTORS - zfs_first;
        let mut slices = Vec::new();
        if esp {
            slices.push(Slice {
                number: 1,
                first_lba: START_LBA,
                last_lba: START_LBA + esp_sectors - 1,
                type_guid: TYPE_ESP,
                name: "loader",
            });
        }
        slices.push(Slice {
            number: if esp { 2 } else { 1 },
            first_lba: zfs_first,
            last_lba: zfs_first + zfs_sectors - 1,
            type_guid: TYPE_ZFS,
            name: "zfs",
        });
        slices.push(Slice {
            number: 9,
            first_lba: zfs_first + zfs_sectors,
            last_lba: zfs_first + zfs_sectors + RESERVED_SECTORS - 1,
            type_guid: TYPE_RESERVED,
            name: "",
        });
        Ok(Label { slices })
    }

    /// The ZFS slice.
    pub fn zfs(&self) -> &Slice {
        self.slices
            .iter()
            .find(|s| s.type_guid == TYPE_ZFS)
            .unwrap_or(&self.slices[0])
    }

    pub fn esp(&self) -> Option<&Slice> {
        self.slices.iter().find(|s| s.type_guid == TYPE_ESP)
    }

    /// Writes a protective MBR, the primary and the backup GPT into `file`.
    ///
    /// gptman encodes field by field, several hundred small writes; they are gathered in
    /// memory and written as a few runs (each write is a system call, and a slow one on
    /// ZFS under emulation: a second in all). Not synced to disk: the device made next
    /// reads the file through its file system, so it sees these writes (Linux
    /// drivers/block/loop.c reads with the backing file's `read_iter`, buffered unless the
    /// device was set up for direct I/O; illumos usr/src/uts/common/io/lofi.c reads with
    /// `vn_rdwr` or, in `lofi_mapped_rdwr`, through segmap on the backing vnode), and the
    /// finished image is synced once when it is moved to the output.
    pub fn write(&self, file: &Path) -> Result<(), GptError> {
        let mut f = File::options().read(true).write(true).open(file)?;
        let mut gpt = GPT::new_from(&mut f, SECTOR, random_guid())?;
        for s in &self.slices {
            gpt[s.number] = GPTPartitionEntry {
                partition_type_guid: guid_bytes(s.type_guid),
                unique_partition_guid: random_guid(),
                starting_lba: s.first_lba,
                ending_lba: s.last_lba,
                attribute_bits: 0,
                partition_name: s.name.into(),
            };
        }
        let mut gathered = Gathered::new(f.metadata()?.len());
        GPT::write_protective_mbr_into(&mut gathered, SECTOR)?;
        gpt.write_into(&mut gathered)?;
        use std::os::unix::fs::FileExt;
        for (at, bytes) in &gathered.runs {
            f.write_all_at(bytes, *at)?;
        }
        Ok(())
    }
}

/// Writes into a file of `len` bytes kept in memory as runs (offset, bytes), a write that
/// continues the last run extending it.
struct Gathered {
    len: u64,
    pos: u64,
    runs: Vec<(u64, Vec<u8>)>,
}

impl Gathered {
    fn new(len: u64) -> Gathered {
        Gathered {
            len,
            pos: 0,
            runs: Vec::new(),
        }
    }
}

impl std::io::Write for Gathered {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self.runs.last_mut() {
            Some((at, run)) if *at + run.len() as u64 == self.pos => run.extend_from_slice(b),
            _ => self.runs.push((self.pos, b.to_vec())),
        }
        self.pos += b.len() as u64;
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for Gathered {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        use std::io::SeekFrom;
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// Byte offset and length of the ZFS slice (illumos `usr` type) of a labelled image.
pub fn find_zfs_slice(image: &Path) -> Result<(u64, u64), GptError> {
    let mut f = File::open(image)?;
    let gpt = GPT::read_from(&mut f, SECTOR)?;
    let zfs = guid_bytes(TYPE_ZFS);
    let found = gpt
        .iter()
        .find(|(_, e)| e.is_used() && e.partition_type_guid == zfs)
        .map(|(_, e)| {
            (
                e.starting_lba * SECTOR,
                (e.ending_lba - e.starting_lba + 1) * SECTOR,
            )
        });
    found.ok_or_else(|| {
        GptError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no ZFS (illumos usr) partition in the label",
        ))
    })
}

/// A GUID in its on-disk (mixed-endian) byte order.
pub fn guid_bytes(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'-')
        .collect::<Vec<u8>>()
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap_or("00"), 16).unwrap_or(0))
        .collect();
    let mut b = [0u8; 16];
    if hex.len() != 16 {
        return b;
    }
    b[0..4].copy_from_slice(&[hex[3], hex[2], hex[1], hex[0]]);
    b[4..6].copy_from_slice(&[hex[5], hex[4]]);
    b[6..8].copy_from_slice(&[hex[7], hex[6]]);
    b[8..16].copy_from_slice(&hex[8..16]);
    b
}

/// The text form of an on-disk GUID (mixed-endian: the first three fields little-endian).
pub fn guid_text(b: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes_le(*b)
        .hyphenated()
        .encode_upper(&mut uuid::Uuid::encode_buffer())
        .to_string()
}

/// A random version 4 GUID (disk and partition identities), in its on-disk byte order.
pub fn random_guid() -> [u8; 16] {
    uuid::Uuid::new_v4().to_bytes_le()
}

/// A random UUID in text form, lower case (libbe's BE uuid).
pub fn random_uuid() -> String {
    guid_text(&random_guid()).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn illumos_layout_with_and_without_an_esp() {
        let bytes = 1024 << 20;
        let sectors = bytes / SECTOR;
        let l = Label::plan(bytes, true).unwrap();
        assert_eq!(l.slices.len(), 3);
        let esp = l.esp().unwrap();
        assert_eq!(
            (esp.number, esp.first_lba, esp.bytes()),
            (1, 256, 256 << 20)
        );
        let zfs = l.zfs();
        assert_eq!((zfs.number, zfs.first_lba), (2, 256 + 524288));
        let resv = &l.slices[2];
        assert_eq!(resv.number, 9);
        assert_eq!(resv.first_lba, zfs.last_lba + 1);
        assert_eq!(resv.last_lba, sectors - 34, "ends at the last usable LBA");
        assert_eq!(resv.bytes(), 8 << 20);

        let l = Label::plan(bytes, false).unwrap();
        assert_eq!(l.esp(), None);
        assert_eq!((l.zfs().number, l.zfs().first_lba), (1, 256));
        assert_eq!(l.slices[1].last_lba, sectors - 34);
        assert!(matches!(
            Label::plan(200 << 20, true),
            Err(GptError::TooSmall { .. })
        ));
    }

    #[test]
    fn guids_round_trip_in_mixed_endian_order() {
        let b = guid_bytes(TYPE_ESP);
        assert_eq!(&b[..4], &[0x28, 0x73, 0x2a, 0xc1]);
        assert_eq!(guid_text(&b), TYPE_ESP);
        assert_eq!(guid_text(&guid_bytes(TYPE_ZFS)), TYPE_ZFS);
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    /// What sfdisk (util-linux, an independent reader) finds in the file we wrote.
    #[test]
    fn sfdisk_reads_the_label_we_write() {
        if !Path::new("/usr/sbin/sfdisk").exists() {
            eprintln!("sfdisk_reads_the_label_we_write: skipped: no /usr/sbin/sfdisk");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.raw");
        let bytes = 600u64 << 20;
        File::create(&img).unwrap().set_len(bytes).unwrap();
        let l = Label::plan(bytes, true).unwrap();
        l.write(&img).unwrap();
        assert_eq!(std::fs::metadata(&img).unwrap().len(), bytes);
        let out = std::process::Command::new("/usr/sbin/sfdisk")
            .args(["--json"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let t = &v["partitiontable"];
        assert_eq!(t["label"], "gpt");
        assert_eq!(t["firstlba"], 34);
        assert_eq!(t["lastlba"], bytes / SECTOR - 34);
        let parts = t["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 3);
        for (p, s) in parts.iter().zip(&l.slices) {
            assert_eq!(
                p["node"].as_str().unwrap(),
                format!("{}{}", img.display(), s.number)
            );
            assert_eq!(p["start"], s.first_lba);
            assert_eq!(p["size"], s.last_lba - s.first_lba + 1);
            assert_eq!(p["type"].as_str().unwrap(), s.type_guid);
        }
        assert_eq!(parts[0]["name"], "loader");
        assert_eq!(parts[1]["name"], "zfs");
        // sfdisk --verify: no overlaps, headers and backup consistent.
        let verify = std::process::Command::new("/usr/sbin/sfdisk")
            .arg("--verify")
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }
}
