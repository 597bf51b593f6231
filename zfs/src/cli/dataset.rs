//! Data set and snapshot operations (`zfs`).

use runner::{RunError, Runner};

use super::{failed, prop_args, split_lines, ZfsCli};
use crate::error::{Result, ZfsError};
use crate::name::{self, Parent};
use crate::options::CreateOptions;
use crate::Zfs;

pub(super) fn create<R: Runner>(z: &ZfsCli<R>, ds: &str, opts: &CreateOptions) -> Result<()> {
    name::dataset(ds)?;
    let mut cmd = z.zfs().arg("create");
    if opts.parents {
        cmd = cmd.arg("-p");
    }
    if let Some(size) = opts.volume_size {
        cmd = cmd.arg("-V").arg(size.to_string());
    }
    cmd = cmd
        .args(prop_args(
            "-o",
            opts.props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?)
        .arg(ds);
    z.run(&cmd).map_err(|e| already_or(z, ds, e))?;
    Ok(())
}

/// A failed create whose target exists afterwards failed because it was already there.
fn already_or<R: Runner>(z: &ZfsCli<R>, name: &str, err: RunError) -> ZfsError {
    match (&err, z.exists(name)) {
        (RunError::Failed { .. }, Ok(true)) => ZfsError::AlreadyExists {
            name: name.to_string(),
        },
        _ => ZfsError::Run(err),
    }
}

pub(super) fn destroy<R: Runner>(z: &ZfsCli<R>, target: &str, recursive: bool) -> Result<()> {
    name::any(target)?;
    let mut cmd = z.zfs().arg("destroy");
    if recursive {
        cmd = cmd.arg("-r");
    }
    z.run(&cmd.arg(target))
        .map_err(|e| z.missing_or(target, e))?;
    Ok(())
}

/// One `zfs destroy DATASET@A,B,C`. The synopsis in illumos-gate's usr/src/man/man8/zfs.8
/// is `zfs destroy [-Rdnprv] filesystem|volume@snap[%snap[,snap[%snap]]]...`, and
/// OpenZFS's zfs-destroy(8) has the same form and describes it: "multiple snapshots (or
/// ranges of snapshots) of the same filesystem or volume may be specified in a
/// comma-separated list of snapshots" (run against real OpenZFS in the ZFS tier). Names
/// with a `,` or `%` are refused, as they would change the list. One command instead of
/// one each, which counts where a `zfs` process is slow to start.
pub(super) fn destroy_snapshots<R: Runner>(
    z: &ZfsCli<R>,
    dataset: &str,
    names: &[&str],
) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    for n in names {
        name::listed_snapshot(&format!("{dataset}@{n}"))?;
    }
    let target = format!("{dataset}@{}", names.join(","));
    z.run(&z.zfs().arg("destroy").arg(&target))
        .map_err(|e| z.missing_or(dataset, e))?;
    Ok(())
}

pub(super) fn snapshot<R: Runner>(z: &ZfsCli<R>, snap: &str, props: &[(&str, &str)]) -> Result<()> {
    name::snapshot(snap)?;
    let cmd = z
        .zfs()
        .arg("snapshot")
        .args(prop_args("-o", props.iter().copied())?)
        .arg(snap);
    z.run(&cmd).map_err(|e| match z.exists(snap) {
        Ok(true) => ZfsError::AlreadyExists {
            name: snap.to_string(),
        },
        _ => z.missing_or(name::parent_dataset(snap), e),
    })?;
    Ok(())
}

pub(super) fn rollback<R: Runner>(z: &ZfsCli<R>, snap: &str) -> Result<()> {
    name::snapshot(snap)?;
    // -r: later snapshots are destroyed; without it rollback refuses when any exist.
    let cmd = z.zfs().args(["rollback", "-r", snap]);
    z.run(&cmd).map_err(|e| z.missing_or(snap, e))?;
    Ok(())
}

pub(super) fn send<R: Runner>(z: &ZfsCli<R>, snap: &str, out: &std::path::Path) -> Result<()> {
    name::snapshot(snap)?;
    let cmd = z.zfs().args(["send", snap]).stdout_to(out);
    z.run(&cmd).map_err(|e| z.missing_or(snap, e))?;
    Ok(())
}

pub(super) fn send_incremental<R: Runner>(
    z: &ZfsCli<R>,
    from: &str,
    snap: &str,
    out: &std::path::Path,
) -> Result<()> {
    name::snapshot(from)?;
    name::snapshot(snap)?;
    // zfs-send(8), illumos zfs(8): `zfs send -i snapshot snapshot`, an incremental stream
    // from the first snapshot to the second.
    let cmd = z.zfs().args(["send", "-i", from, snap]).stdout_to(out);
    z.run(&cmd).map_err(|e| z.missing_or(snap, e))?;
    Ok(())
}

