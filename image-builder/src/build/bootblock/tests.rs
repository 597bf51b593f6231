//! Boot blocks written to a sparse disk with a GPT: what lands where, and what must not change.

use super::*;
use crate::build::gpt::Label;

/// A stand-in loader boot block: a jump, a multiboot header at 8 with the a.out
/// kludge, `code` bytes of code in all, then an EINFO block with `version`.
pub(crate) fn fake_stage2(code: usize, version: &str) -> Vec<u8> {
    let mut b = vec![0x90u8; code];
    b[..2].copy_from_slice(&[0xeb, 0x1e]);
    let flags = MB_AOUT_KLUDGE;
    let words = [
        MB_MAGIC,
        flags,
        0u32.wrapping_sub(MB_MAGIC).wrapping_sub(flags),
        8,
        0,
        code as u32,
        0xdead_beef,
        0xfeed_face,
    ];
    for (i, w) in words.iter().enumerate() {
        b[8 + 4 * i..12 + 4 * i].copy_from_slice(&w.to_le_bytes());
    }
    b.resize((code + 7) & !7, 0);
    // EINFO: header, 16-byte hash, NUL, string.
    let mut einfo = vec![0u8; EINFO_LEN];
    einfo[..7].copy_from_slice(EINFO_MAGIC);
    einfo[7] = 1;
    let str_off = (EINFO_LEN + 16 + 1) as u32;
    einfo[9..13].copy_from_slice(&str_off.to_le_bytes());
    einfo[13..15].copy_from_slice(&(version.len() as u16).to_le_bytes());
    einfo[15] = 1;
    einfo[16..20].copy_from_slice(&(EINFO_LEN as u32).to_le_bytes());
    einfo[20..22].copy_from_slice(&16u16.to_le_bytes());
    einfo.extend_from_slice(&[0xa5; 16]);
    einfo.push(0);
    einfo.extend_from_slice(version.as_bytes());
    einfo.resize((einfo.len() + 7) & !7, 0);
    let sum = einfo
        .chunks(4)
        .fold(0u32, |s, c| s.wrapping_add(u32_at(c, 0)));
    b.extend_from_slice(&(einfo.len() as u32).to_le_bytes());
    b.extend_from_slice(&sum.wrapping_neg().to_le_bytes());
    b.extend_from_slice(&einfo);
    b
}

/// A stand-in pmbr: code bytes, illumos' default stage2 fields, a protective entry.
pub(crate) fn fake_pmbr() -> Vec<u8> {
    let mut s = vec![0x90u8; 512];
    s[..2].copy_from_slice(&[0xeb, 0x3c]);
    s[0xfa..0xfc].copy_from_slice(&[1, 1]);
    s[STAGE1_STAGE2_SIZE..STAGE1_STAGE2_SIZE + 2].copy_from_slice(&1u16.to_le_bytes());
    s[STAGE1_STAGE2_LBA..STAGE1_STAGE2_LBA + 8].copy_from_slice(&256u64.to_le_bytes());
    s[STAGE1_STAGE2_UUID..STAGE1_STAGE2_UUID + 16].fill(0);
    s[STAGE1_SIG..].fill(0);
    s[MBR_PARTTBL + 4] = 0xEE;
    s[MBR_MAGIC..].copy_from_slice(&[0x55, 0xAA]);
    s
}

struct Fixture {
    _dir: tempfile::TempDir,
    img: PathBuf,
    label: Label,
    before: Vec<u8>,
}

const DISK: u64 = 300 << 20;

/// A sparse disk with our GPT (ESP + ZFS + reserved) and a recognisable pattern in
/// the four vdev label areas of the ZFS partition.
fn disk() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.raw");
    File::create(&img).unwrap().set_len(DISK).unwrap();
    let label = Label::plan(DISK, true).unwrap();
    label.write(&img).unwrap();
    let z = label.zfs();
    let (start, len) = (z.offset(), z.bytes());
    let f = File::options().write(true).open(&img).unwrap();
    for (i, at) in [
        start,
        start + VDEV_LABEL_SIZE,
        start + len - 2 * VDEV_LABEL_SIZE,
        start + len - VDEV_LABEL_SIZE,
    ]
    .into_iter()
    .enumerate()
    {
        // vl_pad1 stays zero, as ZFS leaves it.
        let pattern: Vec<u8> = (0..VDEV_LABEL_SIZE - VDEV_PAD_SIZE)
            .map(|n| (n as u8) ^ (i as u8 + 1))
            .collect();
        f.write_all_at(&pattern, at + VDEV_PAD_SIZE).unwrap();
    }
    drop(f);
    let before = std::fs::read(&img).unwrap();
    Fixture {
        _dir: dir,
        img,
        label,
        before,
    }
}

