//! storage: pools, datasets, a swap volume (zvol + /etc/vfstab line + `swapadd`) and
//! growing the root pool onto a disk that got bigger (`zpool online -e`). Everything but
//! the vfstab line acts on the running system, so under an alternate root those changes
//! are skipped.

use runner::Cmd;
use serde::{Deserialize, Serialize};

use super::{Ctx, Outcome, Planned, Plugin, PluginError};
use crate::schema::{Layout, Storage as Spec};

pub struct Storage;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(default)]
    pub storage: Option<Spec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    /// `zpool create` of the desired pool of this name.
    Pool { pool: String },
    /// `zfs create -p` of the desired dataset of this name.
    Dataset { dataset: String },
    /// The swap volume.
    SwapVolume,
    /// The swap line of /etc/vfstab, and `swapadd` on the running system.
    SwapVfstab,
    /// `zpool online -e` for each disk of the root pool.
    GrowRootPool,
}

const ZPOOL: &str = "/usr/sbin/zpool";
const ZFS: &str = "/usr/sbin/zfs";
const SWAPADD: &str = "/sbin/swapadd";

pub fn vfstab_line(volume: &str) -> String {
    format!("/dev/zvol/dsk/{volume}\t-\t-\tswap\t-\tno\t-\n")
}

fn names(out: Option<String>) -> Vec<String> {
    out.unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

impl Plugin for Storage {
    const NAME: &'static str = "storage";
    const KEYS: &'static [&'static str] = &["storage"];

    type Input = Input;
    type Change = Change;

    fn plan(&self, ctx: &Ctx, input: &Input) -> Result<Vec<Planned<Change>>, PluginError> {
        let Some(spec) = &input.storage else {
            return Ok(vec![]);
        };
        let live = ctx.live();
        let pools = if live {
            names(ctx.query(Cmd::new(ZPOOL).args(["list", "-H", "-o", "name"]))?)
        } else {
            vec![]
        };
        let datasets = if live {
            names(ctx.query(Cmd::new(ZFS).args(["list", "-H", "-o", "name"]))?)
        } else {
            vec![]
        };
        let mut out = Vec::new();
        for p in &spec.pools {
            if p.disks.is_empty() {
                return Err(PluginError::Invalid {
                    what: "pool".into(),
                    value: p.name.clone(),
                    reason: "has no disks".into(),
                });
            }
            if !pools.contains(&p.name) {
                out.push(Planned::new(
                    "storage",
                    format!("pool/{}", p.name),
                    format!(
                        "create pool {} ({:?} of {})",
                        p.name,
                        p.layout,
                        p.disks.join(" ")
                    ),
                    Change::Pool {
                        pool: p.name.clone(),
                    },
                ));
            }
        }
        for d in &spec.datasets {
            if !datasets.contains(&d.name) {
                out.push(Planned::new(
                    "storage",
                    format!("dataset/{}", d.name),
                    format!("create dataset {}", d.name),
                    Change::Dataset {
                        dataset: d.name.clone(),
                    },
                ));
            }
        }
        if let Some(s) = &spec.swap {
            if !datasets.contains(&s.volume) {
                out.push(Planned::new(
                    "storage",
                    "swap/volume",
                    format!("create swap volume {} of {}", s.volume, s.size),
                    Change::SwapVolume,
                ));
            }
            let vfstab = ctx.read("/etc/vfstab")?.unwrap_or_default();
            let dev = format!("/dev/zvol/dsk/{}", s.volume);
            if !vfstab
                .lines()
                .any(|l| l.split_whitespace().next() == Some(dev.as_str()))
            {
                out.push(Planned::new(
                    "storage",
                    "swap/vfstab",
                    format!("add {dev} to /etc/vfstab and enable it"),
                    Change::SwapVfstab,
                ));
            }
        }
        if spec.grow_root_pool {
            out.push(Planned::new(
                "storage",
                "grow-root-pool",
                "expand the root pool onto its grown disks",
                Change::GrowRootPool,
            ));
        }
        Ok(out)
    }

    fn apply(&self, ctx: &Ctx, input: &Input, c: &Change) -> Result<Outcome, PluginError> {
        let spec = input
            .storage
            .as_ref()
            .ok_or_else(|| PluginError::NotDesired("storage".into()))?;
        let live = ctx.live();
        let skipped = || {
            Ok(Outcome::Skipped(
                "acts on the running system; not run under an alternate root".into(),
            ))
        };
        match c {
            Change::Pool { pool: name } => {
                if !live {
                    return skipped();
                }
                let p = spec
                    .pools
                    .iter()
                    .find(|p| p.name == *name)
                    .ok_or_else(|| PluginError::NotDesired(format!("pool {name}")))?;
                ctx.run(zpool_create(p))?;
            }
            Change::Dataset { dataset: name } => {
                if !live {
                    return skipped();
                }
                let d = spec
                    .datasets
                    .iter()
                    .find(|d| d.name == *name)
                    .ok_or_else(|| PluginError::NotDesired(format!("dataset {name}")))?;
                let mut cmd = Cmd::new(ZFS).args(["create", "-p"]);
                for (k, v) in &d.properties {
                    cmd = cmd.arg("-o").arg(format!("{k}={v}"));
                }
                ctx.run(cmd.arg(&d.name))?;
            }
            Change::SwapVolume => {
                if !live {
                    return skipped();
                }
                let s = spec
                    .swap
                    .as_ref()
                    .ok_or_else(|| PluginError::NotDesired("storage.swap".into()))?;
                ctx.run(Cmd::new(ZFS).args(["create", "-V", &s.size, &s.volume]))?;
            }
            Change::SwapVfstab => {
                let s = spec
                    .swap
                    .as_ref()
                    .ok_or_else(|| PluginError::NotDesired("storage.swap".into()))?;
                let mut vfstab = ctx.read("/etc/vfstab")?.unwrap_or_default();
                if !vfstab.is_empty() && !vfstab.ends_with('\n') {
                    vfstab.push('\n');
                }
                vfstab.push_str(&vfstab_line(&s.volume));
                ctx.write("/etc/vfstab", vfstab.as_bytes(), 0o644, None)?;
                if live {
                    // swapadd adds every swap entry of /etc/vfstab that is not in use yet.
                    ctx.run(Cmd::new(SWAPADD))?;
                }
            }
            Change::GrowRootPool => {
                if !live {
                    return skipped();
                }
                let root_ds = ctx
                    .query(Cmd::new(ZFS).args(["list", "-H", "-o", "name", "/"]))?
                    .unwrap_or_default();
                let pool = root_ds
                    .trim()
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                if pool.is_empty() {
                    return Err(PluginError::Failed(
                        "cannot find the root pool (`zfs list -H -o name /` names none)".into(),
                    ));
                }
                let vdevs = ctx
                    .query(Cmd::new(ZPOOL).args(["list", "-H", "-v", "-P", "-o", "name", &pool]))?
                    .unwrap_or_default();
                for dev in leaf_devices(&vdevs) {
                    ctx.run(Cmd::new(ZPOOL).args(["online", "-e", &pool, dev]))?;
                }
            }
        }
        Ok(Outcome::Done)
    }
}