pub(super) fn receive<R: Runner>(
    z: &ZfsCli<R>,
    snap: &str,
    stream: &std::path::Path,
    force: bool,
) -> Result<()> {
    name::snapshot(snap)?;
    // zfs-receive(8), illumos zfs(8): `zfs receive [-F] snapshot`, the stream on
    // standard input; -F rolls the file system back to its most recent snapshot first.
    let mut cmd = z.zfs().arg("receive");
    if force {
        cmd = cmd.arg("-F");
    }
    let cmd = cmd.arg(snap).stdin_from(stream);
    z.run(&cmd)?;
    Ok(())
}

pub(super) fn clone_snapshot<R: Runner>(
    z: &ZfsCli<R>,
    snap: &str,
    target: &str,
    props: &[(&str, &str)],
) -> Result<()> {
    name::snapshot(snap)?;
    name::dataset(target)?;
    let cmd = z
        .zfs()
        .arg("clone")
        .args(prop_args("-o", props.iter().copied())?)
        .args([snap, target]);
    z.run(&cmd).map_err(|e| match z.exists(snap) {
        Ok(false) => ZfsError::NotFound {
            name: snap.to_string(),
        },
        _ => already_or(z, target, e),
    })?;
    Ok(())
}

/// Lists `name` itself; if that fails with any other message than libzfs's for a missing
/// data set ([`super::says_missing`]), asks its parent (or the pool list) whether it is
/// there, so "missing" is a listing's answer and anything else stays an error.
pub(super) fn exists<R: Runner>(z: &ZfsCli<R>, target: &str) -> Result<bool> {
    name::any(target)?;
    let cmd = z
        .zfs()
        .args(["list", "-H", "-p", "-o", "name", "-t", "all", target]);
    let out = z.output(&cmd)?;
    if out.success() {
        return Ok(split_lines(&out).iter().any(|l| l == target));
    }
    if super::says_missing(&out.stderr_tail(8), target) {
        return Ok(false);
    }
    let direct = failed(&cmd, &out);
    match name::parent(target) {
        Parent::Pool => {
            if z.pools()?.iter().any(|p| p == target) {
                Err(direct.into())
            } else {
                Ok(false)
            }
        }
        Parent::Dataset(parent) => {
            let list = z.zfs().args([
                "list", "-H", "-p", "-o", "name", "-t", "all", "-d", "1", parent,
            ]);
            let out = z.output(&list)?;
            if out.success() {
                if split_lines(&out).iter().any(|l| l == target) {
                    Err(direct.into())
                } else {
                    Ok(false)
                }
            } else if exists(z, parent)? {
                Err(direct.into())
            } else {
                Ok(false)
            }
        }
    }
}

pub(super) fn get<R: Runner>(z: &ZfsCli<R>, target: &str, prop: &str) -> Result<Option<String>> {
    name::any(target)?;
    name::property(prop)?;
    // The source column tells an unset user property ("-", source "-") from one set to
    // the string "-" (source "local").
    let cmd = z
        .zfs()
        .args(["get", "-H", "-p", "-o", "value,source", prop, target]);
    let out = z.run(&cmd).map_err(|e| z.missing_or(target, e))?;
    let text = out.stdout_str();
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let (value, source) = line.rsplit_once('\t').ok_or_else(|| ZfsError::Parse {
        cmd: cmd.display(),
        detail: format!("expected VALUE<TAB>SOURCE, got {line:?}"),
    })?;
    if value == "-" && source == "-" {
        Ok(None)
    } else {
        Ok(Some(value.to_string()))
    }
}

pub(super) fn set<R: Runner>(z: &ZfsCli<R>, target: &str, prop: &str, value: &str) -> Result<()> {
    name::any(target)?;
    let cmd = z
        .zfs()
        .arg("set")
        .arg(super::assignment(prop, value)?)
        .arg(target);
    z.run(&cmd).map_err(|e| z.missing_or(target, e))?;
    Ok(())
}

pub(super) fn children<R: Runner>(z: &ZfsCli<R>, ds: &str) -> Result<Vec<String>> {
    name::dataset(ds)?;
    let cmd = z.zfs().args([
        "list",
        "-H",
        "-p",
        "-o",
        "name",
        "-t",
        "filesystem,volume",
        "-d",
        "1",
        "-s",
        "name",
        ds,
    ]);
    let mut names = z.lines(&cmd).map_err(|e| z.missing_or(ds, e))?;
    names.retain(|n| n != ds);
    Ok(names)
}

