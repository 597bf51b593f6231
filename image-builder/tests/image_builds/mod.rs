//! Image-file builds (`pool`, `pcfs`, `ufs`, `iso`) through the whole engine.
//!
//! The illumos command lines (lofiadm, `zpool create -B`, beadm, bootadm, mkfs, newfs,
//! mkisofs, fdisk, installboot) are pinned with the recording runner, ZFS answered from a
//! script. On Linux, FAT and ISO images are made for real (mkfs.vfat, mtools, xorriso) and
//! read back with independent tools (mdir, mtype, isoinfo, xorriso).
//!
//! [`linux_real`] holds the Linux cases that make real images; the world here also answers
//! for a work dataset, and [`dataset_stages`] holds the dataset stage cases (snapshots built
//! elsewhere, step checkpoints) that use it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image_builder::build::{self, convert::Format, BuildError, BuildOptions, Env, Outcome};
use image_builder::host::Host;
use image_builder::steps::SmfSeeding;
use image_builder::template::{plan, Features, PlanOptions};
use runner::{Cmd, Output, Recorder, RunError, Runner, SystemRunner};
use tempfile::TempDir;

mod dataset_stages;
mod linux_real;

/// A world with `rpool/images` answered by the recorder: output, tmp and work datasets
/// "mounted" at directories of a temporary directory.
struct World {
    top: TempDir,
    rec: Arc<Recorder>,
    zfs_dir: &'static str,
}

impl World {
    fn new(host: Host) -> World {
        World::with(host, |_, _| {})
    }

    /// A world whose recorder answers `first`'s rules before the defaults (rules match by
    /// prefix, first added first).
    fn with(host: Host, first: impl FnOnce(&Recorder, &Path)) -> World {
        let top = tempfile::tempdir().unwrap();
        for d in ["t/g", "t/files", "output", "work"] {
            std::fs::create_dir_all(top.path().join(d)).unwrap();
        }
        let zfs_dir = match host {
            Host::Illumos => "/sbin",
            Host::Linux => "/usr/sbin",
        };
        // Commands without a rule succeed with no output, as zfs(8) and zpool(8) create,
        // destroy, snapshot, set, export, lofiadm(8) -d, installboot(8) and the others
        // that change something do (they print nothing the build reads); every such
        // command is pinned by the tests (`actions`), the queries get rules.
        let rec = Arc::new(Recorder::new().allow_unmatched());
        first(&rec, top.path());
        let w = World { top, rec, zfs_dir };
        for ds in ["rpool/images/output", "rpool/images"] {
            w.rec.always(
                &format!("{zfs_dir}/zfs list -H -p -o name -t all {ds}"),
                Output::ok(format!("{ds}\n")),
            );
        }
        // The work dataset of the dataset-stage cases; image builds work in a directory
        // of the output dataset (`WORK_DIR`).
        for (ds, dir) in [
            ("rpool/images/output", "output"),
            ("rpool/images/work/g/img", "work"),
        ] {
            w.rec.always(
                &format!("{zfs_dir}/zfs get -H -p -o value,source mountpoint {ds}"),
                Output::ok(format!("{}\tlocal\n", w.dir(dir).display())),
            );
            w.rec.always(
                &format!("{zfs_dir}/zfs get -H -p -o value,source mounted {ds}"),
                Output::ok("yes\t-\n"),
            );
        }
        w.rec.always(
            &format!("{zfs_dir}/zfs get -H -p -o value,source org.opensolaris.libbe:uuid"),
            Output::ok("-\t-\n"),
        );
        w
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.top.path().join(name)
    }

    /// The replies of lofiadm(8) for the work directory's `file` that has no device yet: the
    /// query fails, and `-a` attaches it unlabelled as `/dev/lofi/N` (lofiadm(8) EXAMPLES:
    /// an unlabelled device prints /dev/lofi/N).
    fn unlabelled_lofi(&self, file: &str, n: u32) {
        let image = self.work(file);
        self.rec.on(
            &format!("/usr/sbin/lofiadm {}", image.display()),
            Output::failed(1, "none"),
        );
        self.rec.on(
            "/usr/sbin/lofiadm -a",
            Output::ok(format!("/dev/lofi/{n}\n")),
        );
    }

