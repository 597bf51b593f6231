//! ZFS tier: `pool` image builds against a real OpenZFS (run by `scripts/zfs-tier` inside
//! the zfs-vm guest with `IB_ZFS_TIER=1`; elsewhere these tests say they are skipped).
//!
//! A small root file system tarball stands in for the hipster archive. The image is checked
//! from the outside: its GPT read by sfdisk, the pool imported under a new name, the boot
//! environment mounted read-only, the ESP read with mtools. Interrupting the build (SIGINT)
//! at every step must leave no pool, loop device, mount, dataset or journal entry behind.

use crate::tier;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use image_builder::build::device::System;
use image_builder::build::gpt::{TYPE_ESP, TYPE_RESERVED, TYPE_ZFS};
use image_builder::build::{inspect, BuildOptions};
use image_builder::host::Host;
use runner::SystemRunner;
use tier::{fake_boot_block, fake_pmbr, tier, Cli, ScratchPool};
use zfs::{PoolImport, Zfs};

const TEMPLATE: &str = r#"{
  "pool": { "name": "rpool", "size": 352, "bename": "oi", "uefi": true, "partition_only": true },
  "steps": [
    { "t": "create_be" },
    { "t": "create_dataset", "name": "export", "mountpoint": "/export" },
    { "t": "create_dataset", "name": "export/home", "mountpoint": "/export/home" },
    { "t": "unpack_tar", "name": "root.tar" },
    { "t": "ensure_file", "file": "/etc/motd", "contents": "built by image-builder\n", "owner": "root", "group": "sys", "mode": "644" },
    { "t": "make_bootable" }
  ]
}"#;

/// Size of the stand-in gptzfsboot: not a whole number of sectors, as installboot allows.
const GPTZFSBOOT_LEN: usize = 200_000;

/// A scratch pool with `POOL/images/output` holding the root tarball, and the template.
struct World<'a> {
    zfs: &'a Cli,
    pool: ScratchPool<'a>,
}

impl<'a> World<'a> {
    fn new(zfs: &'a Cli, payload_mib: usize) -> World<'a> {
        let pool = ScratchPool::new(zfs, "ibp", 2 << 30);
        pool.write_templates(&[("g/img.json", TEMPLATE)]);
        write_root_tar(&pool.make_output_dir().join("root.tar"), payload_mib);
        World { zfs, pool }
    }

    fn output_dir(&self) -> PathBuf {
        self.pool.output_dir()
    }

    fn dir(&self) -> &Path {
        self.pool.dir.path()
    }

    fn build(&self) {
        let p = self.pool.plan("g", "img", &Default::default());
        let opts = BuildOptions {
            source_date_epoch: None,
            ..self.pool.opts()
        };
        self.pool.build_plan(&p, &opts).unwrap();
    }

    /// Nothing of a build is left: no temporary pool, no loop device on a work image, no
    /// mount under the work area, no work directory, dataset or scratch dataset, an empty
    /// journal.
    fn assert_clean(&self) {
        let pools = self.zfs.pools().unwrap();
        assert!(
            !pools.iter().any(|p| p.starts_with("TEMPORARY-")),
            "pools left: {pools:?}"
        );
        let loops = Command::new("/usr/sbin/losetup")
            .args(["--list", "--noheadings", "--output", "BACK-FILE"])
            .output()
            .unwrap();
        let loops = String::from_utf8_lossy(&loops.stdout);
        assert!(!loops.contains("lofi.raw"), "loop devices left: {loops}");
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let work = format!("{}/work/g/img", self.pool.dataset());
        assert!(
            !mounts.lines().any(|l| l.contains("TEMPORARY-")
                || l.contains(&work)
                || l.contains("/work/g-img")),
            "mounts left: {mounts}"
        );
        assert!(!self.zfs.exists(&work).unwrap());
        assert!(!self
            .zfs
            .exists(&format!("{}/tmp/g/img", self.pool.dataset()))
            .unwrap());
        let work_dir = self.output_dir().join(".image-builder/work/g-img");
        assert!(!work_dir.exists(), "{} left", work_dir.display());
        let journals = self.output_dir().join(".image-builder/journals");
        let left: Vec<_> = std::fs::read_dir(&journals)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "journal entries left: {left:?}");
    }
}