fn files(code: usize) -> BootFiles {
    BootFiles {
        stage1: Stage1::parse("pmbr", &fake_pmbr()).unwrap(),
        stage2: Stage2::parse("gptzfsboot", fake_stage2(code, "1.1,1:20240101T000000Z")).unwrap(),
    }
}

const UUID: [u8; 16] = [
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00,
];

#[test]
fn boot_blocks_land_where_installboot_puts_them() {
    let fx = disk();
    let bf = files(100_000);
    let r = install(&fx.img, &bf, UUID).unwrap();
    let after = std::fs::read(&fx.img).unwrap();
    assert_eq!(after.len(), fx.before.len());
    let z = fx.label.zfs();
    let s = z.first_lba;
    assert_eq!((r.partition.number, r.partition.first_lba), (2, s));
    assert_eq!(r.stage2_lba, s + 1024);
    let len = bf.stage2.bytes.len();
    assert_eq!(r.stage2_sectors as usize, len / 512);
    assert_eq!(r.version.as_deref(), Some("1.1,1:20240101T000000Z"));

    // The MBR: pmbr code, stage2 = the VBR (1 sector at S), the UUID, and the
    // protective MBR's signature, partition table and magic unchanged.
    let mbr = &after[..512];
    let pmbr = fake_pmbr();
    assert_eq!(mbr[..STAGE1_BPB_OFFSET], pmbr[..STAGE1_BPB_OFFSET]);
    assert_eq!(
        mbr[STAGE1_BPB_OFFSET..STAGE1_BPB_OFFSET + STAGE1_BPB_SIZE],
        fx.before[STAGE1_BPB_OFFSET..STAGE1_BPB_OFFSET + STAGE1_BPB_SIZE],
        "the BPB comes from the replaced sector"
    );
    assert_eq!(mbr[0x3e..0xfc], pmbr[0x3e..0xfc]);
    assert_eq!(u16_at(mbr, 0xfc), 1);
    assert_eq!(u64::from_le_bytes(mbr[0xfe..0x106].try_into().unwrap()), s);
    assert_eq!(mbr[0x106..0x116], UUID);
    assert_eq!(mbr[0x116..0x1b8], pmbr[0x116..0x1b8]);
    assert_eq!(mbr[0x1b8..], fx.before[0x1b8..512]);

    // The VBR in the first sector of the ZFS partition: stage2 size and LBA.
    let vbr = &after[z.offset() as usize..z.offset() as usize + 512];
    assert_eq!(u16_at(vbr, 0xfc) as usize, len / 512);
    assert_eq!(
        u64::from_le_bytes(vbr[0xfe..0x106].try_into().unwrap()),
        s + 1024
    );
    assert_eq!(vbr[0x106..0x116], UUID);
    assert_eq!(
        vbr[0x1b8..],
        pmbr[0x1b8..],
        "a zeroed sector: pmbr's own tail"
    );

    // gptzfsboot at S + 1024 sectors, the partition LBA over bss_end_addr.
    let at = (z.offset() + BOOT_OFFSET) as usize;
    let got = &after[at..at + len];
    let mut want = bf.stage2.bytes.clone();
    want[8 + 24..8 + 32].copy_from_slice(&s.to_le_bytes());
    assert_eq!(got, &want[..]);
    assert_eq!(u32_at(got, 8 + 24), s as u32);

    // Nothing else changed: the GPT (both copies), the ESP, the labels (all but the
    // first sector of label 0's boot pad), the rest of the boot area.
    let changed: Vec<Range<usize>> = vec![
        0..STAGE1_SIG,
        z.offset() as usize..z.offset() as usize + 512,
        at..at + len,
    ];
    let mut i = 0;
    while i < after.len() {
        if let Some(r) = changed.iter().find(|r| r.contains(&i)) {
            i = r.end;
            continue;
        }
        let end = changed
            .iter()
            .map(|r| r.start)
            .filter(|&s| s > i)
            .min()
            .unwrap_or(after.len());
        assert!(
            after[i..end] == fx.before[i..end],
            "bytes changed between {i} and {end}"
        );
        i = end;
    }
    // And the GPT still reads the same, here and for util-linux.
    assert_eq!(zfs_partition(&fx.img).unwrap(), r.partition);
    if Path::new("/usr/sbin/sfdisk").exists() {
        let v = std::process::Command::new("/usr/sbin/sfdisk")
            .arg("--verify")
            .arg(&fx.img)
            .output()
            .unwrap();
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    }
}