    /// A path in an image build's work directory, which the build removes when it ends.
    fn work(&self, name: &str) -> PathBuf {
        self.dir(WORK_DIR).join(name)
    }

    fn template(&self, json: &str) {
        std::fs::write(self.dir("t/g/img.json"), json).unwrap();
    }

    fn build(
        &self,
        host: Host,
        runner: &dyn Runner,
        formats: Vec<Format>,
    ) -> Result<Outcome, BuildError> {
        self.build_with(host, runner, formats, |o| o)
    }

    /// The template `g/img`, planned and valid.
    fn plan(&self) -> image_builder::template::Plan {
        let p = plan(
            &self.dir("t"),
            "g",
            "img",
            &Features::default(),
            &PlanOptions::default(),
        );
        assert!(p.is_valid(), "{:?}", p.problems);
        p
    }

    fn build_with(
        &self,
        host: Host,
        runner: &dyn Runner,
        formats: Vec<Format>,
        change: impl FnOnce(BuildOptions) -> BuildOptions,
    ) -> Result<Outcome, BuildError> {
        let p = self.plan();
        let zfs = zfs::ZfsCli::new(runner, zfs::ZfsTools::in_dir(self.zfs_dir));
        let env = Env {
            host,
            runner,
            zfs: &zfs,
        };
        let opts = BuildOptions {
            svccfg: PathBuf::from("/nonexistent/svccfg"),
            formats,
            assume_tools: host == Host::Illumos,
            smf: SmfSeeding::AtFirstBoot,
            ..BuildOptions::new("rpool/images", self.dir("t"))
        };
        let opts = change(opts);
        build::build(&p, &opts, &env, &mut |e| {
            eprintln!("{}", serde_json::to_string(e).unwrap())
        })
    }

    /// The recorded commands that change something (queries and the health watch left out).
    fn actions(&self) -> Vec<String> {
        let w = self.top.path().display().to_string();
        self.rec
            .lines()
            .into_iter()
            .filter(|l| {
                !(l.contains(" list ") || l.contains("zfs get ") || l.contains(" status -t "))
            })
            .map(|l| l.replace(&w, "W"))
            .collect()
    }
}

/// An image build's work directory `g-img`, relative to the world's top ("W" in the
/// recorded lines).
const WORK_DIR: &str = "output/.image-builder/work/g-img";

/// The recorder, with `at` called on every command before it answers: for a test that looks
/// at the work directory while the build runs (it is gone when the build ends), or makes
/// the file a recorded command would have written.
struct Hook<'a> {
    rec: &'a Recorder,
    at: Box<dyn Fn(&Cmd) + Send + Sync + 'a>,
}

impl Runner for Hook<'_> {
    fn output(&self, cmd: &Cmd) -> Result<Output, RunError> {
        (self.at)(cmd);
        self.rec.output(cmd)
    }
}

/// What a recorded mkisofs would have written: `contents` at the path after its `-o`.
fn mkisofs_writes(cmd: &Cmd, contents: &[u8]) {
    let args: Vec<String> = cmd
        .get_args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if cmd.program().to_string_lossy().ends_with("/mkisofs") {
        if let Some(i) = args.iter().position(|a| a == "-o") {
            std::fs::write(&args[i + 1], contents).unwrap();
        }
    }
}

