//! Looking into a finished raw disk image: its partition table, and the pool in it
//! (on-disk name, `bootfs`, datasets, boot environment properties), read with the pool
//! imported read-only under a temporary name and exported again.

use std::path::{Path, PathBuf};

use serde::Serialize;
use zfs::PoolImport;

use super::device::System;
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
    if sys.host == Host::Illumos {
        return Err(InspectError::Other(
            "inspecting pools is implemented for Linux hosts (loop devices); on illumos, \
             attach the image with lofiadm -a -l -r and use zpool import -d"
                .into(),
        ));
    }
    let out = sys.runner.run(
        &sys.cmd(Tool::Losetup)
            .args(["-f", "--show", "-P", "-r"])
            .arg(file),
    )?;
    let dev = out.stdout_str().trim().to_string();
    let result = with_device(sys, &format!("{dev}p{part}"), &mut report);
    let detached = sys.runner.run(&sys.cmd(Tool::Losetup).args(["-d", &dev]));
    result?;
    detached?;
    Ok(report)
}

fn with_device(sys: &System, part: &str, report: &mut Report) -> Result<(), InspectError> {
    for _ in 0..50 {
        if Path::new(part).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // `zpool import -d DEV` with no pool lists what it finds; the name is on the "pool:"
    // line.
    let zpool = sys.host.tool(Tool::Zpool);
    let listing = sys
        .runner
        .output(&runner::Cmd::new(zpool).args(["import", "-d", part]))?;
    let name = listing
        .stdout_str()
        .lines()
        .find_map(|l| l.trim().strip_prefix("pool:").map(|n| n.trim().to_string()))
        .ok_or_else(|| InspectError::Other(format!("no importable pool found on {part}")))?;
    let temp = format!("inspect{}", std::process::id());
    let altroot = std::env::temp_dir().join(&temp);
    sys.zfs.pool_import(
        &PoolImport::new(&name)
            .new_name(&temp)
            .temporary()
            .dir(part)
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
    // Mountpoints as the booted system sees them, not under our altroot.
    let unrooted = |m: String| match Path::new(&m).strip_prefix(altroot) {
        Ok(rest) => format!("/{}", rest.display()),
        Err(_) => m,
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

    #[test]
    fn partitions_of_a_label_we_wrote_and_their_rendering() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("d.raw");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(400 << 20)
            .unwrap();
        let label = gpt::Label::plan(400 << 20, true).unwrap();
        label.write(&img).unwrap();
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