#[test]
fn a_boot_sector_being_replaced_gives_its_bpb_and_tail() {
    let mut old = [0u8; 512];
    old[3..0x3e].fill(0x42);
    old[0x1b8..].fill(0x17);
    old[MBR_MAGIC..].copy_from_slice(&[0x55, 0xAA]);
    let p = Stage1::parse("pmbr", &fake_pmbr()).unwrap();
    let s = prepare_stage1(&old, &p, &UUID, 7, 99);
    assert_eq!(s[3..0x3e], old[3..0x3e]);
    assert_eq!(s[0x1b8..], old[0x1b8..]);
    assert_eq!((u16_at(&s, 0xfc), s[0xfe]), (7, 99));
    // Not a boot sector: nothing is taken from it.
    old[MBR_MAGIC] = 0;
    let s = prepare_stage1(&old, &p, &UUID, 7, 99);
    assert_eq!(s[3..0x3e], p.0[3..0x3e]);
    assert_eq!(s[0x1b8..], p.0[0x1b8..]);
}

#[test]
fn the_largest_boot_block_fits_and_a_larger_one_is_refused() {
    let fx = disk();
    let big = files(BOOT_SIZE as usize - 512);
    assert!(big.stage2.bytes.len() as u64 <= BOOT_SIZE);
    let r = install(&fx.img, &big, UUID).unwrap();
    assert!(r.stage2_lba * 512 + r.stage2_bytes <= fx.label.zfs().offset() + 4 * 1024 * 1024);

    let e = Stage2::parse("gptzfsboot", fake_stage2(BOOT_SIZE as usize, "v")).unwrap_err();
    assert!(matches!(e, BootBlockError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("3.5 MiB"), "{e}");
}

#[test]
fn bad_boot_programs_are_refused_with_the_reason() {
    let e = Stage1::parse("/boot/pmbr", &[0u8; 446]).unwrap_err();
    assert!(e.to_string().contains("446 bytes"), "{e}");
    let e = Stage2::parse("/boot/gptzfsboot", vec![0x90; 4096]).unwrap_err();
    assert!(e.to_string().contains("no multiboot header"), "{e}");
    // Right magic, wrong checksum.
    let mut b = fake_stage2(4096, "v");
    b[16] ^= 1;
    assert!(Stage2::parse("g", b).is_err());
    // No a.out kludge.
    let mut b = fake_stage2(4096, "v");
    let flags = 0u32;
    b[12..16].copy_from_slice(&flags.to_le_bytes());
    b[16..20].copy_from_slice(&0u32.wrapping_sub(MB_MAGIC).to_le_bytes());
    assert!(Stage2::parse("g", b).is_err());
    // load_end_addr beyond the file.
    let mut b = fake_stage2(4096, "v");
    b[28..32].copy_from_slice(&10_000_000u32.to_le_bytes());
    let e = Stage2::parse("g", b).unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    // A damaged EINFO is no version, not an error.
    let mut b = fake_stage2(4096, "v");
    let n = b.len();
    b[n - 1] ^= 0xff;
    assert_eq!(Stage2::parse("g", b).unwrap().version(), None);
}

#[test]
fn disks_without_the_expected_layout_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("blank.raw");
    File::create(&img).unwrap().set_len(64 << 20).unwrap();
    let e = install(&img, &files(4096), UUID).unwrap_err();
    assert!(e.to_string().contains("no protective MBR"), "{e}");
    assert!(std::fs::read(&img).unwrap().iter().all(|b| *b == 0));

    let e = install(&dir.path().join("nope.raw"), &files(4096), UUID).unwrap_err();
    assert!(matches!(e, BootBlockError::Io { .. }), "{e}");

    // A GPT whose partitions are not ours: no ZFS partition.
    let img = dir.path().join("other.raw");
    File::create(&img).unwrap().set_len(64 << 20).unwrap();
    let mut f = File::options().read(true).write(true).open(&img).unwrap();
    let mut gpt = GPT::new_from(&mut f, SECTOR, super::super::gpt::random_guid()).unwrap();
    gpt[1] = gptman::GPTPartitionEntry {
        partition_type_guid: guid_bytes("0FC63DAF-8483-4772-8E79-3D69D8E4E47D"),
        unique_partition_guid: super::super::gpt::random_guid(),
        starting_lba: 2048,
        ending_lba: 100_000,
        attribute_bits: 0,
        partition_name: "linux".into(),
    };
    GPT::write_protective_mbr_into(&mut f, SECTOR).unwrap();
    gpt.write_into(&mut f).unwrap();
    drop(f);
    let before = std::fs::read(&img).unwrap();
    let e = install(&img, &files(4096), UUID).unwrap_err();
    assert!(
        e.to_string().contains("no ZFS (illumos usr) partition"),
        "{e}"
    );
    assert_eq!(std::fs::read(&img).unwrap(), before, "nothing written");
}