#[test]
fn illumos_pool_build_command_lines() {
    let w = World::new(Host::Illumos);
    w.template(
        r#"{ "pool": { "name": "rpool", "size": 300, "bename": "oi", "uefi": true, "autoexpand": true,
               "options": ["listsnapshots=on"], "fsoptions": ["atime=off"] },
             "steps": [
               { "t": "create_be" },
               { "t": "create_dataset", "name": "export/home", "mountpoint": "/export/home" },
               { "t": "ensure_dir", "dir": "/etc", "owner": "root", "group": "sys", "mode": "755" },
               { "t": "ensure_file", "file": "/etc/motd", "contents": "hi\n", "owner": "root", "group": "sys", "mode": "644" },
               { "t": "make_bootable" } ] }"#,
    );
    // What illumos lofiadm prints for a labelled device: its block node with p0
    // (usr/src/cmd/lofiadm/main.c, add_mapping() printing make_blkdevname()).
    w.rec
        .on("/usr/sbin/lofiadm -l -a", Output::ok("/dev/dsk/c9t1d0p0\n"));
    // The image root as the pool is exported (the recorder mounts nothing: the steps wrote
    // into the directory itself).
    let motd = std::sync::Mutex::new(None);
    let hook = Hook {
        rec: &w.rec,
        at: Box::new(|c: &Cmd| {
            if c.display().starts_with("/sbin/zpool export") {
                *motd.lock().unwrap() = std::fs::read(w.work("a/etc/motd")).ok();
            }
        }),
    };
    let outcome = w.build(Host::Illumos, &hook, vec![Format::Qcow2]).unwrap();
    assert_eq!(outcome, Outcome::Built);
    let t = "TEMPORARY-g-img";
    assert_eq!(
        w.actions(),
        [
            "/usr/sbin/lofiadm -l -a W/output/.image-builder/work/g-img/lofi.raw".to_string(),
            format!(
                "/sbin/zpool create -d -B -t {t} -R W/output/.image-builder/work/g-img/altroot -o ashift=9 -o autoexpand=on \
                 -o listsnapshots=on -O compression=on -O atime=off rpool /dev/dsk/c9t1d0"
            ),
            format!("/sbin/zfs create -o canmount=off -o mountpoint=legacy {t}/ROOT"),
            format!(
                "/sbin/zfs create -o canmount=noauto -o mountpoint=legacy \
                 -o org.opensolaris.libbe:uuid={} -o org.opensolaris.libbe:policy=static {t}/ROOT/oi",
                uuid_of(&w)
            ),
            format!("/sbin/mount -F zfs {t}/ROOT/oi W/output/.image-builder/work/g-img/a"),
            format!("/sbin/zfs create -o mountpoint=/export/home {t}/export/home"),
            format!("/sbin/zpool set bootfs={t}/ROOT/oi {t}"),
            "/sbin/beadm activate oi".into(),
            format!("/sbin/bootadm install-bootloader -M -f -P {t} -R W/output/.image-builder/work/g-img/a"),
            "/sbin/bootadm update-archive -f -R W/output/.image-builder/work/g-img/a".into(),
            format!("/sbin/zpool trim {t}"),
            format!("/sbin/zpool sync {t}"),
            format!("/sbin/zpool export {t}"),
            "/usr/sbin/lofiadm -d W/output/.image-builder/work/g-img/lofi.raw".into(),
            "/usr/bin/qemu-img convert -f raw -O qcow2 W/output/g-img.raw W/output/g-img.qcow2.partial"
                .into(),
        ]
    );
    assert_eq!(
        motd.lock().unwrap().as_deref(),
        Some(&b"hi\n"[..]),
        "steps wrote into the image root"
    );
    assert!(!w.dir(WORK_DIR).exists(), "the work directory is removed");
    let out = w.dir("output/g-img.raw");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 300 << 20);
    let sums = std::fs::read_to_string(w.dir("output/SHA256SUMS")).unwrap();
    assert!(sums.contains("  g-img.raw\n"), "{sums}");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.dir("output/g-img.build.json")).unwrap()).unwrap();
    assert_eq!(
        rec["outputs"],
        serde_json::json!(["g-img.raw", "g-img.qcow2"])
    );
    assert!(!w
        .dir("output/.image-builder/journals/rpool%images%work%g%img.journal.json")
        .exists());
}

fn uuid_of(w: &World) -> String {
    w.rec
        .lines()
        .iter()
        .find_map(|l| l.split("org.opensolaris.libbe:uuid=").nth(1))
        .and_then(|r| r.split(' ').next())
        .unwrap_or("none")
        .to_string()
}

