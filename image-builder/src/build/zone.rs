//! Zone builds: the steps run on a fresh root in `DATASET/work/GROUP/NAME` (destroyed and
//! recreated every build: a zone image has no stages), then the root is written out as a
//! tarball for `zoneadm install -a` and/or a `zfs send` stream of its snapshot with an
//! imgadm-style manifest. A failed or interrupted build removes the root and the scratch
//! dataset; outputs are written beside their names and renamed into place.

use std::time::{SystemTime, UNIX_EPOCH};

use zfs::CreateOptions;

use super::error::BuildError;
use super::journal::fresh_dataset;
use super::layout;
use super::target::{Target, TargetCx};
use super::zone_image as image;
use super::{BuildOptions, Env, Outcome};
use crate::template::model::{Zone, ZoneOutput};

/// The snapshot of the finished root that the stream is sent from.
pub const SNAPSHOT: &str = "zone";

/// A zone target and the UUID its image gets.
pub(crate) struct ZoneBuild<'a> {
    pub target: &'a Zone,
    uuid: String,
}

impl<'a> ZoneBuild<'a> {
    pub fn new(target: &'a Zone) -> Self {
        ZoneBuild {
            target,
            uuid: String::new(),
        }
    }
}

impl Target for ZoneBuild<'_> {
    fn key(&self) -> &'static str {
        "zone"
    }

    fn work_name<'a>(&'a self, _output_name: &'a str) -> &'a str {
        &self.target.name
    }

    fn check(&mut self, _env: &Env, _opts: &BuildOptions) -> Result<(), BuildError> {
        self.uuid = match &self.target.uuid {
            Some(u) => u.clone(),
            None => crate::template::zone::random_uuid().map_err(BuildError::Uuid)?,
        };
        Ok(())
    }

    fn run(&mut self, cx: &mut TargetCx) -> Result<Outcome, BuildError> {
        cx.rec.cache = "miss".into();
        stage(cx, self.target, &self.uuid)?;
        Ok(Outcome::Built)
    }
}

fn stage(cx: &mut TargetCx, target: &Zone, uuid: &str) -> Result<(), BuildError> {
    let (plan, opts, env, layout, output_dir) =
        (cx.plan, cx.opts, cx.env, cx.layout, cx.output_dir);
    let prefix = &format!("{}-{}", plan.group, cx.output_name);
    let journal = &mut *cx.journal;
    let events = &mut *cx.events;
    let rec = &mut cx.rec;
    let zfs = env.zfs;
    let work = layout.work.clone().unwrap_or_default();
    let tmp_mark = fresh_dataset(
        zfs,
        journal,
        &layout.tmp,
        zfs.exists(&layout.tmp)?,
        &CreateOptions::new().parents().prop("sync", "disabled"),
    )?;
    let tmp_dir = layout::mountpoint(zfs, &layout.tmp)?;

    // Every zone image starts from an empty root.
    let work_mark = fresh_dataset(
        zfs,
        journal,
        &work,
        zfs.exists(&work)?,
        &CreateOptions::new().parents(),
    )?;
    let root_dir = layout::mountpoint(zfs, &work)?;
    let root = super::open_root(&root_dir, "zone")?;
    let place = super::StepPlace {
        root: &root,
        output_dir,
        tmp_dir: &tmp_dir,
        pool: None,
    };
    rec.steps = super::run_steps_in(plan, opts, env, &place, events)?;

    let snap = format!("{work}@{SNAPSHOT}");
    zfs.snapshot(&snap, &[])?;
    for out in target.wanted() {
        if runner::interrupt::requested() {
            return Err(BuildError::Interrupted);
        }
        match out {
            ZoneOutput::Tarball => {
                let name = image::tarball_name(prefix, target);
                image::write_tarball(&root, &output_dir.join(&name), opts.source_date_epoch)?;
                rec.outputs.push(name);
            }
            ZoneOutput::Stream => {
                let raw = tmp_dir.join("zone.zfs");
                zfs.send(&snap, &raw)?;
                let name = image::stream_name(prefix, target);
                let stream = output_dir.join(&name);
                image::compress_stream(&raw, &stream, target)?;
                let _ = std::fs::remove_file(&raw);
                let created = opts.source_date_epoch.unwrap_or_else(|| {
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0)
                });
                let m = image::manifest(target, uuid, &stream, created)?;
                let mname = image::manifest_name(prefix);
                image::write_manifest(&m, &output_dir.join(&mname))?;
                rec.outputs.push(name);
                rec.outputs.push(mname);
            }
        }
    }
    // The root stays for inspection until the next build of this image replaces it.
    journal.done(work_mark)?;
    zfs.destroy(&layout.tmp, true)?;
    journal.done(tmp_mark)?;
    Ok(())
}
