//! `pool` builds: a raw disk image holding a ZFS pool, as the reference's
//! `run_build_pool`, with cleanup that holds and a watch on the pool's health.
//!
//! The pool is created under its on-disk name (`rpool`) but imported as
//! `TEMPORARY-GROUP-OUTPUT` with an altroot, so it never clashes with the host's pools or
//! mountpoints and `rpool` is what the booted system finds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use runner::Cmd;
use zfs::{Health, PoolCreate, Zfs, ZfsCli, ZfsTools};

use super::device;
use super::error::BuildError;
use super::gpt::Label;
use super::journal::Undo;
use super::layout::ImageFile;
use super::work::Work;
use crate::host::{Host, Tool};
use crate::steps::PoolCx;
use crate::template::model::Pool;

/// Limit for each `zfs`/`zpool` command of a pool build.
const ZFS_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the pool's health is checked while steps run (each check is a `zpool`
/// process; under emulation they are not free).
const WATCH_EVERY: Duration = Duration::from_secs(10);

pub(super) fn build(w: &mut Work, p: &Pool) -> Result<Vec<(PathBuf, String)>, BuildError> {
    let host = w.env.host;
    let runner = w.env.runner;
    let tools = ZfsTools::new(host.tool(Tool::Zfs), host.tool(Tool::Zpool));
    let zfs = ZfsCli::new(runner, tools.clone()).with_timeout(ZFS_TIMEOUT);
    let temp = format!("TEMPORARY-{}", w.stem());
    let image = w.work_dir.join("lofi.raw");
    let altroot = w.work_dir.join("altroot");
    let root = w.work_dir.join("a");
    let uefi = p.uefi.unwrap_or(false);
    let label = p.label.unwrap_or(true);
    let bytes = p.size << 20;

    // Leftovers of a run that crashed without its journal.
    if pool_imported(host, &zfs, &temp)? {
        zfs.pool_destroy(&temp, true)?;
    }
    // No device can be attached to the image file: it is made below, in a work dataset
    // this build has just created.
    for d in [&altroot, &root] {
        std::fs::create_dir_all(d).map_err(|e| BuildError::io(d, e))?;
    }
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(bytes))
        .map_err(|e| BuildError::io(&image, e))?;

    let mut esp = None;
    let mut disk = None;
    let mut detach_mark = None;
    let mut attached = None;
    let vdev = match host {
        Host::Illumos => {
            detach_mark = Some(w.journal.push(Undo::DetachDevice {
                file: image.clone(),
            })?);
            // As the reference: always a labelled lofi; the pool gets the whole disk
            // /dev/dsk/cXtYdZ (zpool writes the EFI label) or, unlabelled, its block p0
            // node /dev/dsk/cXtYdZp0 (what lofiadm printed).
            let dev = device::attach(&w.system(), &image, true)?;
            let vdev = if label {
                dev.disk.clone()
            } else {
                format!("{}p0", dev.disk)
            };
            attached = Some(dev);
            vdev
        }
        Host::Linux if label => {
            let l = Label::plan(bytes, uefi).map_err(|source| BuildError::PoolSize {
                size: p.size,
                source,
            })?;
            l.write(&image).map_err(|source| BuildError::Label {
                path: image.clone(),
                source,
            })?;
            detach_mark = Some(w.journal.push(Undo::DetachDevice {
                file: image.clone(),
            })?);
            let dev = device::attach(&w.system(), &image, true)?;
            let part = dev.partition(l.zfs().number);
            wait_for(&part)?;
            if let Some(s) = l.esp() {
                let e = dev.partition(s.number);
                wait_for(&e)?;
                esp = Some(e);
            }
            disk = Some(image.clone());
            attached = Some(dev);
            part
        }
        // Unlabelled: the image file itself is the vdev.
        Host::Linux => image.display().to_string(),
    };

    let export_mark = w.journal.push(Undo::ExportPool { pool: temp.clone() })?;
    let mut spec = PoolCreate::new(&p.name, [vdev])
        .temp_name(&temp)
        .altroot(altroot.display().to_string())
        .fs_prop("compression", p.compression.as_deref().unwrap_or("on"))
        .pool_prop("ashift", p.ashift.unwrap_or(9).to_string());
    if p.no_features.unwrap_or(true) {
        spec = spec.no_features();
    }
    if uefi && host == Host::Illumos {
        spec = spec.boot_partition();
    }
    if p.autoexpand.unwrap_or(false) {
        spec = spec.pool_prop("autoexpand", "on");
    }
    for o in &p.options {
        let (k, v) = assignment("options", o)?;
        spec = spec.pool_prop(k, v);
    }
    for o in &p.fsoptions {
        let (k, v) = assignment("fsoptions", o)?;
        spec = spec.fs_prop(k, v);
    }
    zfs.pool_create(&spec)?;
    let unmount = w.journal.push(Undo::Unmount { path: root.clone() })?;

    let pcx = PoolCx {
        temp_name: temp.clone(),
        name: p.name.clone(),
        bename: p.bename.clone().unwrap_or_else(random_bename),
        altroot: altroot.clone(),
        esp,
        disk,
    };
    let watch = ZfsCli::new(runner, tools).with_timeout(Duration::from_secs(30));
    let stop = AtomicBool::new(false);
    let bad = Mutex::new(None::<Health>);
    let result = std::thread::scope(|s| {
        s.spawn(|| watch_health(host, &watch, &temp, &stop, &bad));
        let r = w.run_steps(&root, Some(&pcx));
        stop.store(true, Ordering::SeqCst);
        r
    });
    if let Some(h) = bad.lock().ok().and_then(|g| g.clone()) {
        // The watch interrupted the steps; the build's error is the pool's state.
        runner::interrupt::clear();
        return Err(BuildError::PoolFailed {
            pool: temp.to_string(),
            health: h.to_string(),
        });
    }
    result?;

    tracing::info!("steps done; finishing pool {temp}");
    device::unmount(&w.system(), &root).map_err(zfs::ZfsError::from)?;
    w.journal.done(unmount)?;
    if p.trim.unwrap_or(true) {
        trim(runner, host, &temp);
    }
    // Only when asked for: one more zfs process.
    if tracing::enabled!(tracing::Level::DEBUG) {
        let stats = Cmd::new(host.tool(Tool::Zfs))
            .args([
                "get",
                "-H",
                "-o",
                "property,value",
                "used,available,compressratio",
                &temp,
            ])
            .timeout(ZFS_TIMEOUT);
        if let Ok(o) = runner.run(&stats) {
            tracing::debug!("pool {temp}: {}", o.stdout_str().replace('\n', "; "));
        }
    }
    runner
        .run(
            &Cmd::new(host.tool(Tool::Zpool))
                .args(["sync", &temp])
                .timeout(ZFS_TIMEOUT),
        )
        .map_err(zfs::ZfsError::from)?;
    zfs.pool_export(&temp, false)?;
    w.journal.done(export_mark)?;
    tracing::info!("pool {temp} exported");
    let mut products = vec![(image.clone(), ImageFile::Raw.name(&w.stem()))];
    if label && p.partition_only.unwrap_or(false) {
        let part = w.work_dir.join("partonly");
        extract_zfs_slice(&image, &part)?;
        products.push((part, ImageFile::PartOnly.name(&w.stem())));
    }
    if let Some(dev) = &attached {
        device::detach_device(&w.system(), &image, dev).map_err(zfs::ZfsError::from)?;
    }
    if let Some(m) = detach_mark {
        w.journal.done(m)?;
    }
    Ok(products)
}