#[test]
fn illumos_pool_failure_unwinds_pool_device_and_work_directory() {
    let w = World::new(Host::Illumos);
    w.template(
        r#"{ "pool": { "name": "rpool", "size": 64, "bename": "oi" },
             "steps": [ { "t": "create_be" }, { "t": "make_bootable" } ] }"#,
    );
    // What illumos lofiadm prints for a labelled device: its block node with p0
    // (usr/src/cmd/lofiadm/main.c, add_mapping() printing make_blkdevname()).
    w.rec
        .on("/usr/sbin/lofiadm -l -a", Output::ok("/dev/dsk/c9t1d0p0\n"));
    w.rec.on(
        "/sbin/beadm activate",
        Output::failed(1, "beadm: no such BE"),
    );
    // The pool is not there at the start, and imported when cleanup asks.
    w.rec.on("/sbin/zpool list -H -o name", Output::ok(""));
    w.rec.always(
        "/sbin/zpool list -H -o name",
        Output::ok("TEMPORARY-g-img\n"),
    );
    let err = w
        .build(Host::Illumos, &*w.rec, vec![])
        .unwrap_err()
        .to_string();
    assert!(err.contains("beadm activate oi"), "{err}");
    let actions = w.actions();
    let after = actions
        .iter()
        .position(|l| l.starts_with("/sbin/beadm"))
        .unwrap();
    assert_eq!(
        &actions[after + 1..],
        [
            "/sbin/zpool export -f TEMPORARY-g-img",
            "/usr/sbin/lofiadm W/output/.image-builder/work/g-img/lofi.raw",
            "/usr/sbin/lofiadm -d W/output/.image-builder/work/g-img/lofi.raw",
        ]
    );
    assert!(!w.dir("output/g-img.raw").exists());
    assert!(!w.dir(WORK_DIR).exists(), "the work directory is removed");
    assert!(!w
        .dir("output/.image-builder/journals/rpool%images%work%g%img.journal.json")
        .exists());
}

#[test]
fn illumos_unlabelled_pool_is_created_on_the_p0_block_node() {
    let w = World::new(Host::Illumos);
    w.template(
        r#"{ "pool": { "name": "rpool", "size": 64, "bename": "oi", "label": false },
             "steps": [] }"#,
    );
    // What illumos lofiadm prints for a labelled device: its block node with p0
    // (usr/src/cmd/lofiadm/main.c, add_mapping() printing make_blkdevname()).
    w.rec
        .on("/usr/sbin/lofiadm -l -a", Output::ok("/dev/dsk/c9t1d0p0\n"));
    w.build(Host::Illumos, &*w.rec, vec![]).unwrap();
    let create = w
        .actions()
        .into_iter()
        .find(|l| l.starts_with("/sbin/zpool create"))
        .unwrap();
    // As the reference (src/main.rs run_build_pool): unlabelled, the pool gets the p0 node.
    assert!(create.ends_with(" rpool /dev/dsk/c9t1d0p0"), "{create}");
}

#[test]
fn unexpected_lofiadm_output_stops_a_pool_build_with_it_quoted() {
    let w = World::new(Host::Illumos);
    w.template(r#"{ "pool": { "name": "rpool", "size": 64, "bename": "oi" }, "steps": [] }"#);
    // Not what lofiadm prints for a labelled device (that is /dev/dsk/cXtYdZp0,
    // usr/src/cmd/lofiadm/main.c make_blkdevname()): an unlabelled node.
    w.rec
        .on("/usr/sbin/lofiadm -l -a", Output::ok("/dev/lofi/2\n"));
    let e = w
        .build(Host::Illumos, &*w.rec, vec![])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("printed \"/dev/lofi/2\", not a labelled device /dev/dsk/cXtYdZp0"),
        "{e}"
    );
    assert!(
        !w.actions()
            .iter()
            .any(|l| l.starts_with("/sbin/zpool create")),
        "{:?}",
        w.actions()
    );
}

