//! Embedded ZFS: on a Linux host without the ZFS module, `image-builder build` runs itself
//! inside the zfs-vm guest (a small QEMU machine with Debian's kernel and a real OpenZFS),
//! the way libguestfs edits disks without root. The pool lives in a disk image in the
//! user's cache, so stages and their cache persist between runs; outputs come back to a
//! host directory shared into the guest.
//!
//! The pool is the first component of `-d`: `-d ibpool/images` keeps `ibpool` in
//! `~/.cache/image-builder/embedded/ibpool.img`.

use std::path::{Path, PathBuf};

pub mod warm;

use runner::{Cmd, Runner};
use zfs::{CreateOptions, PoolCreate, PoolImport, Zfs};

/// Why the embedded guest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("{0}")]
    Setup(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Command(#[from] runner::RunError),
    #[error(transparent)]
    Zfs(#[from] zfs::ZfsError),
}

fn io(path: &Path, source: std::io::Error) -> EmbeddedError {
    EmbeddedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The illumos ZFS partition type ("solaris /usr"), so the pool image is also a disk an
/// illumos host recognises.
const ZFS_PARTITION_TYPE: &str = "6A898CC3-1DD2-11B2-99A6-080020736631";

/// Whether builds must go through the guest: a Linux host without `/dev/zfs`.
pub fn needed(host: crate::host::Host) -> bool {
    host == crate::host::Host::Linux && !Path::new("/dev/zfs").exists()
}

/// The pool named by a `-d` dataset.
pub fn pool_of(dataset: &str) -> &str {
    dataset.split('/').next().unwrap_or(dataset)
}

/// `${XDG_CACHE_HOME:-~/.cache}/image-builder/embedded`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("image-builder/embedded")
}

/// The zfs-vm harness: `$IMAGE_BUILDER_ZFS_VM`, the source tree's `scripts/zfs-vm`
/// beside the running binary's `target/`, or `PREFIX/share/image-builder/zfs-vm`.
pub fn harness() -> Result<PathBuf, EmbeddedError> {
    if let Some(p) = std::env::var_os("IMAGE_BUILDER_ZFS_VM") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| io(Path::new("/proc/self/exe"), e))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates: Vec<PathBuf> = dir
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "target"))
        .and_then(Path::parent)
        .map(|top| top.join("scripts/zfs-vm"))
        .into_iter()
        .chain([dir.join("../share/image-builder/zfs-vm")])
        .collect();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        EmbeddedError::Setup(format!(
            "this host has no /dev/zfs and the zfs-vm harness was not found (looked for {}); set IMAGE_BUILDER_ZFS_VM",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Makes the pool's disk image if it does not exist: a sparse file with a GPT holding one
/// ZFS partition (the guest has no udev, so the pool must go on a partition). Returns its
/// path and whether it is new.
pub fn disk_image(
    runner: &dyn Runner,
    pool: &str,
    size_gib: u64,
) -> Result<(PathBuf, bool), EmbeddedError> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let img = dir.join(format!("{pool}.img"));
    if img.exists() {
        return Ok((img, false));
    }
    let partial = dir.join(format!(".{pool}.img.partial"));
    std::fs::File::create(&partial)
        .and_then(|f| f.set_len(size_gib << 30))
        .map_err(|e| io(&partial, e))?;
    runner.run(
        &Cmd::new("/usr/sbin/sfdisk")
            .arg("--quiet")
            .arg(&partial)
            .stdin(format!(
                "label: gpt\nstart=2048, type={ZFS_PARTITION_TYPE}, name=\"zfs\"\n"
            )),
    )?;
    std::fs::rename(&partial, &img).map_err(|e| io(&img, e))?;
    Ok((img, true))
}

/// The directories of `dirs` to share read-write: each once, and none inside another
/// (the guest mounts the outer one, which holds it). Paths are taken as they are: give
/// them canonical.
pub fn rw_dirs(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if dirs.iter().any(|o| o != d && d.starts_with(o)) || out.contains(d) {
            continue;
        }
        out.push(d.clone());
    }
    out
}

/// The zfs-vm harness at `harness`, with the environment it finds its cache and guest
/// settings through (the runner passes nothing else through), and the variables `more`.
pub(crate) fn harness_cmd(harness: &Path, more: &[&str]) -> Cmd {
    let mut cmd = Cmd::new(harness);
    let vars = [
        "HOME",
        "XDG_CACHE_HOME",
        "ZFS_VM_CACHE",
        "ZFS_VM_ACCEL",
        "ZFS_VM_MEM",
        "ZFS_VM_SMP",
    ];
    for var in vars.iter().chain(more) {
        if let Some(v) = std::env::var_os(var) {
            cmd = cmd.env(var, v);
        }
    }
    cmd
}