/// A small root file system: passwd/group naming a non-root user, modes including setuid,
/// a symlink, loaders for the ESP, BIOS boot blocks, and `payload_mib` of incompressible
/// data.
fn write_root_tar(path: &Path, payload_mib: usize) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, kind: tar::EntryType, mode: u32, uid: u64, gid: u64, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    use tar::EntryType::{Directory as D, Regular as F};
    for d in ["etc", "usr", "usr/bin", "boot", "var", "var/svc"] {
        add(d, D, 0o755, 0, 3, b"");
    }
    add(
        "etc/passwd",
        F,
        0o644,
        0,
        3,
        b"root:x:0:0::/root:/usr/bin/bash\nsvc:x:77:12::/var/svc:/bin/false\n",
    );
    add(
        "etc/group",
        F,
        0o644,
        0,
        3,
        b"root::0:\nsys::3:\nsvcgrp::12:\n",
    );
    add("etc/shadow", F, 0o400, 0, 3, b"root:NP:::::::\n");
    add("usr/bin/su", F, 0o4555, 0, 3, b"#!/bin/sh\n");
    add("var/svc/state", F, 0o640, 77, 12, b"owned by svc\n");
    add(
        "boot/loader64.efi",
        F,
        0o444,
        0,
        3,
        b"MZ illumos loader64.efi stand-in\n",
    );
    // The 32-bit loader carries the loader's multiboot header, as illumos' do.
    add("boot/loader32.efi", F, 0o444, 0, 3, &fake_boot_block(4096));
    add("boot/pmbr", F, 0o444, 0, 3, &fake_pmbr());
    add(
        "boot/gptzfsboot",
        F,
        0o444,
        0,
        3,
        &fake_boot_block(GPTZFSBOOT_LEN),
    );
    // xorshift: incompressible, so the pool really writes it.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..payload_mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    add("usr/lib.bin", F, 0o644, 0, 2, &data);
    let mut link = tar::Header::new_ustar();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_mode(0o777);
    link.set_uid(0);
    link.set_gid(0);
    link.set_mtime(1_700_000_000);
    link.set_size(0);
    b.append_link(&mut link, "bin", "usr/bin").unwrap();
    b.into_inner().unwrap().sync_all().unwrap();
}

