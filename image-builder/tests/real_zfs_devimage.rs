//! ZFS tier: the shipped development cloud image, `cloudimage/ttya-openindiana-hipster-dev`,
//! built on a real OpenZFS the way a Linux host builds it (run by `scripts/zfs-tier`
//! inside the zfs-vm guest with `IB_ZFS_TIER=1`; elsewhere it says it is skipped).
//!
//! The hipster archive needs an illumos host to make, so `scripts/standin-root` makes a
//! stand-in: a real Debian root (mmdebstrap) with the illumos files the template's steps
//! read or replace added on top. `scripts/zfs-tier` tells the guest where it is
//! (`IB_STANDIN_ROOT`); without it this test fails and names the script.
//!
//! The template tree is the project's own `templates/`, unchanged; the build is the
//! `image-builder build` command line of docs/getting-started.md, with SMF seeding and
//! `/dev` left to first boot. The raw image is then checked from the outside only: the GPT
//! by sfdisk, the ESP by mtools, the pool by `image-builder inspect` and by importing it
//! read-only under a new name and mounting the boot environment.

#[path = "devimage/mod.rs"]
mod devimage;
use crate::tier;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use image_builder::build::device::System;
use image_builder::build::gpt::{TYPE_ESP, TYPE_RESERVED, TYPE_ZFS};
use image_builder::build::inspect;
use image_builder::host::Host;
use image_builder::template::{plan, Features, PlanOptions};
use runner::SystemRunner;
use tier::{tier, Cli, ScratchPool};
use zfs::{PoolImport, Zfs};

const GROUP: &str = "cloudimage";
const NAME: &str = "ttya-openindiana-hipster-dev";
const ARCHIVE: &str = "openindiana-hipster.tar.gz";
const MIB: u64 = 1 << 20;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn templates() -> PathBuf {
    repo().join("templates")
}

fn template_file(name: &str) -> Vec<u8> {
    std::fs::read(templates().join("files").join(name)).unwrap()
}

/// The stand-in archive on the host (the guest sees the host's files read-only).
fn standin() -> PathBuf {
    let Some(p) = std::env::var_os("IB_STANDIN_ROOT").map(PathBuf::from) else {
        panic!(
            "IB_STANDIN_ROOT is not set: run this test through scripts/zfs-tier, after \
             scripts/standin-root has made the stand-in OpenIndiana archive"
        );
    };
    assert!(
        p.is_file(),
        "the stand-in OpenIndiana archive {} is missing: run scripts/standin-root on the \
         host (scripts/test does), then scripts/zfs-tier",
        p.display()
    );
    p
}

/// The stand-in archive unpacked by the system's tar (gzip in the emulated guest is much
/// faster than a debug build's), to compare the image with.
struct Archive {
    dir: PathBuf,
}

impl Archive {
    fn unpack(archive: &Path, dir: PathBuf) -> Archive {
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("/usr/bin/tar")
            .arg("-xzf")
            .arg(archive)
            .arg("-C")
            .arg(&dir));
        Archive { dir }
    }

    /// A file of the stand-in by its path in the image (its relative links, such as
    /// Debian's `/lib -> usr/lib`, resolve inside the unpacked tree).
    fn file(&self, image_path: &str) -> Vec<u8> {
        let p = self.dir.join(image_path.trim_start_matches('/'));
        std::fs::read(&p).unwrap_or_else(|e| panic!("the stand-in archive's {image_path}: {e}"))
    }
}

/// `(mode & 0o7777, uid, gid)` of a path, the last component not followed.
fn perms(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Nothing of the build is left: no temporary pool, no loop device on its work image, no
/// mount under its work area, no work or scratch dataset, an empty journal.
fn assert_clean(zfs: &Cli, pool: &ScratchPool) {
    let pools = zfs.pools().unwrap();
    assert!(
        !pools.iter().any(|p| p.starts_with("TEMPORARY-")),
        "pools left: {pools:?}"
    );
    let loops = run(Command::new("/usr/sbin/losetup").args([
        "--list",
        "--noheadings",
        "--output",
        "BACK-FILE",
    ]));
    assert!(!loops.contains("lofi.raw"), "loop devices left: {loops}");
    let work = format!("{}/work/{GROUP}/{NAME}", pool.dataset());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains("TEMPORARY-") || l.contains(&work)),
        "mounts left: {mounts}"
    );
    assert!(!zfs.exists(&work).unwrap(), "{work} is left");
    let tmp = format!("{}/tmp/{GROUP}/{NAME}", pool.dataset());
    assert!(!zfs.exists(&tmp).unwrap(), "{tmp} is left");
    let journals = pool.output_dir().join(".image-builder/journals");
    let left: Vec<_> = std::fs::read_dir(&journals)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "journal entries left: {left:?}");
}

