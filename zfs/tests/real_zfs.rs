//! ZFS tier: [`ZfsCli`] against a real OpenZFS.
//!
//! These tests need the ZFS kernel module (`/dev/zfs`). `scripts/zfs-tier` runs them inside
//! the zfs-vm guest with `IB_ZFS_TIER=1`. Without `IB_ZFS_TIER` they report themselves as
//! skipped; with it, a missing `/dev/zfs` is a failure, so the tier cannot pass by running
//! nowhere. Every pool lives on a sparse file in the test's own temporary directory, with
//! its file systems mounted under that directory (altroot).

use std::cell::RefCell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use runner::SystemRunner;
use tempfile::TempDir;
use zfs::{CreateOptions, Health, PoolCreate, PoolImport, Zfs, ZfsCli, ZfsError, ZfsTools};

const USER_PROP: &str = "org.illumos.image-builder:key";

type Cli = ZfsCli<SystemRunner>;

/// The real `zfs`/`zpool`, or `None` (after saying so) outside the ZFS tier.
fn tier() -> Option<Cli> {
    if std::env::var_os("IB_ZFS_TIER").is_none() {
        // Straight to stderr, past the test harness's capture (a skip must show), in one
        // write so that tests skipping in parallel do not interleave their lines.
        let test = std::thread::current().name().unwrap_or("").to_string();
        let line = format!("{test}: skipped: no /dev/zfs (run scripts/zfs-tier)\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        return None;
    }
    assert!(
        Path::new("/dev/zfs").exists(),
        "IB_ZFS_TIER is set but /dev/zfs is missing: the ZFS module is not loaded"
    );
    Some(ZfsCli::new(
        SystemRunner::new(),
        ZfsTools::in_dir("/usr/sbin"),
    ))
}

/// A pool on a sparse file, destroyed (under whatever name it has by then) when dropped.
struct TestPool<'a> {
    zfs: &'a Cli,
    name: RefCell<String>,
    dir: TempDir,
}

impl<'a> TestPool<'a> {
    fn new(zfs: &'a Cli, tag: &str) -> TestPool<'a> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ibt{}{}{}",
            std::process::id(),
            tag,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let vdev = dir.path().join("vdev");
        // 128 MiB: above the 64 MiB minimum, and sparse, so it costs almost nothing.
        fs::File::create(&vdev)
            .and_then(|f| f.set_len(128 << 20))
            .expect("sparse vdev file");
        let spec = PoolCreate::new(&name, [path_str(&vdev)])
            .altroot(path_str(&dir.path().join("root")))
            .pool_prop("cachefile", "none");
        zfs.pool_create(&spec)
            .expect("zpool create on a sparse file");
        TestPool {
            zfs,
            name: RefCell::new(name),
            dir,
        }
    }

    fn name(&self) -> String {
        self.name.borrow().clone()
    }

    fn ds(&self, rest: &str) -> String {
        format!("{}/{rest}", self.name.borrow())
    }

    /// Where `dataset` is mounted (the altroot is part of the `mountpoint` value).
    fn mountpoint(&self, dataset: &str) -> PathBuf {
        let m = self
            .zfs
            .get(dataset, "mountpoint")
            .expect("zfs get mountpoint")
            .expect("mountpoint is always set");
        PathBuf::from(m)
    }
}