pub(super) fn filesystems<R: Runner>(
    z: &ZfsCli<R>,
    roots: &[&str],
    depth: u32,
) -> Result<Vec<crate::Filesystem>> {
    for r in roots {
        name::dataset(r)?;
    }
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    let depth = depth.to_string();
    let cmd = z
        .zfs()
        .args([
            "list",
            "-H",
            "-p",
            "-o",
            "name,mountpoint,mounted",
            "-t",
            "filesystem",
            "-d",
            &depth,
        ])
        .args(roots);
    z.lines(&cmd)?
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            match f.as_slice() {
                [name, mountpoint, mounted] => Ok(crate::Filesystem {
                    name: name.to_string(),
                    mountpoint: mountpoint.to_string(),
                    mounted: *mounted == "yes",
                }),
                _ => Err(ZfsError::Parse {
                    cmd: cmd.display(),
                    detail: format!("expected NAME<TAB>MOUNTPOINT<TAB>MOUNTED, got {l:?}"),
                }),
            }
        })
        .collect()
}

pub(super) fn list<R: Runner>(
    z: &ZfsCli<R>,
    roots: &[&str],
    depth: u32,
    props: &[&str],
) -> Result<Vec<crate::Listed>> {
    for r in roots {
        name::dataset(r)?;
    }
    for p in props {
        name::property(p)?;
    }
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    let columns = std::iter::once("name")
        .chain(props.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    let depth = depth.to_string();
    // zfs(8) list: -d 1 shows a data set, its direct children and its own snapshots;
    // -s createtxg puts the rows in creation order.
    let cmd = z
        .zfs()
        .args([
            "list",
            "-H",
            "-p",
            "-o",
            &columns,
            "-t",
            "filesystem,snapshot",
            "-s",
            "createtxg",
            "-d",
            &depth,
        ])
        .args(roots);
    // A root that is not there is named by the listing's own error (zfs_for_each in
    // zfs_iter.c opens each root with zfs_open, which reports it, and goes on with the
    // rest); otherwise each root is asked about.
    let lines = z.lines(&cmd).map_err(|e| {
        let stderr = match &e {
            RunError::Failed { stderr_tail, .. } => stderr_tail.as_str(),
            _ => "",
        };
        let named = roots.iter().find(|r| super::says_missing(stderr, r));
        match named.or_else(|| roots.iter().find(|r| matches!(z.exists(r), Ok(false)))) {
            Some(r) => ZfsError::NotFound {
                name: r.to_string(),
            },
            None => ZfsError::Run(e),
        }
    })?;
    lines
        .iter()
        .map(|l| {
            let mut f = l.split('\t');
            let name = f.next().unwrap_or_default().to_string();
            let values: Vec<Option<String>> =
                f.map(|v| (v != "-").then(|| v.to_string())).collect();
            if name.is_empty() || values.len() != props.len() {
                return Err(ZfsError::Parse {
                    cmd: cmd.display(),
                    detail: format!(
                        "expected {} tab-separated fields, got {l:?}",
                        props.len() + 1
                    ),
                });
            }
            Ok(crate::Listed { name, values })
        })
        .collect()
}

pub(super) fn snapshots<R: Runner>(z: &ZfsCli<R>, ds: &str) -> Result<Vec<String>> {
    name::dataset(ds)?;
    let cmd = z.zfs().args([
        "list",
        "-H",
        "-p",
        "-o",
        "name",
        "-t",
        "snapshot",
        "-d",
        "1",
        "-s",
        "createtxg",
        ds,
    ]);
    z.lines(&cmd).map_err(|e| z.missing_or(ds, e))
}

pub(super) fn mount<R: Runner>(z: &ZfsCli<R>, ds: &str) -> Result<()> {
    name::dataset(ds)?;
    z.run(&z.zfs().args(["mount", ds]))
        .map_err(|e| z.missing_or(ds, e))?;
    Ok(())
}

pub(super) fn unmount<R: Runner>(z: &ZfsCli<R>, ds: &str, force: bool) -> Result<()> {
    name::dataset(ds)?;
    let mut cmd = z.zfs().arg("unmount");
    if force {
        cmd = cmd.arg("-f");
    }
    z.run(&cmd.arg(ds)).map_err(|e| z.missing_or(ds, e))?;
    Ok(())
}