#[test]
fn illumos_pcfs_and_ufs_command_lines() {
    let w = World::new(Host::Illumos);
    w.template(
        r#"{ "pcfs": { "label": "ESP", "size": 33 },
             "steps": [ { "t": "ensure_dir", "dir": "/EFI", "owner": "root", "group": "root", "mode": "755" } ] }"#,
    );
    w.unlabelled_lofi("lofi.pcfs", 3);
    w.build(Host::Illumos, &*w.rec, vec![]).unwrap();
    assert_eq!(
        w.actions(),
        [
            "/usr/sbin/lofiadm W/output/.image-builder/work/g-img/lofi.pcfs",
            "/usr/sbin/lofiadm -a W/output/.image-builder/work/g-img/lofi.pcfs",
            "/usr/sbin/mkfs -F pcfs -o b=ESP,nofdisk,size=67584 /dev/rlofi/3",
            "/sbin/mount -F pcfs -o noatime /dev/lofi/3 W/output/.image-builder/work/g-img/a",
            "/usr/bin/df -h W/output/.image-builder/work/g-img/a",
            "/sbin/umount W/output/.image-builder/work/g-img/a",
            "/usr/sbin/lofiadm W/output/.image-builder/work/g-img/lofi.pcfs",
            "/usr/sbin/lofiadm -d W/output/.image-builder/work/g-img/lofi.pcfs",
        ]
    );
    assert!(w.dir("output/g-img.pcfs").exists());
    assert!(!w.dir(WORK_DIR).exists(), "the work directory is removed");

    let w = World::new(Host::Illumos);
    w.template(r#"{ "ufs": { "size": 16, "inode_density": 4096 }, "steps": [] }"#);
    w.unlabelled_lofi("lofi.ufs", 4);
    w.build(Host::Illumos, &*w.rec, vec![]).unwrap();
    let a = w.actions();
    assert_eq!(
        a[1..5],
        [
            "/usr/sbin/lofiadm -a W/output/.image-builder/work/g-img/lofi.ufs",
            "/usr/sbin/newfs -o space -m 0 -i 4096 -b 4096 /dev/lofi/4",
            "/sbin/mount -F ufs -o nologging,noatime /dev/lofi/4 W/output/.image-builder/work/g-img/a",
            "/usr/bin/df -o i W/output/.image-builder/work/g-img/a",
        ]
    );
    let newfs = w
        .rec
        .calls()
        .into_iter()
        .find(|c| c.display().contains("newfs"))
        .unwrap();
    assert_eq!(
        newfs.get_stdin(),
        Some(&b"y\n"[..]),
        "newfs' question is answered"
    );
}

