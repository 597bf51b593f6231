//! What a build writes in its cleanup journal ([`crate::journal`]): every temporary thing
//! it creates (dataset, pool, device, mount) before it is created. Whatever is still
//! written down when a build fails, is interrupted or crashes is undone, in reverse order:
//! at once, or at the next start, or by `image-builder clean`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::device::{self, System};
use super::error::BuildError;

/// How to undo one thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    /// Destroy a dataset (and its children and snapshots) the build created.
    DestroyDataset { name: String },
    /// Roll a kept dataset back to the snapshot it started from.
    Rollback { snapshot: String },
    /// Export a temporary pool (destroy it when it cannot be exported: its image is being
    /// thrown away anyway).
    ExportPool { pool: String },
    /// Detach every file-backed device (lofi, loop) of an image file.
    DetachDevice { file: PathBuf },
    /// Unmount whatever is mounted at a directory.
    Unmount { path: PathBuf },
    /// Remove a directory tree the build made (an image build's work directory), never
    /// crossing into a file system mounted below it.
    RemoveTree { path: PathBuf },
}

/// What an undo does, in the words a user reads (`cleaning up: destroy dataset ...`).
impl std::fmt::Display for Undo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undo::DestroyDataset { name } => write!(f, "destroy dataset {name}"),
            Undo::Rollback { snapshot } => write!(f, "roll back to {snapshot}"),
            Undo::ExportPool { pool } => write!(f, "export pool {pool}"),
            Undo::DetachDevice { file } => write!(f, "detach the devices of {}", file.display()),
            Undo::Unmount { path } => write!(f, "unmount {}", path.display()),
            Undo::RemoveTree { path } => write!(f, "remove {}", path.display()),
        }
    }
}

impl crate::journal::Undoable for Undo {
    fn file_name(name: &str) -> String {
        format!("{name}.journal.json")
    }
}

/// A build's journal (in `OUTPUT/.image-builder/journals`).
pub type Journal = crate::journal::Journal<Undo>;
pub use crate::journal::Mark;

impl crate::journal::Journal<Undo> {
    /// Undoes every pending entry, newest first. Returns the undos that failed (they stay
    /// in the journal for the next attempt).
    pub fn unwind(&mut self, sys: &System) -> Vec<String> {
        self.unwind_except(sys, &|_| false)
    }

    /// [`Journal::unwind`], except that entries for which `keep` is true are neither undone
    /// nor removed: they stay for `image-builder clean` or the next build (`--keep-failed`).
    pub fn unwind_except(&mut self, sys: &System, keep: &dyn Fn(&Undo) -> bool) -> Vec<String> {
        self.unwind_with(keep, |u| undo(sys, u))
    }
}

/// Undoes one thing, after checking that it is still there.
fn undo(sys: &System, u: &Undo) -> Result<(), String> {
    let zfs = sys.zfs;
    let r: Result<(), String> = match u {
        Undo::DestroyDataset { name } => match zfs.exists(name) {
            Ok(true) => zfs.destroy(name, true).map_err(|e| e.to_string()),
            Ok(false) => Ok(()),
            Err(err) => Err(err.to_string()),
        },
        Undo::Rollback { snapshot } => zfs.rollback(snapshot).map_err(|e| e.to_string()),
        Undo::ExportPool { pool } => match zfs.pools() {
            Ok(pools) if !pools.contains(pool) => Ok(()),
            Ok(_) => zfs.pool_export(pool, true).or_else(|e| {
                tracing::warn!("cleanup: cannot export {pool} ({e}); destroying it");
                zfs.pool_destroy(pool, true).map_err(|e| e.to_string())
            }),
            Err(e) => Err(e.to_string()),
        },
        Undo::DetachDevice { file } => device::detach(sys, file).map_err(|e| e.to_string()),
        Undo::Unmount { path } => device::unmount(sys, path).map_err(|e| e.to_string()),
        Undo::RemoveTree { path } => remove_tree(path).map_err(|e| e.to_string()),
    };
    r
}