fn losetup(file: &Path) -> String {
    let out = Command::new("/usr/sbin/losetup")
        .args(["-f", "--show", "-P"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn pool_image_from_a_root_tarball() {
    let Some(zfs) = tier() else { return };
    let w = World::new(&zfs, 4);
    w.build();
    w.assert_clean();
    let raw = w.output_dir().join("g-img.raw");
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 352 << 20);

    // The GPT, as util-linux reads it: illumos' layout.
    let sf = Command::new("/usr/sbin/sfdisk")
        .arg("--json")
        .arg(&raw)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&sf.stdout).unwrap();
    let parts = v["partitiontable"]["partitions"].as_array().unwrap();
    let types: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(types, [TYPE_ESP, TYPE_ZFS, TYPE_RESERVED]);
    assert_eq!(parts[0]["start"], 256);
    assert_eq!(parts[0]["size"], 524288);
    assert_eq!(parts[1]["start"], 256 + 524288);
    assert_eq!(parts[2]["size"], 16384);

    // The ESP holds the image's own loader.
    let mtype = Command::new("/usr/bin/mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{}", raw.display(), 256 * 512))
        .arg("::/EFI/BOOT/BOOTX64.EFI")
        .output()
        .unwrap();
    assert_eq!(mtype.stdout, b"MZ illumos loader64.efi stand-in\n");

    // The 32-bit loader had the loader's multiboot header: the ZFS partition's LBA is in it.
    let zfs_lba = 256 + 524288u64;
    let mtype32 = Command::new("/usr/bin/mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{}", raw.display(), 256 * 512))
        .arg("::/EFI/BOOT/BOOTIA32.EFI")
        .output()
        .unwrap();
    let mut want = fake_boot_block(4096);
    want[32..40].copy_from_slice(&zfs_lba.to_le_bytes());
    assert_eq!(mtype32.stdout, want);

    // BIOS boot blocks, where illumos installboot puts them.
    let f = std::fs::File::open(&raw).unwrap();
    let read = |at: u64, len: usize| {
        let mut b = vec![0u8; len];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, at).unwrap();
        b
    };
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let pmbr = fake_pmbr();
    // MBR: pmbr's code, loading the partition boot record (1 sector at the ZFS partition).
    let mbr = read(0, 512);
    assert_eq!(mbr[..3], pmbr[..3]);
    assert!(
        mbr[3..0x3e].iter().all(|b| *b == 0),
        "the protective MBR's (empty) BPB"
    );
    assert_eq!(mbr[0x3e..0xfc], pmbr[0x3e..0xfc]);
    assert_eq!((u16_at(&mbr, 0xfc), u64_at(&mbr, 0xfe)), (1, zfs_lba));
    let uuid = &mbr[0x106..0x116];
    assert!(uuid.iter().any(|b| *b != 0), "a disk UUID");
    assert_eq!(mbr[0x1be + 4], 0xee, "the protective partition entry stays");
    // The partition boot record: pmbr loading gptzfsboot from the ZFS boot area.
    let vbr = read(zfs_lba * 512, 512);
    assert_eq!(vbr[..0xfc], pmbr[..0xfc]);
    assert_eq!(
        (u16_at(&vbr, 0xfc), u64_at(&vbr, 0xfe)),
        ((GPTZFSBOOT_LEN / 512) as u16, zfs_lba + 1024)
    );
    assert_eq!(&vbr[0x106..0x116], uuid);
    // gptzfsboot 512 KiB into the partition, after the two front labels, with the
    // partition's LBA in its multiboot header.
    let mut want = fake_boot_block(GPTZFSBOOT_LEN);
    want[32..40].copy_from_slice(&zfs_lba.to_le_bytes());
    assert!(
        read((zfs_lba + 1024) * 512, GPTZFSBOOT_LEN) == want,
        "gptzfsboot in place"
    );
    // The labels are intact: inspect and the check below import the pool from this disk.

    // partition_only: the ZFS partition alone.
    let part = std::fs::metadata(w.output_dir().join("g-img.partonly")).unwrap();
    assert_eq!(part.len(), parts[1]["size"].as_u64().unwrap() * 512);

    // What `image-builder inspect` reports.
    let runner = SystemRunner::new();
    let sys = System {
        host: Host::Linux,
        runner: &runner,
        zfs: &zfs,
    };
    let r = inspect::inspect(&sys, &raw).unwrap();
    assert_eq!(r.pool.as_deref(), Some("rpool"));
    assert_eq!(r.bootfs.as_deref(), Some("ROOT/oi"));
    tier::assert_boot_environment(&r.datasets, "oi");
    assert!(!zfs
        .pools()
        .unwrap()
        .iter()
        .any(|p| p.starts_with("inspect")));

    // Import under a new name (the on-disk name stays rpool) and look at the files.
    let dev = losetup(&raw);
    let name = format!("chk{}", std::process::id());
    let alt = w.dir().join("chk");
    zfs.pool_import(
        &PoolImport::new("rpool")
            .new_name(&name)
            .temporary()
            .dir(format!("{dev}p2"))
            .altroot(alt.display().to_string())
            .no_mount()
            .readonly(),
    )
    .unwrap();
    let mnt = w.dir().join("be");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("/usr/bin/mount")
        .args(["-t", "zfs", "-o", "ro"])
        .arg(format!("{name}/ROOT/oi"))
        .arg(&mnt)
        .status()
        .unwrap();
    let check = || {
        assert!(st.success());
        let m = |p: &str| std::fs::symlink_metadata(mnt.join(p)).unwrap();
        assert_eq!(
            (
                m("etc/shadow").mode() & 0o7777,
                m("etc/shadow").uid(),
                m("etc/shadow").gid()
            ),
            (0o400, 0, 3)
        );
        assert_eq!(m("usr/bin/su").mode() & 0o7777, 0o4555);
        assert_eq!(
            (m("var/svc/state").uid(), m("var/svc/state").gid()),
            (77, 12)
        );
        assert_eq!(
            std::fs::read_link(mnt.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            std::fs::read_to_string(mnt.join("etc/motd")).unwrap(),
            "built by image-builder\n"
        );
        assert_eq!(
            (m("etc/motd").mode() & 0o7777, m("etc/motd").gid()),
            (0o644, 3)
        );
        assert_eq!(m("usr/lib.bin").len(), 4 << 20);
    };
    let checked = std::panic::catch_unwind(check);
    let _ = Command::new("/usr/bin/umount").arg(&mnt).status();
    zfs.pool_export(&name, false).unwrap();
    let _ = Command::new("/usr/sbin/losetup")
        .args(["-d", &dev])
        .status();
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn sigint_at_each_step_leaves_nothing_behind() {
    let Some(zfs) = tier() else { return };
    let w = World::new(&zfs, 24);
    // Step indices 0..=5; index 3 is the unpack, interrupted a moment after it starts.
    for step in 0..6usize {
        let mut child = Command::new(env!("CARGO_BIN_EXE_image-builder"))
            .args([
                "build",
                "--json",
                "-d",
                &w.pool.dataset(),
                "-g",
                "g",
                "-n",
                "img",
                "-T",
            ])
            .arg(w.pool.templates())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut sent = false;
        for line in out.lines() {
            let line = line.unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["event"] == "step_start" && v["index"] == step && !sent {
                if step == 3 {
                    std::thread::sleep(std::time::Duration::from_millis(1500));
                }
                rustix::process::kill_process(
                    rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
                    rustix::process::Signal::INT,
                )
                .unwrap();
                sent = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(sent, "step {step} never started");
        assert_eq!(status.code(), Some(130), "step {step}: {status:?}");
        w.assert_clean();
    }
}

/// The README's main job on a real OpenZFS: the shipped `example/hello` stage, then the
/// `example/pool` disk image made from its archive, both by the command line (no
/// first-boot flags), then `image-builder inspect` of the image, as text and as JSON.
#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn readme_example_pool_image_from_the_hello_stage() {
    let Some(zfs) = tier() else { return };
    let pool = ScratchPool::new(&zfs, "ibx", 2 << 30);
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
    let ib = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_image-builder"));
        c.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        c
    };
    for name in ["hello", "pool"] {
        let o = ib()
            .args(["build", "--no-vm", "-d", &pool.dataset(), "-T"])
            .arg(&templates)
            .args(["-g", "example", "-n", name])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "example/{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let raw = pool.output_dir().join("example-pool.raw");
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 256 << 20);

    let inspect = |json: bool| {
        let mut c = ib();
        c.args(["inspect", "--no-vm"]).arg(&raw);
        if json {
            c.arg("--json");
        }
        let o = c.output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "inspect: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let v: serde_json::Value = serde_json::from_str(&inspect(true)).unwrap();
    assert_eq!(v["pool"], "rpool");
    assert_eq!(v["bootfs"], "ROOT/hello");
    // No uefi: a GPT with the ZFS partition and illumos' reserved partition, no ESP.
    let types: Vec<&str> = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type_guid"].as_str().unwrap())
        .collect();
    assert_eq!(types, [TYPE_ZFS, TYPE_RESERVED]);
    let datasets: Vec<image_builder::build::inspect::Dataset> = v["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| image_builder::build::inspect::Dataset {
            name: d["name"].as_str().unwrap().into(),
            mountpoint: d["mountpoint"].as_str().unwrap().into(),
            canmount: d["canmount"].as_str().unwrap().into(),
            libbe: d["libbe"]
                .as_array()
                .unwrap()
                .iter()
                .map(|kv| {
                    (
                        kv[0].as_str().unwrap().into(),
                        kv[1].as_str().unwrap().into(),
                    )
                })
                .collect(),
        })
        .collect();
    tier::assert_boot_environment(&datasets, "hello");
    // The pool's root as the booted system mounts it: under the on-disk name, not the
    // temporary name inspect imported it under.
    assert_eq!(
        (datasets[0].name.as_str(), datasets[0].mountpoint.as_str()),
        ("", "/rpool")
    );
    let text = inspect(false);
    for line in ["pool: rpool\n", "bootfs: ROOT/hello\n"] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert!(
        !zfs.pools()
            .unwrap()
            .iter()
            .any(|p| p.starts_with("inspect")),
        "inspect left its pool imported"
    );

    // The boot environment holds the hello stage's files and the template's own.
    let dev = losetup(&raw);
    let name = format!("chk{}", std::process::id());
    zfs.pool_import(
        &PoolImport::new("rpool")
            .new_name(&name)
            .temporary()
            .dir(format!("{dev}p1"))
            .altroot(pool.dir.path().join("chk").display().to_string())
            .no_mount()
            .readonly(),
    )
    .unwrap();
    let mnt = pool.dir.path().join("be");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("/usr/bin/mount")
        .args(["-t", "zfs", "-o", "ro"])
        .arg(format!("{name}/ROOT/hello"))
        .arg(&mnt)
        .status()
        .unwrap();
    let check = || {
        assert!(st.success());
        assert_eq!(
            std::fs::read(mnt.join("etc/motd")).unwrap(),
            std::fs::read(templates.join("files/example/motd")).unwrap()
        );
        assert_eq!(
            std::fs::read_link(mnt.join("etc/localtime")).unwrap(),
            Path::new("../usr/share/lib/zoneinfo/UTC")
        );
        assert_eq!(
            std::fs::read_to_string(mnt.join("etc/nodename")).unwrap(),
            "hello\n"
        );
    };
    let checked = std::panic::catch_unwind(check);
    let _ = Command::new("/usr/bin/umount").arg(&mnt).status();
    zfs.pool_export(&name, false).unwrap();
    let _ = Command::new("/usr/sbin/losetup")
        .args(["-d", &dev])
        .status();
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }
}