/// The command that runs `args` (the build's own command line) inside the guest, with the
/// pool's `disk` attached (none for a command that only reads the host's files, such as
/// `inspect`) and the `rw` directories shared read-write (see [`rw_dirs`]).
pub fn guest_command(
    harness: &Path,
    disk: Option<&Path>,
    rw: &[PathBuf],
    exe: &Path,
    args: &[String],
) -> Cmd {
    let mut cmd = harness_cmd(harness, &[]);
    cmd = cmd
        .args(["run", "--timeout"])
        .arg(std::env::var("IMAGE_BUILDER_VM_TIMEOUT").unwrap_or_else(|_| "86400".into()));
    if let Some(disk) = disk {
        cmd = cmd.arg("--drive").arg(disk);
    }
    for d in rw_dirs(rw) {
        cmd = cmd.arg("--rw").arg(d);
    }
    cmd.args(["--env", "IMAGE_BUILDER_LOG=info", "--"])
        .arg(exe)
        .args(args)
}

/// In the guest: import the pool from the first disk, or create it there when the disk is
/// new, with `DATASET` under it.
pub fn guest_pool(
    zfs: &dyn Zfs,
    dataset: &str,
    disk: &str,
    altroot: &Path,
) -> Result<(), EmbeddedError> {
    let pool = pool_of(dataset);
    let part = format!("{disk}1");
    // A warm guest keeps the pool imported between commands.
    let imported = (in_warm_guest() && zfs.exists(pool)?)
        || zfs
            .pool_import(
                &PoolImport::new(pool)
                    .dir(&part)
                    .altroot(altroot.display().to_string()),
            )
            .is_ok();
    if !imported {
        zfs.pool_create(
            &PoolCreate::new(pool, [part.clone()])
                .altroot(altroot.display().to_string())
                .pool_prop("cachefile", "none")
                .fs_prop("compression", "lz4"),
        )?;
    }
    if !zfs.exists(dataset)? {
        zfs.create(dataset, &CreateOptions::new().parents())?;
    }
    Ok(())
}

/// Whether this command runs in a warm guest (set by its server for each command).
pub fn in_warm_guest() -> bool {
    std::env::var_os(WARM_ENV).is_some_and(|v| v == "1")
}

/// The variable that tells a command it runs in a warm guest.
pub const WARM_ENV: &str = "IMAGE_BUILDER_WARM_GUEST";

/// In the guest, after the command: export the pool, unless a warm guest keeps it for the
/// next command (it exports when it stops).
pub fn guest_release(zfs: &dyn Zfs, dataset: &str) -> Result<(), EmbeddedError> {
    if !in_warm_guest() {
        zfs.pool_export(pool_of(dataset), false)?;
    }
    Ok(())
}

/// In the guest: copy the regular files of the output directory that the host copy lacks
/// or has in another size or time, keeping holes (disk images are mostly holes).
pub fn copy_outputs(
    runner: &dyn Runner,
    from: &Path,
    to: &Path,
) -> Result<Vec<String>, EmbeddedError> {
    let mut copied = Vec::new();
    let entries = std::fs::read_dir(from).map_err(|e| io(from, e))?;
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = e.metadata() else { continue };
        if name.starts_with('.') || !meta.is_file() {
            continue;
        }
        let dest = to.join(&name);
        let same = std::fs::metadata(&dest)
            .map(|d| d.len() == meta.len() && d.modified().ok() == meta.modified().ok())
            .unwrap_or(false);
        if same {
            continue;
        }
        runner.run(
            &Cmd::new("/usr/bin/cp")
                .args(["--sparse=always", "--preserve=mode,timestamps"])
                .arg(e.path())
                .arg(&dest),
        )?;
        copied.push(name);
    }
    copied.sort();
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rw_dirs_are_shared_once_and_never_inside_another() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            rw_dirs(&[p("/w/out"), p("/w/out/report"), p("/w/out"), p("/w/rep")]),
            [p("/w/out"), p("/w/rep")]
        );
        assert_eq!(rw_dirs(&[p("/w/out/report"), p("/w/out")]), [p("/w/out")]);
        // A sibling whose name merely starts the same is not inside.
        assert_eq!(
            rw_dirs(&[p("/w/out"), p("/w/output")]),
            [p("/w/out"), p("/w/output")]
        );
    }

    #[test]
    fn guest_command_shares_each_directory() {
        let cmd = guest_command(
            Path::new("/h/zfs-vm"),
            Some(Path::new("/c/pool.img")),
            &[PathBuf::from("/w/out"), PathBuf::from("/w/report")],
            Path::new("/bin/ib"),
            &["matrix".into(), "m.json".into()],
        );
        let line = cmd.display();
        assert!(
            line.contains("--drive /c/pool.img --rw /w/out --rw /w/report --env IMAGE_BUILDER_LOG=info -- /bin/ib matrix m.json"),
            "{line}"
        );
    }

    #[test]
    fn guest_command_without_a_pool_disk_attaches_none() {
        let cmd = guest_command(
            Path::new("/h/zfs-vm"),
            None,
            &[],
            Path::new("/bin/ib"),
            &["inspect".into(), "img.raw".into(), "--no-vm".into()],
        );
        let line = cmd.display();
        assert!(!line.contains("--drive"), "{line}");
        assert!(!line.contains("--rw"), "{line}");
        assert!(
            line.contains("--env IMAGE_BUILDER_LOG=info -- /bin/ib inspect img.raw --no-vm"),
            "{line}"
        );
    }
}