/// `k=v` from a template's `options`/`fsoptions` entry.
fn assignment<'a>(field: &str, o: &'a str) -> Result<(&'a str, &'a str), BuildError> {
    o.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| BuildError::NotAssignment {
            field: field.to_string(),
            entry: o.to_string(),
        })
}

/// Eight hex digits, as the reference: BE names share beadm's namespace with the host.
fn random_bename() -> String {
    super::gpt::random_uuid()[..8].to_string()
}

/// Waits for a partition's device node (devtmpfs makes it shortly after `losetup -P`).
fn wait_for(dev: &str) -> Result<(), BuildError> {
    for _ in 0..100 {
        if Path::new(dev).exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(BuildError::NoPartition {
        device: dev.to_string(),
    })
}

/// Polls the pool's health until `stop`; on a pool that can no longer do I/O, records the
/// state and interrupts the running commands so the build fails instead of hanging.
fn watch_health(
    host: Host,
    zfs: &dyn Zfs,
    pool: &str,
    stop: &AtomicBool,
    bad: &Mutex<Option<Health>>,
) {
    let mut waited = Duration::ZERO;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        waited += Duration::from_millis(100);
        if waited < WATCH_EVERY {
            continue;
        }
        waited = Duration::ZERO;
        match health(host, zfs, pool) {
            Ok(h @ (Health::Unavail | Health::Suspended | Health::Faulted)) => {
                tracing::error!("pool {pool} is {h}: stopping the build");
                if let Ok(mut g) = bad.lock() {
                    *g = Some(h);
                }
                runner::interrupt::request();
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("health of {pool}: {e}"),
        }
    }
}

/// A pool's health. On Linux, OpenZFS publishes it in `/proc/spl/kstat/zfs/POOL/state`,
/// which costs no process; elsewhere (or without that file) `zpool list -o health`.
fn health(host: Host, zfs: &dyn Zfs, pool: &str) -> zfs::Result<Health> {
    if host == Host::Linux && !pool.contains('/') {
        let kstat = Path::new("/proc/spl/kstat/zfs").join(pool).join("state");
        if let Ok(s) = std::fs::read_to_string(kstat) {
            return Ok(Health::parse(s.trim()));
        }
    }
    zfs.pool_health(pool)
}

/// Whether `pool` is imported: on Linux from OpenZFS' kstat directory (no process), else
/// `zpool list`.
fn pool_imported(host: Host, zfs: &dyn Zfs, pool: &str) -> zfs::Result<bool> {
    // Each imported pool has a directory there (its txgs, reads, state ...).
    let kstat = Path::new("/proc/spl/kstat/zfs");
    if host == Host::Linux && !pool.contains('/') && kstat.is_dir() {
        return Ok(kstat.join(pool).is_dir());
    }
    Ok(zfs.pools()?.iter().any(|p| p == pool))
}

/// `zpool trim`, then waits (bounded) until it is done. Best effort: a device without
/// TRIM/discard support is fine, as for the reference.
fn trim(runner: &dyn runner::Runner, host: Host, pool: &str) {
    let zpool = host.tool(Tool::Zpool);
    if let Err(e) = runner.run(&Cmd::new(zpool).args(["trim", pool]).timeout(ZFS_TIMEOUT)) {
        tracing::info!("zpool trim {pool} failed (not fatal): {e}");
        return;
    }
    tracing::info!("waiting for zpool trim {pool}");
    for _ in 0..600 {
        let status = runner.run(
            &Cmd::new(zpool)
                .args(["status", "-t", pool])
                .timeout(Duration::from_secs(60)),
        );
        match status {
            Ok(o) if o.stdout_str().contains("trimmed, started") => {
                std::thread::sleep(Duration::from_millis(200))
            }
            _ => return,
        }
    }
}

/// Copies the ZFS slice (illumos type `usr`) out of a labelled image.
fn extract_zfs_slice(image: &Path, out: &Path) -> Result<(), BuildError> {
    let (offset, len) = super::gpt::find_zfs_slice(image).map_err(|source| BuildError::Label {
        path: image.to_path_buf(),
        source,
    })?;
    super::convert::copy_range_sparse(image, offset, len, out)
}
