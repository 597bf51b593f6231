//! Zone builds: the steps run on a fresh root in `DATASET/work/GROUP/NAME` (destroyed and
//! recreated every build: a zone image has no stages), then the root is written out as a
//! tarball for `zoneadm install -a` and/or a `zfs send` stream of its snapshot with an
//! imgadm-style manifest. A failed or interrupted build removes the root and the scratch
//! dataset; outputs are written beside their names and renamed into place.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use zfs::CreateOptions;

use super::error::BuildError;
use super::journal::{fresh_dataset, Journal};
use super::layout::{self, Layout};
use super::record::Record;
use super::session::Session;
use super::zone_image as image;
use super::{BuildOptions, Env, Event, Outcome};
use crate::template::model::{Zone, ZoneOutput};
use crate::template::Plan;

/// The snapshot of the finished root that the stream is sent from.
pub const SNAPSHOT: &str = "zone";

pub fn build(
    plan: &Plan,
    target: &Zone,
    opts: &BuildOptions,
    env: &Env,
    events: &mut dyn FnMut(&Event),
) -> Result<Outcome, BuildError> {
    let started = Instant::now();
    let output_name = opts
        .output_name
        .clone()
        .unwrap_or_else(|| plan.name.clone());
    let layout = Layout::new(&opts.dataset, &plan.group, &output_name, Some(&target.name));
    let work = layout.work.clone().unwrap_or_default();
    events(&Event::Start {
        group: plan.group.clone(),
        name: plan.name.clone(),
        target: "zone".into(),
        work: Some(work.clone()),
    });
    let uuid = match &target.uuid {
        Some(u) => u.clone(),
        None => crate::template::zone::random_uuid()
            .map_err(|e| BuildError::State(format!("cannot make an image UUID: {e}")))?,
    };

    let mut session = Session::open(env, &layout, &work, events)?;
    let output_dir = session.output_dir.clone();

    let prefix = format!("{}-{output_name}", plan.group);
    let mut rec = Record {
        group: plan.group.clone(),
        name: plan.name.clone(),
        output_name: output_name.clone(),
        host: env.host.name().to_string(),
        started: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        seconds: 0.0,
        cache: "miss".into(),
        key: None,
        inputs: None,
        steps: Vec::new(),
        outputs: Vec::new(),
    };
    let result = stage(
        plan,
        target,
        opts,
        env,
        &layout,
        &output_dir,
        &prefix,
        &uuid,
        &mut session.journal,
        &mut rec,
        events,
    );
    if let Err(e) = result {
        session.abort(env, events);
        return Err(e);
    }
    session.finish(&mut rec, started, events)?;
    Ok(Outcome::Built)
}

#[allow(clippy::too_many_arguments)]
fn stage(
    plan: &Plan,
    target: &Zone,
    opts: &BuildOptions,
    env: &Env,
    layout: &Layout,
    output_dir: &Path,
    prefix: &str,
    uuid: &str,
    journal: &mut Journal,
    rec: &mut Record,
    events: &mut dyn FnMut(&Event),
) -> Result<(), BuildError> {
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