/// Removes the directory tree at `path` (nothing when it is gone) with
/// [`confine::Root::remove_dir_all_one_fs`]: symlinks are not followed, and a directory on
/// another file system (a pool or image root still mounted there) is an error, with
/// nothing beneath it touched. `std::fs::remove_dir_all` would descend into the mount and
/// delete what it holds.
pub fn remove_tree(path: &Path) -> Result<(), BuildError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BuildError::io(path, e)),
        Ok(_) => {}
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(BuildError::io(
            path,
            std::io::Error::other("not a directory to remove"),
        ));
    };
    super::open_root(parent, "work")?
        .remove_dir_all_one_fs(name)
        .map_err(|e| BuildError::RemoveTree(Box::new(e)))
}

/// Makes the dataset `name` anew for this build: destroys what an earlier run left
/// (`exists`), writes its removal in `journal` before it exists, then creates it. The mark
/// is for [`Journal::done`] once the build no longer needs it undone.
pub fn fresh_dataset(
    zfs: &dyn zfs::Zfs,
    journal: &mut Journal,
    name: &str,
    exists: bool,
    create: &zfs::CreateOptions,
) -> Result<Mark, BuildError> {
    if exists {
        zfs.destroy(name, true)?;
    }
    let mark = journal.push(Undo::DestroyDataset {
        name: name.to_string(),
    })?;
    zfs.create(name, create)?;
    Ok(mark)
}