/// A proto tree (`-E`) with a stand-in for every binary the template takes with `extsrc`
/// (the real ones are illumos binaries); returns each image path with its bytes.
fn proto_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let p = plan(
        &templates(),
        GROUP,
        NAME,
        &Features::default(),
        &PlanOptions::default(),
    );
    let mut staged = Vec::new();
    for s in p.steps.iter().filter(|s| s.skip.is_none()) {
        let Some(rel) = s.args.get("extsrc").and_then(|v| v.as_str()) else {
            continue;
        };
        let file = s.args["file"].as_str().unwrap().to_string();
        let bytes = format!("#!/bin/sh\n# stand-in for {rel}\n").into_bytes();
        let dest = dir.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, &bytes).unwrap();
        staged.push((file, bytes));
    }
    // sysconfig, every plugin program the sysconfig crate builds, and p9sync.
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../sysconfig/Cargo.toml"),
    )
    .unwrap();
    let plugins = manifest
        .lines()
        .filter(|l| l.starts_with("name = \"sysconfig-plugin-"))
        .count();
    assert!(
        plugins >= 8,
        "sysconfig/Cargo.toml lists {plugins} plugin programs"
    );
    assert_eq!(staged.len(), plugins + 2, "{staged:?}");
    staged
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn dev_cloud_image_from_the_standin_archive() {
    let Some(zfs) = tier() else { return };
    let archive = standin();

    // The template's pool is 2000 MiB; its image file is sparse, so the scratch pool only
    // holds what is written (the archive, the unpacked root, the image copied out).
    let pool = ScratchPool::new(&zfs, "ibd", 4 << 30);
    let phase = std::cell::Cell::new(std::time::Instant::now());
    let took = |what: &str| {
        eprintln!("{what} took {:.0} s", phase.get().elapsed().as_secs_f64());
        phase.set(std::time::Instant::now());
    };
    let base = Archive::unpack(&archive, pool.dir.path().join("standin"));
    assert!(
        base.dir.join("etc/image-builder-standin").is_file(),
        "{} is not the stand-in archive",
        archive.display()
    );
    took("unpacking the stand-in for comparison");
    let out = pool.make_output_dir();
    std::fs::copy(&archive, out.join(ARCHIVE)).unwrap();
    let proto = pool.dir.path().join("proto");
    let binaries = proto_tree(&proto);

    // As docs/getting-started.md builds it on Linux.
    let o = Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .args(["build", "--json", "--no-vm", "-d", &pool.dataset(), "-T"])
        .arg(templates())
        .arg("-E")
        .arg(&proto)
        .args(["-g", GROUP, "-n", NAME])
        .args(["--smf-at-first-boot", "--devfs-at-first-boot"])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    took("the build");
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for e in &events {
        if e["event"] == "step_finish" && e["seconds"].as_f64().unwrap_or(0.0) >= 1.0 {
            eprintln!("  step {} {}: {:.1} s", e["index"], e["t"], e["seconds"]);
        }
        if e["event"] == "finish" {
            eprintln!("  build: {:.1} s", e["seconds"].as_f64().unwrap_or(0.0));
        }
    }
    assert_eq!(o.status.code(), Some(0), "the build failed");
    let ran = |t: &str| {
        events
            .iter()
            .filter(|e| e["event"] == "step_finish" && e["t"] == t)
            .count()
    };
    // Every step of the shipped template ran but those its features turn off.
    assert_eq!(ran("devfsadm"), 1);
    assert_eq!(ran("seed_smf"), 1);
    assert_eq!(ran("make_bootable"), 1);
    assert_eq!(ran("unpack_tar"), 1);
    let skipped: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step_skipped")
        .map(|e| e["t"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["pkg_set_publisher", "shadow", "include"]);
    let steps = plan(
        &templates(),
        GROUP,
        NAME,
        &Features::default(),
        &PlanOptions::default(),
    )
    .steps
    .len();
    let finished = events
        .iter()
        .filter(|e| e["event"] == "step_finish")
        .count();
    assert_eq!(finished + skipped.len(), steps);
    assert_clean(&zfs, &pool);

    let raw = out.join(format!("{GROUP}-{NAME}.raw"));
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 2000 * MIB);
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(
        sums.lines()
            .any(|l| l.ends_with(&format!("  {GROUP}-{NAME}.raw"))),
        "{sums}"
    );

    // The GPT, as util-linux reads it: illumos' layout with the ESP.
    let sf: serde_json::Value = serde_json::from_str(&run(Command::new("/usr/sbin/sfdisk")
        .arg("--json")
        .arg(&raw)))
    .unwrap();
    let parts = sf["partitiontable"]["partitions"].as_array().unwrap();
    let types: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(types, [TYPE_ESP, TYPE_ZFS, TYPE_RESERVED]);
    // (start, size) in sectors.
    let part = |i: usize| {
        (
            parts[i]["start"].as_u64().unwrap(),
            parts[i]["size"].as_u64().unwrap(),
        )
    };
    let (esp, zfs_part, reserved) = (part(0), part(1), part(2));
    assert_eq!(esp, (256, 256 * MIB / 512));
    assert_eq!(zfs_part.0, esp.0 + esp.1);
    assert_eq!(reserved.1, 8 * MIB / 512);
    assert!(zfs_part.0 + zfs_part.1 <= reserved.0);
    // The backup GPT takes the last 33 sectors.
    assert!(reserved.0 + reserved.1 <= 2000 * MIB / 512 - 33);

    // The ESP holds the image's own UEFI loaders.
    for (src, dst) in [
        ("/boot/loader64.efi", "BOOTX64.EFI"),
        ("/boot/loader32.efi", "BOOTIA32.EFI"),
    ] {
        let got = Command::new("/usr/bin/mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@{}", raw.display(), 256 * 512))
            .arg(format!("::/EFI/BOOT/{dst}"))
            .output()
            .unwrap();
        assert_eq!(got.stdout, base.file(src), "ESP /EFI/BOOT/{dst}");
    }

    // What `image-builder inspect` reports: the pool, its boot environment, the datasets.
    let runner = SystemRunner::new();
    let sys = System {
        host: Host::Linux,
        runner: &runner,
        zfs: &zfs,
    };
    took("the GPT and ESP checks");
    let r = inspect::inspect(&sys, &raw).unwrap();
    took("image-builder inspect");
    let names: Vec<&str> = r.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["loader", "zfs", ""]);
    assert_eq!(r.pool.as_deref(), Some("rpool"));
    let bootfs = r.bootfs.clone().unwrap();
    let bename = bootfs.strip_prefix("ROOT/").unwrap().to_string();
    assert!(!bename.is_empty() && !bename.contains('/'), "{bootfs}");
    tier::assert_boot_environment(&r.datasets, &bename);

    // Import under a new name (on disk it stays rpool), read-only, nothing mounted, and
    // mount the boot environment.
    let dev = run(Command::new("/usr/sbin/losetup")
        .args(["-f", "--show", "-P"])
        .arg(&raw))
    .trim()
    .to_string();
    let name = format!("chk{}", std::process::id());
    let imported = zfs.pool_import(
        &PoolImport::new("rpool")
            .new_name(&name)
            .temporary()
            .dir(format!("{dev}p2"))
            .altroot(pool.dir.path().join("chk").display().to_string())
            .no_mount()
            .readonly(),
    );
    let mnt = pool.dir.path().join("be");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = imported.is_ok()
        && Command::new("/usr/bin/mount")
            .args(["-t", "zfs", "-o", "ro"])
            .arg(format!("{name}/{bootfs}"))
            .arg(&mnt)
            .status()
            .unwrap()
            .success();
    let import_error = imported.as_ref().err().map(|e| e.to_string());
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_eq!(import_error, None, "importing the image's pool");
        assert!(mounted, "cannot mount {name}/{bootfs}");
        let get = |what: &str, prop: &str| {
            run(Command::new("/usr/sbin/zpool").args(["get", "-H", "-o", "value", prop, what]))
                .trim()
                .to_string()
        };
        assert_eq!(get(&name, "bootfs"), format!("{name}/{bootfs}"));
        assert_eq!(get(&name, "ashift"), "12");
        devimage::check_root(&mnt, &base, &binaries);
    }));
    took("the boot environment checks");
    let _ = Command::new("/usr/bin/umount").arg(&mnt).status();
    if imported.is_ok() {
        zfs.pool_export(&name, false).unwrap();
    }
    let _ = Command::new("/usr/sbin/losetup")
        .args(["-d", &dev])
        .status();
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }
    // Our own look left nothing either.
    assert!(!zfs.pools().unwrap().iter().any(|p| p == &name));
    let loops = run(Command::new("/usr/sbin/losetup").args([
        "--list",
        "--noheadings",
        "--output",
        "BACK-FILE",
    ]));
    assert!(!loops.contains(&*raw.to_string_lossy()), "{loops}");
    assert_clean(&zfs, &pool);
}
