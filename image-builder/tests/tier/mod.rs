//! The ZFS tier's shared fixture: the gate that runs a test only inside the real-OpenZFS
//! guest (`scripts/zfs-tier` sets `IB_ZFS_TIER=1` there), a scratch pool on a sparse file
//! that is destroyed when dropped, and a way to run a template through the build engine.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use image_builder::build::{self, BuildError, BuildOptions, Env, Outcome};
use image_builder::host::Host;
use image_builder::steps::SmfSeeding;
use image_builder::template::{plan, Features, Plan, PlanOptions};
use runner::SystemRunner;
use tempfile::TempDir;
use zfs::{CreateOptions, PoolCreate, Zfs, ZfsCli, ZfsTools};

pub type Cli = ZfsCli<SystemRunner>;

/// Whether this test runs: inside the tier it must (a missing `/dev/zfs` fails it);
/// elsewhere it says it is skipped, under the name of the running test.
pub fn in_tier() -> bool {
    if std::env::var_os("IB_ZFS_TIER").is_none() {
        let test = std::thread::current().name().unwrap_or("").to_string();
        let _ = std::io::stderr()
            .write_all(format!("{test}: skipped: no /dev/zfs (run scripts/zfs-tier)\n").as_bytes());
        return false;
    }
    assert!(
        Path::new("/dev/zfs").exists(),
        "IB_ZFS_TIER is set but /dev/zfs is missing"
    );
    true
}

/// The guest's `zfs` and `zpool`, when this test runs (see [`in_tier`]).
pub fn tier() -> Option<Cli> {
    in_tier().then(|| ZfsCli::new(SystemRunner::new(), ZfsTools::in_dir("/usr/sbin")))
}

/// A pool on a sparse file in a temporary directory, with the root dataset
/// `POOL/images` for builds, mounted under an altroot in that directory and never
/// written to a cache file. Destroyed (forcibly) when dropped.
pub struct ScratchPool<'a> {
    pub zfs: &'a Cli,
    pub name: String,
    pub dir: TempDir,
}

impl<'a> ScratchPool<'a> {
    /// A pool of `size` bytes named `PREFIX<pid>x<n>`: unique per process and call.
    pub fn new(zfs: &'a Cli, prefix: &str, size: u64) -> ScratchPool<'a> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().unwrap();
        let vdev = dir.path().join("vdev");
        std::fs::File::create(&vdev)
            .and_then(|f| f.set_len(size))
            .unwrap();
        zfs.pool_create(
            &PoolCreate::new(&name, [vdev.display().to_string()])
                .altroot(dir.path().join("mnt").display().to_string())
                .pool_prop("cachefile", "none"),
        )
        .unwrap();
        let pool = ScratchPool { zfs, name, dir };
        zfs.create(&pool.dataset(), &CreateOptions::new()).unwrap();
        pool
    }

    /// The root dataset builds go to (`-d`).
    pub fn dataset(&self) -> String {
        format!("{}/images", self.name)
    }

    /// Where templates live: `<dir>/t`, with groups as subdirectories.
    pub fn templates(&self) -> PathBuf {
        self.dir.path().join("t")
    }