/// The disk devices in `zpool list -H -v -P -o name POOL` output. The first line is the
/// pool's own row (the `-o` columns); after it every vdev has a row of its own in a fixed
/// layout that ignores `-o`: in scripted mode (`-H`) a tab, the vdev's name (`-P`: the full
/// device path), then a tab before each of size, alloc, free, ckpoint, expandsz, frag, cap,
/// dedup and health (illumos-gate usr/src/cmd/zpool/zpool_main.c, print_list_stats() and
/// print_one_column()). Only the name field is a device; mirror and raidz rows and the
/// `logs`/`cache`/`spare` headings are not paths and are left out.
fn leaf_devices(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter_map(|l| l.strip_prefix('\t'))
        .filter_map(|l| l.split('\t').next())
        .filter(|name| name.starts_with("/dev/"))
        .collect()
}

pub fn zpool_create(p: &crate::schema::Pool) -> Cmd {
    let mut cmd = Cmd::new(ZPOOL).arg("create");
    for (k, v) in &p.properties {
        cmd = cmd.arg("-o").arg(format!("{k}={v}"));
    }
    cmd = cmd.arg(&p.name);
    let layout = match p.layout {
        Layout::Stripe => None,
        Layout::Mirror => Some("mirror"),
        Layout::Raidz => Some("raidz"),
        Layout::Raidz2 => Some("raidz2"),
        Layout::Raidz3 => Some("raidz3"),
    };
    if let Some(l) = layout {
        cmd = cmd.arg(l);
    }
    cmd.args(&p.disks)
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use runner::{Output, Recorder};
    use serde_json::json;

    #[test]
    fn live_commands_are_exact_and_existing_things_are_left_alone() {
        let rec = Recorder::new();
        rec.on("/usr/sbin/zpool list -H -o name", Output::ok("rpool\n"))
            .on(
                "/usr/sbin/zfs list -H -o name /",
                Output::ok("rpool/ROOT/openindiana\n"),
            )
            .on(
                "/usr/sbin/zfs list -H -o name",
                Output::ok("rpool\nrpool/export\n"),
            )
            // illumos-gate usr/src/cmd/zpool/zpool_main.c: the pool row holds the -o
            // columns (print_pool); each vdev row, in scripted mode, is "\t" NAME and
            // "\t" before each of size, alloc, free, ckpoint, expandsz, frag, cap, dedup,
            // health (print_list_stats, print_one_column: 0 prints "-", cap "%1.2f%%").
            .on(
                "/usr/sbin/zpool list -H -v -P -o name rpool",
                Output::ok("rpool\n\t/dev/dsk/c1t0d0s1\t19.9G\t1.23G\t18.6G\t-\t10G\t3%\t6.17%\t-\tONLINE\n"),
            );
        let ctx = Ctx::new(crate::rootfs::Root::new("/"), true, &rec);
        let d = json!({"storage": {
            "pools": [{"name": "rpool", "disks": ["c1t0d0"]}, {"name": "data", "layout": "mirror", "disks": ["c2t0d0", "c2t1d0"], "properties": {"ashift": "12"}}],
            "datasets": [{"name": "rpool/export"}, {"name": "data/www", "properties": {"compression": "lz4"}}],
            "swap": {"size": "2G"},
            "grow_root_pool": true
        }});
        let d = testing::input(&Storage, d);
        let changes = Storage.plan(&ctx, &d).unwrap();
        let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "pool/data",
                "dataset/data/www",
                "swap/volume",
                "swap/vfstab",
                "grow-root-pool"
            ]
        );
        for c in &changes {
            Storage.apply(&ctx, &d, &c.change).unwrap();
        }
        assert_eq!(
            ctx.take_actions(),
            [
                "would run: /usr/sbin/zpool create -o ashift=12 data mirror c2t0d0 c2t1d0",
                "would run: /usr/sbin/zfs create -p -o compression=lz4 data/www",
                "would run: /usr/sbin/zfs create -V 2G rpool/swap",
                "would write: /etc/vfstab (0644)",
                "would run: /sbin/swapadd",
                "would run: /usr/sbin/zpool online -e rpool /dev/dsk/c1t0d0s1",
            ]
        );
    }

    #[test]
    fn only_the_name_field_of_leaf_vdev_rows_is_a_device() {
        // A mirrored pool with a log device (print_list_stats: a "logs" heading row
        // without the leading tab, a "mirror-0" row that is not a path, leaves showing
        // only their physical size and health).
        let listing = "rpool\n\tmirror-0\t19.9G\t1.23G\t18.6G\t-\t-\t3%\t6.17%\t-\tONLINE\n\
                       \t/dev/dsk/c1t0d0s1\t20.0G\t-\t-\t-\t-\t-\t-\t-\tONLINE\n\
                       \t/dev/dsk/c1t1d0s1\t20.0G\t-\t-\t-\t-\t-\t-\t-\tONLINE\n\
                       logs      -      -      -        -         -      -      -      -         -\n\
                       \t/dev/dsk/c2t0d0\t7.50G\t0\t7.50G\t-\t-\t0%\t0.00%\t-\tONLINE\n";
        assert_eq!(
            leaf_devices(listing),
            ["/dev/dsk/c1t0d0s1", "/dev/dsk/c1t1d0s1", "/dev/dsk/c2t0d0"]
        );
    }

    #[test]
    fn alternate_root_gets_the_vfstab_line_only() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/vfstab"),
            "#device\n/proc\t-\t/proc\tproc\t-\tno\t-",
        )
        .unwrap();
        let rec = Recorder::new();
        let d = json!({"storage": {"swap": {"size": "1G", "volume": "rpool/swap"}}});
        let r = testing::apply(&Storage, t.path(), &rec, d.clone(), false).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].status, crate::protocol::Status::Skipped);
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/vfstab")).unwrap(),
            "#device\n/proc\t-\t/proc\tproc\t-\tno\t-\n/dev/zvol/dsk/rpool/swap\t-\t-\tswap\t-\tno\t-\n"
        );
        let again = testing::plan(&Storage, t.path(), &rec, d).unwrap();
        assert_eq!(
            again.len(),
            1,
            "only the (skipped) volume remains: {again:?}"
        );
        assert!(rec.lines().is_empty());
    }
}
