//! Looking into a finished raw disk image: its partition table, and the pool in it
//! (on-disk name, `bootfs`, datasets, boot environment properties), read with the pool
//! imported read-only under a temporary name and exported again.

use std::path::{Path, PathBuf};

use serde::Serialize;
use zfs::PoolImport;

use super::device::{self, System};
use super::gpt::{self, SECTOR};
use crate::host::{Host, Tool};

#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    pub number: u32,
    pub first_lba: u64,
    pub last_lba: u64,
    pub type_guid: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub name: String,
    pub mountpoint: String,
    pub canmount: String,
    /// `org.opensolaris.libbe:*` properties, for boot environments.
    pub libbe: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub file: PathBuf,
    pub bytes: u64,
    pub partitions: Vec<Partition>,
    /// The pool's name on disk (what the booted system imports).
    pub pool: Option<String>,
    /// `bootfs`, relative to the pool (`ROOT/<be>`).
    pub bootfs: Option<String>,
    /// Datasets, names relative to the pool.
    pub datasets: Vec<Dataset>,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Gpt(#[from] gpt::GptError),
    #[error(transparent)]
    Zfs(#[from] zfs::ZfsError),
    #[error(transparent)]
    Run(#[from] runner::RunError),
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    #[error("{0}")]
    Other(String),
}

/// The partition table of an image file.
pub fn partitions(file: &Path) -> Result<Vec<Partition>, InspectError> {
    let mut f = std::fs::File::open(file).map_err(|e| InspectError::Io(file.into(), e))?;
    let table = gptman::GPT::read_from(&mut f, SECTOR).map_err(gpt::GptError::from)?;
    Ok(table
        .iter()
        .filter(|(_, e)| e.is_used())
        .map(|(n, e)| Partition {
            number: n,
            first_lba: e.starting_lba,
            last_lba: e.ending_lba,
            type_guid: gpt::guid_text(&e.partition_type_guid),
            name: e.partition_name.as_str().to_string(),
        })
        .collect())
}

/// Everything [`Report`] holds. The pool is imported read-only, without mounting, under a
/// name no other pool has, and exported before returning (also on error).
pub fn inspect(sys: &System, file: &Path) -> Result<Report, InspectError> {
    let bytes = std::fs::metadata(file)
        .map_err(|e| InspectError::Io(file.into(), e))?
        .len();
    let partitions = partitions(file)?;
    let zfs_part = partitions
        .iter()
        .find(|p| p.type_guid == gpt::TYPE_ZFS)
        .map(|p| p.number);
    let mut report = Report {
        file: file.to_path_buf(),
        bytes,
        partitions,
        pool: None,
        bootfs: None,
        datasets: Vec::new(),
    };
    let Some(part) = zfs_part else {
        return Ok(report);
    };
    match sys.host {
        Host::Linux => {
            let dev = device::attach_readonly(sys, file, true)?;
            let part_dev = format!("{}p{part}", dev.disk);
            // devtmpfs makes the partition's node shortly after `losetup -P`.
            for _ in 0..50 {
                if Path::new(&part_dev).exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let result = with_device(sys, &part_dev, &part_dev, &mut report);
            let detached = device::detach_device(sys, file, &dev);
            result?;
            detached?;
        }
        Host::Illumos => {
            // A read-only labelled lofi device; its slice N-1 is GPT partition N.
            let dev = device::attach_readonly(sys, file, true)?;
            let slice = dev.slice(part.saturating_sub(1));
            // illumos `zpool import -d` searches a directory: one holding only a link
            // to this slice, so no other disk of the host is looked at.
            let dir = std::env::temp_dir().join(format!("inspect{}.dev", std::process::id()));
            let linked = link_dir(&dir, &slice);
            let result = match linked {
                Ok(()) => with_device(sys, &dir.display().to_string(), &slice, &mut report),
                Err(e) => Err(e),
            };
            let _ = std::fs::remove_dir_all(&dir);
            let detached = device::detach_device(sys, file, &dev);
            result?;
            detached?;
        }
    }
    Ok(report)
}

/// `dir`, new, holding a symlink to `target` under its last component's name.
fn link_dir(dir: &Path, target: &str) -> Result<(), InspectError> {
    let io = |e| InspectError::Io(dir.to_path_buf(), e);
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    std::fs::create_dir(dir).map_err(io)?;
    let name = Path::new(target)
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "vdev".into());
    std::os::unix::fs::symlink(target, dir.join(name)).map_err(io)
}

/// Imports the pool found by searching `search` (`zpool import -d`: a device on Linux, a
/// directory on illumos), reads it and exports it again. `device` names it in messages.
fn with_device(
    sys: &System,
    search: &str,
    device: &str,
    report: &mut Report,
) -> Result<(), InspectError> {
    // `zpool import -d DEV` with no pool lists what it finds; the name is on the "pool:"
    // line.
    let zpool = sys.host.tool(Tool::Zpool);
    let listing = sys
        .runner
        .output(&runner::Cmd::new(zpool).args(["import", "-d", search]))?;
    let name = listing
        .stdout_str()
        .lines()
        .find_map(|l| l.trim().strip_prefix("pool:").map(|n| n.trim().to_string()))
        .ok_or_else(|| InspectError::Other(format!("no importable pool found on {device}")))?;
    let temp = format!("inspect{}", std::process::id());
    let altroot = std::env::temp_dir().join(&temp);
    sys.zfs.pool_import(
        &PoolImport::new(&name)
            .new_name(&temp)
            .temporary()
            .dir(search)
            .altroot(altroot.display().to_string())
            .no_mount()
            .readonly(),
    )?;
    report.pool = Some(name);
    let read = read_pool(sys, &temp, &altroot, report);
    let exported = sys.zfs.pool_export(&temp, false);
    let _ = std::fs::remove_dir(&altroot);
    read?;
    exported?;
    Ok(())
}

fn read_pool(
    sys: &System,
    pool: &str,
    altroot: &Path,
    report: &mut Report,
) -> Result<(), InspectError> {
    // Mountpoints as the booted system sees them: not under our altroot, and a default
    // (derived from the dataset's name: `/POOL/PATH`) under the pool's own name, not the
    // temporary one it is imported under.
    let on_disk = report.pool.clone().unwrap_or_else(|| pool.to_string());
    let unrooted = |m: String| {
        let m = match Path::new(&m).strip_prefix(altroot) {
            Ok(rest) => format!("/{}", rest.display()),
            Err(_) => m,
        };
        match m.strip_prefix(&format!("/{pool}")) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("/{on_disk}{rest}"),
            _ => m,
        }
    };
    let strip = |n: &str| {
        n.strip_prefix(pool)
            .map(|r| r.trim_start_matches('/').to_string())
            .unwrap_or_else(|| n.to_string())
    };
    let bootfs = sys.zfs.pool_get(pool, "bootfs")?;
    report.bootfs = (bootfs != "-" && !bootfs.is_empty()).then(|| strip(&bootfs));
    let mut todo = vec![pool.to_string()];
    while let Some(ds) = todo.pop() {
        let mut children = sys.zfs.children(&ds)?;
        children.reverse();
        todo.extend(children);
        let mut libbe = Vec::new();
        for p in ["uuid", "policy"] {
            let prop = format!("org.opensolaris.libbe:{p}");
            if let Some(v) = sys.zfs.get(&ds, &prop)? {
                libbe.push((prop, v));
            }
        }
        report.datasets.push(Dataset {
            name: strip(&ds),
            mountpoint: unrooted(sys.zfs.get(&ds, "mountpoint")?.unwrap_or_default()),
            canmount: sys.zfs.get(&ds, "canmount")?.unwrap_or_default(),
            libbe,
        });
    }
    Ok(())
}

/// The report as text, one fact per line.
pub fn render(r: &Report) -> String {
    let mut s = format!("{}: {} bytes\n", r.file.display(), r.bytes);
    s.push_str("partitions:\n");
    for p in &r.partitions {
        let kind = match p.type_guid.as_str() {
            gpt::TYPE_ESP => "EFI system",
            gpt::TYPE_ZFS => "illumos usr (ZFS)",
            gpt::TYPE_RESERVED => "illumos reserved",
            _ => "other",
        };
        s.push_str(&format!(
            "  {:>2}  {:>10} {:>10}  {:>8} MiB  {kind} {}  {}\n",
            p.number,
            p.first_lba,
            p.last_lba,
            ((p.last_lba - p.first_lba + 1) * SECTOR) >> 20,
            p.type_guid,
            p.name
        ));
    }
    if let Some(pool) = &r.pool {
        s.push_str(&format!("pool: {pool}\n"));
        s.push_str(&format!(
            "bootfs: {}\n",
            r.bootfs.as_deref().unwrap_or("(not set)")
        ));
        s.push_str("datasets:\n");
        for d in &r.datasets {
            let name = if d.name.is_empty() { "(root)" } else { &d.name };
            s.push_str(&format!(
                "  {name}  mountpoint={} canmount={}",
                d.mountpoint, d.canmount
            ));
            for (k, v) in &d.libbe {
                s.push_str(&format!(" {k}={v}"));
            }
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner::{Output, Recorder};

    /// What illumos `zpool import -d DIR` prints for the pool it finds.
    const ILLUMOS_IMPORT_LISTING: &str = "   pool: rpool
     id: 10338893282744593315
  state: ONLINE
 action: The pool can be imported using its name or numeric identifier.
 config:

\trpool       ONLINE
\t  c2t0d0s1  ONLINE
";

    /// A sparse 400 MiB disk `d.raw` in `dir` with the GPT a pool build writes.
    fn disk(dir: &Path, uefi: bool) -> (PathBuf, gpt::Label) {
        let img = dir.join("d.raw");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(400 << 20)
            .unwrap();
        let label = gpt::Label::plan(400 << 20, uefi).unwrap();
        label.write(&img).unwrap();
        (img, label)
    }

    #[test]
    fn illumos_inspect_command_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (img, _) = disk(dir.path(), true);
        let pid = std::process::id();
        let t = format!("inspect{pid}");
        let tmp = std::env::temp_dir();
        let links = tmp.join(format!("inspect{pid}.dev"));
        let alt = tmp.join(&t);
        let rec = Recorder::new();
        // What illumos lofiadm prints for a labelled device: its block node with p0
        // (usr/src/cmd/lofiadm/main.c, add_mapping() printing make_blkdevname()).
        rec.on(
            "/usr/sbin/lofiadm -r -l -a",
            Output::ok("/dev/dsk/c2t0d0p0\n"),
        );
        rec.on(
            &format!("/sbin/zpool import -d {}", links.display()),
            Output::ok(ILLUMOS_IMPORT_LISTING),
        );
        rec.on(
            &format!("/sbin/zpool get -H -p -o value bootfs {t}"),
            Output::ok(format!("{t}/ROOT/oi\n")),
        );
        // zpool(8) import of a named pool and export print nothing on success
        // (illumos-gate usr/src/cmd/zpool/zpool_main.c: zpool_do_import lists pools only
        // when none is named; zpool_do_export); lofiadm(8) -d prints nothing either.
        rec.on("/sbin/zpool import -N", Output::ok(""));
        rec.on("/sbin/zpool export", Output::ok(""));
        rec.on("/usr/sbin/lofiadm -d", Output::ok(""));
        // Rules match by prefix: the longer names first.
        for (ds, kids) in [
            (format!("{t}/ROOT/oi"), vec![format!("{t}/ROOT/oi")]),
            (
                format!("{t}/ROOT"),
                vec![format!("{t}/ROOT"), format!("{t}/ROOT/oi")],
            ),
            (t.clone(), vec![t.clone(), format!("{t}/ROOT")]),
        ] {
            rec.always(
                &format!("/sbin/zfs list -H -p -o name -t filesystem,volume -d 1 -s name {ds}"),
                Output::ok(kids.join("\n") + "\n"),
            );
        }
        let get = |prop: &str, ds: &str, reply: &str| {
            rec.always(
                &format!("/sbin/zfs get -H -p -o value,source {prop} {ds}"),
                Output::ok(format!("{reply}\n")),
            );
        };
        for ds in [format!("{t}/ROOT/oi"), format!("{t}/ROOT"), t.clone()] {
            let be = ds.ends_with("/oi");
            get(
                "org.opensolaris.libbe:uuid",
                &ds,
                if be {
                    "1f0e4b5a-3c2d-4e6f-8a9b-0c1d2e3f4a5b\tlocal"
                } else {
                    "-\t-"
                },
            );
            get(
                "org.opensolaris.libbe:policy",
                &ds,
                if be { "static\tlocal" } else { "-\t-" },
            );
            if ds == t {
                // The default mountpoint is the dataset's name below / (zfsconcepts(7),
                // "Mount Points"), here the temporary name, and `-R` prepends the altroot
                // (zpoolprops(7), altroot).
                get(
                    "mountpoint",
                    &ds,
                    &format!("{}/{t}\tdefault", alt.display()),
                );
                get("canmount", &ds, "on\tdefault");
            } else {
                get("mountpoint", &ds, "legacy\tlocal");
                get(
                    "canmount",
                    &ds,
                    if be { "noauto\tlocal" } else { "off\tlocal" },
                );
            }
        }
        let zfs = zfs::ZfsCli::new(&rec, zfs::ZfsTools::in_dir("/sbin"));
        let sys = System {
            host: Host::Illumos,
            runner: &rec,
            zfs: &zfs,
        };
        let r = inspect(&sys, &img).unwrap();
        let lines: Vec<String> = rec
            .lines()
            .into_iter()
            .filter(|l| {
                !l.contains(" zfs get ") && !l.contains("/zfs get ") && !l.contains(" list ")
            })
            .collect();
        assert_eq!(
            lines,
            [
                format!("/usr/sbin/lofiadm -r -l -a {}", img.display()),
                format!("/sbin/zpool import -d {}", links.display()),
                format!(
                    "/sbin/zpool import -N -t -d {} -R {} -o readonly=on rpool {t}",
                    links.display(),
                    alt.display()
                ),
                format!("/sbin/zpool get -H -p -o value bootfs {t}"),
                format!("/sbin/zpool export {t}"),
                format!("/usr/sbin/lofiadm -d {}", img.display()),
            ]
        );
        assert!(!links.exists(), "the link directory is removed");
        assert_eq!(r.pool.as_deref(), Some("rpool"));
        assert_eq!(r.bootfs.as_deref(), Some("ROOT/oi"));
        let names: Vec<&str> = r.datasets.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["", "ROOT", "ROOT/oi"]);
        assert_eq!(
            r.datasets[0].mountpoint, "/rpool",
            "shown without the altroot"
        );
        let be = &r.datasets[2];
        assert_eq!(
            (be.canmount.as_str(), be.mountpoint.as_str()),
            ("noauto", "legacy")
        );
        assert!(be
            .libbe
            .contains(&("org.opensolaris.libbe:policy".into(), "static".into())));
    }

    /// The link `zpool import -d` finds is the ZFS slice: GPT partition 2 is slice 1.
    #[test]
    fn illumos_search_directory_links_the_zfs_slice() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("links");
        link_dir(&d, "/dev/dsk/c2t0d0s1").unwrap();
        assert_eq!(
            std::fs::read_link(d.join("c2t0d0s1")).unwrap(),
            Path::new("/dev/dsk/c2t0d0s1")
        );
        // A leftover directory is replaced.
        link_dir(&d, "/dev/dsk/c3t0d0s0").unwrap();
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["c3t0d0s0"]);
    }

    #[test]
    fn no_importable_pool_is_an_error_and_the_device_is_detached() {
        let dir = tempfile::tempdir().unwrap();
        let (img, _) = disk(dir.path(), false);
        let rec = Recorder::new();
        // What illumos lofiadm prints for a labelled device: its block node with p0
        // (usr/src/cmd/lofiadm/main.c, add_mapping() printing make_blkdevname()).
        rec.on(
            "/usr/sbin/lofiadm -r -l -a",
            Output::ok("/dev/dsk/c4t0d0p0\n"),
        );
        rec.on(
            "/sbin/zpool import -d",
            Output::failed(1, "no pools available to import"),
        );
        // lofiadm(8): -d detaches and prints nothing.
        rec.on("/usr/sbin/lofiadm -d", Output::ok(""));
        let zfs = zfs::ZfsCli::new(&rec, zfs::ZfsTools::in_dir("/sbin"));
        let sys = System {
            host: Host::Illumos,
            runner: &rec,
            zfs: &zfs,
        };
        let e = inspect(&sys, &img).unwrap_err().to_string();
        assert!(
            e.contains("no importable pool found on /dev/dsk/c4t0d0s0"),
            "{e}"
        );
        assert_eq!(
            rec.lines().last().unwrap(),
            &format!("/usr/sbin/lofiadm -d {}", img.display())
        );
    }

    #[test]
    fn partitions_of_a_label_we_wrote_and_their_rendering() {
        let dir = tempfile::tempdir().unwrap();
        let (img, label) = disk(dir.path(), true);
        let parts = partitions(&img).unwrap();
        let got: Vec<(u32, u64, u64, &str, &str)> = parts
            .iter()
            .map(|p| {
                (
                    p.number,
                    p.first_lba,
                    p.last_lba,
                    p.type_guid.as_str(),
                    p.name.as_str(),
                )
            })
            .collect();
        let want: Vec<(u32, u64, u64, &str, &str)> = label
            .slices
            .iter()
            .map(|s| (s.number, s.first_lba, s.last_lba, s.type_guid, s.name))
            .collect();
        assert_eq!(got, want);
        let text = render(&Report {
            file: img.clone(),
            bytes: 400 << 20,
            partitions: parts,
            pool: None,
            bootfs: None,
            datasets: Vec::new(),
        });
        assert!(
            text.contains("   1         256     524543       256 MiB  EFI system"),
            "{text}"
        );
        assert!(text.contains("illumos usr (ZFS)"), "{text}");
    }
}