    /// Writes `(path, text)` pairs below [`Self::templates`].
    pub fn write_templates(&self, files: &[(&str, &str)]) {
        for (path, text) in files {
            let p = self.templates().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    /// Creates `DATASET/output` (with parents) ahead of a build, for inputs such as the
    /// tarball a disk image unpacks, and returns where it is mounted.
    pub fn make_output_dir(&self) -> PathBuf {
        self.zfs
            .create(
                &format!("{}/output", self.dataset()),
                &CreateOptions::new().parents(),
            )
            .unwrap();
        self.output_dir()
    }

    /// Where `DATASET/output` is mounted.
    pub fn output_dir(&self) -> PathBuf {
        self.mountpoint(&format!("{}/output", self.dataset()))
    }

    pub fn mountpoint(&self, dataset: &str) -> PathBuf {
        PathBuf::from(self.zfs.get(dataset, "mountpoint").unwrap().unwrap())
    }

    /// Build options for this pool's root dataset and templates, as a build on a Linux
    /// host runs them: SMF left to first boot, a fixed timestamp for reproducible outputs.
    pub fn opts(&self) -> BuildOptions {
        BuildOptions {
            svccfg: PathBuf::from("/nonexistent/svccfg"),
            smf: SmfSeeding::AtFirstBoot,
            source_date_epoch: Some(1_700_000_000),
            ..BuildOptions::new(self.dataset(), self.templates())
        }
    }

    /// The plan of `group/name` with `features`; the test fails on any template problem.
    pub fn plan(&self, group: &str, name: &str, features: &Features) -> Plan {
        let p = plan(
            &self.templates(),
            group,
            name,
            features,
            &PlanOptions::default(),
        );
        assert!(p.is_valid(), "{:?}", p.problems);
        p
    }

    /// Builds `plan` on this host (Linux) with `opts`, printing each event as JSON.
    pub fn build_plan(&self, p: &Plan, opts: &BuildOptions) -> Result<Outcome, BuildError> {
        let runner = SystemRunner::new();
        let env = Env {
            host: Host::Linux,
            runner: &runner,
            zfs: self.zfs,
        };
        build::build(p, opts, &env, &mut |e| {
            eprintln!("{}", serde_json::to_string(e).unwrap())
        })
    }

    /// Builds `group/name` with no features and [`Self::opts`].
    pub fn build(&self, group: &str, name: &str) -> Result<Outcome, BuildError> {
        let p = self.plan(group, name, &Features::default());
        self.build_plan(&p, &self.opts())
    }
}

/// What `create_be` and the template's `create_dataset` steps make, as `inspect` reports
/// it: `ROOT` canmount=off mountpoint=legacy; the boot environment `ROOT/BE` noauto and
/// legacy with libbe's static policy and a UUID; `export` and `export/home` mounted there.
pub fn assert_boot_environment(datasets: &[image_builder::build::inspect::Dataset], be: &str) {
    let ds = |n: &str| {
        datasets
            .iter()
            .find(|d| d.name == n)
            .unwrap_or_else(|| panic!("no dataset {n} in {datasets:?}"))
    };
    assert_eq!(
        (ds("ROOT").canmount.as_str(), ds("ROOT").mountpoint.as_str()),
        ("off", "legacy")
    );
    let b = ds(&format!("ROOT/{be}"));
    assert_eq!(
        (b.canmount.as_str(), b.mountpoint.as_str()),
        ("noauto", "legacy")
    );
    assert!(b
        .libbe
        .contains(&("org.opensolaris.libbe:policy".into(), "static".into())));
    let uuid = &b
        .libbe
        .iter()
        .find(|(k, _)| k == "org.opensolaris.libbe:uuid")
        .unwrap_or_else(|| panic!("no libbe uuid on ROOT/{be}: {:?}", b.libbe))
        .1;
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(ds("export").mountpoint, "/export");
    assert_eq!(ds("export/home").mountpoint, "/export/home");
}

impl Drop for ScratchPool<'_> {
    fn drop(&mut self) {
        let _ = self.zfs.pool_destroy(&self.name, true);
    }
}

/// A stand-in for the loader's `/boot/pmbr`: one sector with a jump, pmbr's default
/// stage2 fields (1 sector at LBA 256), a protective partition entry and the magic.
pub fn fake_pmbr() -> Vec<u8> {
    let mut s = vec![0x90u8; 512];
    s[..2].copy_from_slice(&[0xeb, 0x3c]);
    s[0xfa..0xfc].copy_from_slice(&[1, 1]);
    s[0xfc..0xfe].copy_from_slice(&1u16.to_le_bytes());
    s[0xfe..0x106].copy_from_slice(&256u64.to_le_bytes());
    s[0x106..0x200].fill(0);
    s[0x1be + 4] = 0xee;
    s[0x1fe..].copy_from_slice(&[0x55, 0xaa]);
    s
}

/// A stand-in loader boot block (`/boot/gptzfsboot`, or an EFI loader carrying the same
/// header): `len` bytes with a multiboot header at offset 8 (a.out kludge, code up to
/// `len`), whose `bss_end_addr`/`entry_addr` installboot overwrites with the partition LBA.
pub fn fake_boot_block(len: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let (magic, flags) = (0x1bad_b002u32, 0x0001_0000u32);
    let words = [
        magic,
        flags,
        0u32.wrapping_sub(magic).wrapping_sub(flags),
        8,
        0,
        len as u32,
        0,
        0,
    ];
    for (i, w) in words.iter().enumerate() {
        b[8 + 4 * i..12 + 4 * i].copy_from_slice(&w.to_le_bytes());
    }
    b
}