/// A scratch dataset made for this build alone: journalled first, then created; one an
/// earlier build left behind (it crashed before its journal could undo it) is destroyed
/// and made again. Costs one `zfs create` when nothing was left, where asking first
/// would cost another command.
pub fn scratch_dataset(
    zfs: &dyn zfs::Zfs,
    journal: &mut Journal,
    name: &str,
    create: &zfs::CreateOptions,
) -> Result<Mark, BuildError> {
    let mark = journal.push(Undo::DestroyDataset {
        name: name.to_string(),
    })?;
    match zfs.create(name, create) {
        Err(zfs::ZfsError::AlreadyExists { .. }) => {
            zfs.destroy(name, true)?;
            zfs.create(name, create)?;
        }
        other => other?,
    }
    Ok(mark)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner::{Output, Recorder};

    fn zfs(rec: &Recorder) -> zfs::ZfsCli<&Recorder> {
        zfs::ZfsCli::new(rec, zfs::ZfsTools::new("/sbin/zfs", "/sbin/zpool"))
    }

    fn unwind(j: &mut Journal, rec: &Recorder) -> Vec<String> {
        let z = zfs(rec);
        j.unwind(&System {
            host: crate::host::Host::Illumos,
            runner: rec,
            zfs: &z,
        })
    }

    #[test]
    fn entries_survive_a_crash_and_unwind_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut j = Journal::open(dir.path(), "x").unwrap();
            j.push(Undo::DestroyDataset {
                name: "p/tmp/g/n".into(),
            })
            .unwrap();
            let m = j
                .push(Undo::Rollback {
                    snapshot: "p/work/g/n@strap".into(),
                })
                .unwrap();
            j.push(Undo::DestroyDataset {
                name: "p/other".into(),
            })
            .unwrap();
            j.done(m).unwrap();
            // dropped without unwinding: a crash
        }
        let mut j = Journal::open(dir.path(), "x").unwrap();
        assert_eq!(
            j.pending(),
            [
                Undo::DestroyDataset {
                    name: "p/tmp/g/n".into()
                },
                Undo::DestroyDataset {
                    name: "p/other".into()
                }
            ]
        );
        let rec = Recorder::new();
        rec.on(
            "/sbin/zfs list -H -p -o name -t all p/other",
            Output::ok("p/other\n"),
        );
        rec.on(
            "/sbin/zfs list -H -p -o name -t all p/tmp/g/n",
            Output::ok("p/tmp/g/n\n"),
        );
        // zfs(8) destroy prints nothing without -v or -n (illumos-gate
        // usr/src/cmd/zfs/zfs_main.c, zfs_do_destroy).
        rec.always("/sbin/zfs destroy -r", Output::ok(""));
        assert!(unwind(&mut j, &rec).is_empty());
        assert!(j.is_empty());
        let destroys: Vec<String> = rec
            .lines()
            .into_iter()
            .filter(|l| l.contains(" destroy "))
            .collect();
        assert_eq!(
            destroys,
            [
                "/sbin/zfs destroy -r p/other",
                "/sbin/zfs destroy -r p/tmp/g/n"
            ]
        );
        assert!(!dir.path().join("x.journal.json").exists());
    }

    #[test]
    fn failed_undos_stay_for_the_next_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "y").unwrap();
        j.push(Undo::Rollback {
            snapshot: "p/w@a".into(),
        })
        .unwrap();
        let rec = Recorder::new();
        // zfs(8) list -H -o name: the name alone, no header.
        rec.on(
            "/sbin/zfs list -H -p -o name -t all p/w@a",
            Output::ok("p/w@a\n"),
        );
        rec.always(
            "/sbin/zfs rollback",
            Output::failed(1, "cannot rollback: busy"),
        );
        let failed = unwind(&mut j, &rec);
        assert_eq!(failed.len(), 1);
        assert_eq!(
            Journal::open(dir.path(), "y").unwrap().pending(),
            [Undo::Rollback {
                snapshot: "p/w@a".into()
            }]
        );
    }

    #[test]
    fn pools_devices_and_mounts_are_undone_on_linux() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "z").unwrap();
        j.push(Undo::DetachDevice {
            file: "/w/lofi.raw".into(),
        })
        .unwrap();
        j.push(Undo::ExportPool {
            pool: "TEMPORARY-g-n".into(),
        })
        .unwrap();
        // A directory nothing is mounted on: nothing to run.
        j.push(Undo::Unmount {
            path: dir.path().join("a"),
        })
        .unwrap();
        let rec = Recorder::new();
        rec.always(
            "/usr/sbin/zpool list -H -o name",
            Output::ok("TEMPORARY-g-n\n"),
        );
        rec.on(
            "/usr/sbin/zpool export -f TEMPORARY-g-n",
            Output::failed(1, "pool I/O is currently suspended"),
        );
        rec.on(
            "/usr/sbin/losetup --noheadings --output NAME --associated /w/lofi.raw",
            Output::ok("/dev/loop3\n"),
        );
        // OpenZFS zpool-destroy(8) and util-linux losetup(8) -d print nothing on success.
        rec.on("/usr/sbin/zpool destroy -f TEMPORARY-g-n", Output::ok(""));
        rec.on("/usr/sbin/losetup -d /dev/loop3", Output::ok(""));
        let z = zfs::ZfsCli::new(&rec, zfs::ZfsTools::in_dir("/usr/sbin")).with_export_retry(
            zfs::ExportRetry {
                attempts: 1,
                delay: std::time::Duration::ZERO,
            },
        );
        let failed = j.unwind(&System {
            host: crate::host::Host::Linux,
            runner: &rec,
            zfs: &z,
        });
        assert!(failed.is_empty(), "{failed:?}");
        let actions: Vec<String> = rec
            .lines()
            .into_iter()
            .filter(|l| !l.contains(" list "))
            .collect();
        assert_eq!(
            actions,
            [
                "/usr/sbin/zpool export -f TEMPORARY-g-n",
                "/usr/sbin/zpool destroy -f TEMPORARY-g-n",
                "/usr/sbin/losetup --noheadings --output NAME --associated /w/lofi.raw",
                "/usr/sbin/losetup -d /dev/loop3",
            ]
        );
        assert!(j.is_empty());
    }

    #[test]
    fn remove_tree_removes_the_tree_but_not_what_a_symlink_in_it_points_at() {
        let top = tempfile::tempdir().unwrap();
        let outside = top.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        let work = top.path().join("work/g-img");
        std::fs::create_dir_all(work.join("a/etc")).unwrap();
        std::fs::write(work.join("a/etc/motd"), b"hi").unwrap();
        std::fs::write(work.join("lofi.raw"), b"").unwrap();
        std::os::unix::fs::symlink(&outside, work.join("a/link")).unwrap();
        remove_tree(&work).unwrap();
        assert!(!work.exists());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"k");
        // Gone already: nothing to do.
        remove_tree(&work).unwrap();
        // Unwinding the journal entry does the same.
        std::fs::create_dir_all(work.join("scratch")).unwrap();
        let rec = Recorder::new();
        let mut j = Journal::open(&top.path().join("j"), "x").unwrap();
        j.push(Undo::RemoveTree { path: work.clone() }).unwrap();
        assert_eq!(unwind(&mut j, &rec), Vec::<String>::new());
        assert!(!work.exists());
        assert!(rec.lines().is_empty());
    }

    #[test]
    fn remove_tree_stops_at_a_file_system_mounted_below_it() {
        let top = tempfile::tempdir().unwrap();
        let work = top.path().join("work");
        let a = work.join("a");
        std::fs::create_dir_all(&a).unwrap();
        // A tmpfs stands for the pool or image root still mounted there (needs root; this
        // project's tests run as root, in CI too).
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "ib-test", a.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here (not root?)");
            return;
        }
        std::fs::write(a.join("inside"), b"image data").unwrap();
        let err = remove_tree(&work);
        let inside = std::fs::read(a.join("inside"));
        let _ = std::process::Command::new("umount").arg(&a).status();
        let err = err.unwrap_err().to_string();
        assert!(err.contains("cannot remove tree work in image "), "{err}");
        assert!(
            err.contains("a is on another file system (mounted there); not removed"),
            "{err}"
        );
        assert_eq!(
            inside.unwrap(),
            b"image data",
            "nothing beneath the mount was touched"
        );
        // Unmounted, it goes.
        remove_tree(&work).unwrap();
        assert!(!work.exists());
    }
}