#[test]
fn ufs_is_refused_on_linux() {
    let w = World::new(Host::Linux);
    w.template(r#"{ "ufs": { "size": 16, "inode_density": 4096 }, "steps": [] }"#);
    let e = w
        .build(Host::Linux, &*w.rec, vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains("need an illumos host"), "{e}");
    assert!(w.rec.lines().is_empty(), "nothing ran: {:?}", w.rec.lines());
}

#[test]
fn illumos_hybrid_iso_command_lines() {
    let w = World::new(Host::Illumos);
    w.template(
        r#"{ "iso": { "boot_bios": "boot/cdboot", "boot_uefi": "boot/efiboot.img", "volume_id": "OI",
                     "hybrid": { "stage1": "/boot/pmbr", "stage2": "boot/isoboot" } },
             "steps": [
               { "t": "ensure_dir", "dir": "/boot", "owner": "root", "group": "root", "mode": "755" },
               { "t": "ensure_file", "file": "/boot/pmbr", "contents": "image pmbr", "owner": "root", "group": "root", "mode": "444" },
               { "t": "ensure_file", "file": "/boot/isoboot.1", "contents": "image isoboot", "owner": "root", "group": "root", "mode": "444" },
               { "t": "ensure_symlink", "link": "/boot/isoboot", "target": "/boot/isoboot.1", "owner": "root", "group": "root" } ] }"#,
    );
    // What illumos lofiadm prints for a labelled device: its block node with p0
    // (usr/src/cmd/lofiadm/main.c, add_mapping() printing make_blkdevname()).
    w.rec
        .on("/usr/sbin/lofiadm -l -a", Output::ok("/dev/dsk/c9t2d0p0\n"));
    w.rec.on(
        "/usr/bin/etdump",
        Output::ok(
            "et_platform=x86;et_system=i386;et_lba=35;et_sectors=4\n\
             et_platform=efi;et_system=i386;et_lba=36;et_sectors=8192\n",
        ),
    );
    // mkisofs is recorded, not run: it "writes" the image file to move out. The boot blocks
    // installboot gets are read as it runs (the work directory is gone afterwards).
    let stages = std::sync::Mutex::new(None);
    let hook = Hook {
        rec: &w.rec,
        at: Box::new(|c: &Cmd| {
            mkisofs_writes(c, b"iso");
            if c.display().starts_with("/usr/sbin/installboot") {
                let read = |n| std::fs::read(w.work(n)).unwrap();
                *stages.lock().unwrap() = Some((
                    read("scratch/installboot.stage1"),
                    read("scratch/installboot.stage2"),
                ));
            }
        }),
    };
    w.build(Host::Illumos, &hook, vec![]).unwrap();
    assert_eq!(
        w.actions()[..7],
        [
            "/usr/bin/mkisofs -N -l -R -U -d -D -c .catalog -allow-multidot -no-iso-translate \
             -cache-inodes -V OI -eltorito-boot boot/cdboot -no-emul-boot -boot-info-table \
             -eltorito-alt-boot -eltorito-platform efi -eltorito-boot boot/efiboot.img \
             -no-emul-boot -o W/output/.image-builder/work/g-img/output.iso W/output/.image-builder/work/g-img/scratch/proto",
            "/usr/sbin/lofiadm -l -a W/output/.image-builder/work/g-img/output.iso",
            "/usr/sbin/fdisk -A 190:0:0:0:0:0:0:0:3:60 /dev/rdsk/c9t2d0p0",
            "/usr/bin/etdump --format shell W/output/.image-builder/work/g-img/output.iso",
            "/usr/sbin/fdisk -A 239:0:0:0:0:0:0:0:144:8192 /dev/rdsk/c9t2d0p0",
            "/usr/sbin/installboot -fm W/output/.image-builder/work/g-img/scratch/installboot.stage1 W/output/.image-builder/work/g-img/scratch/installboot.stage2 \
             /dev/rdsk/c9t2d0p2",
            "/usr/sbin/lofiadm W/output/.image-builder/work/g-img/output.iso",
        ]
    );
    // The boot blocks installboot got are the image's, the absolute stage1 path and the
    // absolute symlink of stage2 both resolved inside the image tree.
    let (stage1, stage2) = stages.lock().unwrap().take().unwrap();
    assert_eq!(stage1, b"image pmbr");
    assert_eq!(stage2, b"image isoboot");
    assert_eq!(std::fs::read(w.dir("output/g-img.iso")).unwrap(), b"iso");
    assert!(!w.dir(WORK_DIR).exists(), "the work directory is removed");
}

#[test]
fn a_hybrid_iso_boot_block_missing_from_the_image_is_an_error_naming_the_field() {
    let w = World::new(Host::Illumos);
    // stage1 exists on many build hosts, never in this empty image.
    w.template(
        r#"{ "iso": { "boot_uefi": "boot/efiboot.img",
                     "hybrid": { "stage1": "/boot/pmbr", "stage2": "/boot/isoboot" } },
             "steps": [] }"#,
    );
    // What illumos lofiadm prints for a labelled device: its block node with p0
    // (usr/src/cmd/lofiadm/main.c, add_mapping() printing make_blkdevname()).
    w.rec
        .on("/usr/sbin/lofiadm -l -a", Output::ok("/dev/dsk/c9t2d0p0\n"));
    w.rec.on(
        "/usr/bin/etdump",
        Output::ok("et_platform=efi;et_system=i386;et_lba=36;et_sectors=8192\n"),
    );
    let hook = Hook {
        rec: &w.rec,
        at: Box::new(|c: &Cmd| mkisofs_writes(c, b"iso")),
    };
    let e = w
        .build(Host::Illumos, &hook, vec![])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("iso hybrid stage1 \"/boot/pmbr\": "), "{e}");
    let actions = w.actions();
    assert!(
        !actions.iter().any(|l| l.contains("installboot")),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|l| l == "/usr/sbin/lofiadm -d W/output/.image-builder/work/g-img/output.iso"),
        "the device is detached: {actions:?}"
    );
}