impl Drop for TestPool<'_> {
    fn drop(&mut self) {
        let name = self.name.borrow().clone();
        if self.zfs.pools().is_ok_and(|p| p.contains(&name)) {
            if let Err(e) = self.zfs.pool_destroy(&name, true) {
                let _ = writeln!(std::io::stderr(), "cleanup: zpool destroy {name}: {e}");
            }
        }
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("temporary paths are UTF-8").to_string()
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn pool_on_a_sparse_file() {
    let Some(zfs) = tier() else { return };
    let pool = TestPool::new(&zfs, "p");
    let name = pool.name();

    assert!(zfs.pools().unwrap().contains(&name));
    assert_eq!(zfs.pool_health(&name).unwrap(), Health::Online);
    let size: u64 = zfs.pool_get(&name, "size").unwrap().parse().unwrap();
    assert!(
        (100 << 20..=128 << 20).contains(&size),
        "pool size {size} for a 128 MiB vdev"
    );
    zfs.pool_set(&name, "comment", "zfs tier").unwrap();
    assert_eq!(zfs.pool_get(&name, "comment").unwrap(), "zfs tier");

    assert!(zfs.exists(&name).unwrap());
    assert!(!zfs.exists(&format!("{name}x")).unwrap());
    assert!(matches!(
        zfs.pool_health(&format!("{name}x")),
        Err(ZfsError::NotFound { .. })
    ));
    let root = pool.mountpoint(&name);
    assert!(
        root.starts_with(pool.dir.path()),
        "{root:?} outside altroot"
    );
    assert!(root.is_dir());
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn datasets_snapshots_rollback_destroy() {
    let Some(zfs) = tier() else { return };
    let pool = TestPool::new(&zfs, "d");
    let work = pool.ds("images/work");

    zfs.create(&work, &CreateOptions::new().parents()).unwrap();
    assert!(zfs.exists(&pool.ds("images")).unwrap());
    assert!(zfs.exists(&work).unwrap());
    assert!(!zfs.exists(&pool.ds("images/other")).unwrap());
    assert!(!zfs.exists(&pool.ds("nothing/below")).unwrap());
    assert!(matches!(
        zfs.create(&work, &CreateOptions::new()),
        Err(ZfsError::AlreadyExists { .. })
    ));
    zfs.create(
        &pool.ds("images/scratch"),
        &CreateOptions::new().prop("sync", "disabled"),
    )
    .unwrap();
    assert_eq!(
        zfs.children(&pool.ds("images")).unwrap(),
        [pool.ds("images/scratch"), work.clone()]
    );
    assert_eq!(
        zfs.get(&pool.ds("images/scratch"), "sync")
            .unwrap()
            .as_deref(),
        Some("disabled")
    );

    let file = pool.mountpoint(&work).join("stage.txt");
    fs::write(&file, "strap").unwrap();
    let strap = format!("{work}@strap");
    zfs.snapshot(&strap, &[]).unwrap();
    assert!(zfs.exists(&strap).unwrap());
    assert!(!zfs.exists(&format!("{work}@image")).unwrap());
    assert!(matches!(
        zfs.snapshot(&strap, &[]),
        Err(ZfsError::AlreadyExists { .. })
    ));

    fs::write(&file, "image").unwrap();
    let image = format!("{work}@image");
    zfs.snapshot(&image, &[]).unwrap();
    fs::write(&file, "dirty").unwrap();
    assert_eq!(
        zfs.snapshots(&work).unwrap(),
        [strap.clone(), image.clone()]
    );

    zfs.rollback(&image).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "image");
    // Rolling back past a later snapshot destroys it.
    zfs.rollback(&strap).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "strap");
    assert_eq!(zfs.snapshots(&work).unwrap(), std::slice::from_ref(&strap));
    assert!(!zfs.exists(&image).unwrap());

    let clone = pool.ds("images/clone");
    zfs.clone_snapshot(&strap, &clone, &[("canmount", "noauto")])
        .unwrap();
    assert_eq!(
        zfs.get(&clone, "origin").unwrap().as_deref(),
        Some(strap.as_str())
    );
    zfs.destroy(&clone, false).unwrap();
    assert!(!zfs.exists(&clone).unwrap());

    // Several snapshots of one dataset in one command (zfs-destroy(8)'s comma list).
    for s in ["c1", "c2", "c3"] {
        zfs.snapshot(&format!("{work}@{s}"), &[]).unwrap();
    }
    zfs.destroy_snapshots(&work, &["c1", "c3"]).unwrap();
    assert_eq!(
        zfs.snapshots(&work).unwrap(),
        [strap.clone(), format!("{work}@c2")]
    );
    zfs.destroy(&format!("{work}@c2"), false).unwrap();

    zfs.destroy(&strap, false).unwrap();
    assert!(!zfs.exists(&strap).unwrap());
    assert!(zfs.exists(&work).unwrap());
    zfs.snapshot(&format!("{work}@again"), &[]).unwrap();
    zfs.destroy(&pool.ds("images"), true).unwrap();
    assert!(!zfs.exists(&work).unwrap());
    assert!(!zfs.exists(&pool.ds("images")).unwrap());
    assert!(matches!(
        zfs.destroy(&work, false),
        Err(ZfsError::NotFound { .. })
    ));
    assert!(matches!(
        zfs.rollback(&strap),
        Err(ZfsError::NotFound { .. })
    ));
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn user_properties_on_datasets_and_snapshots() {
    let Some(zfs) = tier() else { return };
    let pool = TestPool::new(&zfs, "u");
    let ds = pool.ds("stage");
    zfs.create(&ds, &CreateOptions::new()).unwrap();

    assert_eq!(zfs.get(&ds, USER_PROP).unwrap(), None);
    zfs.set(&ds, USER_PROP, "sha256:0123abcd").unwrap();
    assert_eq!(
        zfs.get(&ds, USER_PROP).unwrap().as_deref(),
        Some("sha256:0123abcd")
    );
    // A value of "-" is a set value, not "unset".
    zfs.set(&ds, "org.example:dash", "-").unwrap();
    assert_eq!(
        zfs.get(&ds, "org.example:dash").unwrap().as_deref(),
        Some("-")
    );
    zfs.set(&ds, "org.example:spaced", "two words\tand a tab")
        .unwrap();
    assert_eq!(
        zfs.get(&ds, "org.example:spaced").unwrap().as_deref(),
        Some("two words\tand a tab")
    );

    let snap = format!("{ds}@out");
    zfs.snapshot(&snap, &[(USER_PROP, "key-at-creation")])
        .unwrap();
    assert_eq!(
        zfs.get(&snap, USER_PROP).unwrap().as_deref(),
        Some("key-at-creation")
    );
    // The data set's own value is unchanged by the snapshot's.
    assert_eq!(
        zfs.get(&ds, USER_PROP).unwrap().as_deref(),
        Some("sha256:0123abcd")
    );
    let child = pool.ds("stage/child");
    zfs.create(&child, &CreateOptions::new()).unwrap();
    assert_eq!(
        zfs.get(&child, USER_PROP).unwrap().as_deref(),
        Some("sha256:0123abcd"),
        "user properties are inherited"
    );
    assert!(matches!(
        zfs.get(&pool.ds("missing"), USER_PROP),
        Err(ZfsError::NotFound { .. })
    ));
}

#[test]
#[ignore = "ZFS tier: needs /dev/zfs; scripts/zfs-tier runs it in the real-OpenZFS guest"]
fn export_and_import_under_a_new_name() {
    let Some(zfs) = tier() else { return };
    let pool = TestPool::new(&zfs, "e");
    let old = pool.name();
    let ds = pool.ds("data");
    zfs.create(&ds, &CreateOptions::new()).unwrap();
    zfs.set(&ds, USER_PROP, "survives").unwrap();
    fs::write(pool.mountpoint(&ds).join("f"), "payload").unwrap();
    zfs.snapshot(&format!("{ds}@s"), &[]).unwrap();

    zfs.pool_export(&old, false).unwrap();
    assert!(!zfs.pools().unwrap().contains(&old));
    assert!(!zfs.exists(&old).unwrap());
    assert!(matches!(
        zfs.pool_export(&old, false),
        Err(ZfsError::NotFound { .. })
    ));

    let new = format!("{old}n");
    zfs.pool_import(
        &PoolImport::new(&old)
            .dir(path_str(pool.dir.path()))
            .new_name(&new)
            .altroot(path_str(&pool.dir.path().join("root")))
            .prop("cachefile", "none"),
    )
    .unwrap();
    *pool.name.borrow_mut() = new.clone();

    let pools = zfs.pools().unwrap();
    assert!(pools.contains(&new) && !pools.contains(&old), "{pools:?}");
    assert!(!zfs.exists(&ds).unwrap());
    let moved = format!("{new}/data");
    assert!(zfs.exists(&moved).unwrap());
    assert!(zfs.exists(&format!("{moved}@s")).unwrap());
    assert_eq!(
        zfs.get(&moved, USER_PROP).unwrap().as_deref(),
        Some("survives")
    );
    assert_eq!(
        fs::read_to_string(pool.mountpoint(&moved).join("f")).unwrap(),
        "payload"
    );
    assert_eq!(zfs.pool_health(&new).unwrap(), Health::Online);
}