#[test]
fn efi_loaders_with_a_multiboot_header_get_the_partition_lba() {
    let mut l = fake_stage2(8192, "v");
    assert!(patch_efi_loader(&mut l, 524_544));
    assert_eq!(u64::from_le_bytes(l[32..40].try_into().unwrap()), 524_544);
    let mut plain = b"MZ not a loader with a header".to_vec();
    assert!(!patch_efi_loader(&mut plain, 1));
    assert_eq!(plain, b"MZ not a loader with a header");
}

fn root_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, confine::Root) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("boot")).unwrap();
    for (p, b) in files {
        std::fs::write(dir.path().join(p), b).unwrap();
    }
    let root = confine::Root::open(dir.path()).unwrap();
    (dir, root)
}

#[test]
fn boot_files_come_from_the_image_and_both_are_needed() {
    let s2 = fake_stage2(4096, "v");
    let (_d, root) = root_with(&[("boot/pmbr", &fake_pmbr()), ("boot/gptzfsboot", &s2)]);
    let f = BootFiles::read(&root).unwrap().unwrap();
    assert_eq!(f.stage2.bytes, s2);

    let (_d, root) = root_with(&[]);
    assert!(BootFiles::read(&root).unwrap().is_none());

    let (_d, root) = root_with(&[("boot/pmbr", &fake_pmbr())]);
    let e = BootFiles::read(&root).unwrap_err().to_string();
    assert!(e.contains("has /boot/pmbr but no /boot/gptzfsboot"), "{e}");
    let (_d, root) = root_with(&[("boot/gptzfsboot", &s2)]);
    let e = BootFiles::read(&root).unwrap_err().to_string();
    assert!(e.contains("no /boot/pmbr"), "{e}");

    let big = vec![0u8; BOOT_SIZE as usize + 1];
    let (_d, root) = root_with(&[("boot/pmbr", &fake_pmbr()), ("boot/gptzfsboot", &big)]);
    let e = BootFiles::read(&root).unwrap_err();
    assert!(matches!(e, BootBlockError::TooLarge { .. }), "{e}");
}

#[test]
fn a_symlink_out_of_the_image_is_resolved_inside_it() {
    let outside = tempfile::tempdir().unwrap();
    let host = outside.path().join("gptzfsboot");
    std::fs::write(&host, fake_stage2(4096, "host")).unwrap();
    let (d, root) = root_with(&[("boot/pmbr", &fake_pmbr())]);
    std::os::unix::fs::symlink(&host, d.path().join("boot/gptzfsboot")).unwrap();
    // The absolute target is looked up inside the image, where it does not exist.
    let e = BootFiles::read(&root).unwrap_err().to_string();
    assert!(e.contains("no /boot/gptzfsboot"), "{e}");
}