#[cfg(test)]
mod display_tests {
    use super::Undo;
    use std::path::PathBuf;

    /// Users read what an undo does, and `--json` carries its fields, never Rust `Debug`.
    #[test]
    fn an_undo_reads_as_words_and_serialises_as_fields() {
        let cases = [
            (
                Undo::DestroyDataset {
                    name: "rpool/images/work/g/n".into(),
                },
                "destroy dataset rpool/images/work/g/n",
                serde_json::json!({"undo": "destroy_dataset", "name": "rpool/images/work/g/n"}),
            ),
            (
                Undo::Rollback {
                    snapshot: "p/w@in".into(),
                },
                "roll back to p/w@in",
                serde_json::json!({"undo": "rollback", "snapshot": "p/w@in"}),
            ),
            (
                Undo::ExportPool {
                    pool: "TEMPORARY-g-n".into(),
                },
                "export pool TEMPORARY-g-n",
                serde_json::json!({"undo": "export_pool", "pool": "TEMPORARY-g-n"}),
            ),
            (
                Undo::DetachDevice {
                    file: PathBuf::from("/o/disk.raw"),
                },
                "detach the devices of /o/disk.raw",
                serde_json::json!({"undo": "detach_device", "file": "/o/disk.raw"}),
            ),
            (
                Undo::Unmount {
                    path: PathBuf::from("/a/b"),
                },
                "unmount /a/b",
                serde_json::json!({"undo": "unmount", "path": "/a/b"}),
            ),
            (
                Undo::RemoveTree {
                    path: PathBuf::from("/o/.image-builder/work/g-n"),
                },
                "remove /o/.image-builder/work/g-n",
                serde_json::json!({"undo": "remove_tree", "path": "/o/.image-builder/work/g-n"}),
            ),
        ];
        for (u, text, json) in cases {
            assert_eq!(u.to_string(), text);
            let event = crate::build::Event::Cleanup {
                message: u.to_string(),
                undo: u,
            };
            let mut want = json.as_object().unwrap().clone();
            want.insert("event".into(), "cleanup".into());
            want.insert("message".into(), text.into());
            assert_eq!(
                serde_json::to_value(&event).unwrap(),
                serde_json::Value::Object(want)
            );
        }
    }
}
