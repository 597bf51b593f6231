//! Dataset builds: a stage of an image tree on a work dataset that persists between
//! stages, from an input snapshot to an output snapshot.
//!
//! Unlike the reference tool, an existing output snapshot is reused only when its cache key
//! matches this build's; otherwise the stage is rebuilt from its input snapshot. An output
//! snapshot without a key (made by the reference tool, an older version or by hand) is
//! neither reused nor thrown away: the build stops and asks for -x (or -r). As in the
//! reference, a work dataset is destroyed only with -x, or when its output snapshot
//! carries this tool's key. A failed or interrupted stage leaves the work dataset at its
//! input snapshot (or removes it, when this build created it), and the scratch dataset is
//! always removed.

use std::time::SystemTime;

use zfs::CreateOptions;

use super::archive_store::{self, ArchiveRef};
use super::cache::{self, KEY_PROPERTY};
use super::checkpoint;
use super::error::BuildError;
use super::journal::{Mark, Undo};
use super::layout;
use super::scratch::Scratch;
use super::select;
use super::stage_store::{self, StageRef, StoreOptions};
use super::target::{Keep, Target, TargetCx};
use super::work_view::{self, Prop, WorkView};
use super::{BuildOptions, Event, Outcome};
use crate::template::model::Dataset;
use crate::template::{Plan, PlannedStep};

impl Target for &Dataset {
    fn key(&self) -> &'static str {
        "dataset"
    }

    fn work_name<'a>(&'a self, _output_name: &'a str) -> &'a str {
        &self.name
    }

    /// A stage that may be a cache hit lists its work dataset and snapshots with the root.
    fn listing(&self, opts: &BuildOptions) -> &'static [&'static str] {
        let may_hit = self.output_snapshot.is_some()
            && !opts.reset
            && !opts.fullreset
            && opts.until.is_none()
            && opts.from.is_none();
        if may_hit {
            &work_view::PROPS
        } else {
            &[]
        }
    }

    fn cached(&mut self, cx: &mut TargetCx, rows: &[zfs::Listed]) -> Result<bool, BuildError> {
        cached(cx, self, rows)
    }

    fn run(&mut self, cx: &mut TargetCx) -> Result<Outcome, BuildError> {
        stage(cx, self)
    }

    /// With `--keep-failed`, the work dataset's own undo stays in the journal: `image-builder
    /// clean` (or the next build) rolls it back to its newest checkpoint or input.
    fn kept_on_failure<'a>(&'a self, opts: &'a BuildOptions, work: &'a str) -> Option<Keep<'a>> {
        if !opts.keep_failed {
            return None;
        }
        Some(Box::new(move |u: &Undo| match u {
            Undo::Rollback { snapshot } => snapshot
                .strip_prefix(work)
                .is_some_and(|r| r.starts_with('@')),
            Undo::DestroyDataset { name } => name == work,
            _ => false,
        }))
    }
}

fn stage(cx: &mut TargetCx, target: &Dataset) -> Result<Outcome, BuildError> {
    let (plan, opts, env, layout, output_dir) =
        (cx.plan, cx.opts, cx.env, cx.layout, cx.output_dir);
    let journal = &mut *cx.journal;
    let events = &mut *cx.events;
    let rec = &mut cx.rec;
    let zfs = env.zfs;
    let work = cx.work.to_string();
    let snap = |s: &str| format!("{work}@{s}");

    // Scratch space for this build only, made when first needed.
    let mut scratch = Scratch::new(zfs, &layout.tmp);

    // The session's listing answers until the work dataset changes (-x has no listing).
    let mut view = WorkView::new(zfs, &work, cx.work_rows);
    if opts.fullreset {
        // One command: a work dataset that is not there is no error, and gone either way.
        match zfs.destroy(&work, true) {
            Ok(()) => tracing::info!("-x: destroyed work dataset {work}"),
            Err(zfs::ZfsError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        view.gone();
    }

    let input_guid = match &target.input_snapshot {
        Some(s) if view.exists(&snap(s))? => view.get(&snap(s), Prop::Guid)?,
        _ => None,
    };
    let inputs = cache::inputs(plan, opts, output_dir, input_guid).map_err(BuildError::Sources)?;
    let key = inputs.key();
    let prefix = inputs.prefix_keys();
    rec.key = Some(key.clone());
    rec.inputs = Some(inputs);
    // What `--store` needs of this stage (docs/scaling.md).
    let (in_snap, out_snap) = (
        target.input_snapshot.as_deref().map(snap),
        target.output_snapshot.as_deref().map(snap),
    );
    let guid = rec.inputs.as_ref().and_then(|i| i.input_guid.clone());
    let stored = out_snap.as_deref().map(|output| StageRef {
        input: in_snap.as_deref(),
        input_guid: guid.as_deref(),
        output,
        key: &key,
    });
    // A build of part of the stage (--until, --from) takes nothing from the store.
    let whole = opts.until.is_none() && opts.from.is_none();
    let archive = ArchiveRef {
        key: &key,
        input_guid: guid.as_deref(),
    };
    if let (Some(store), None, true, false) = (&opts.store, &out_snap, whole, opts.resume) {
        // A stage without an output snapshot: the store may have the files it makes.
        if let Some(files) = archive_store::fetch(store, &archive, output_dir, events)? {
            rec.cache = "store".into();
            rec.outputs = files;
            return Ok(Outcome::Cached);
        }
        if opts.fetch_only {
            return Err(not_in_store(plan, store, &key));
        }
    }

    let mut work_mark: Mark;
    let mut resumed: Option<(usize, String)> = None;
    // The checkpoints left after the rollback below, oldest first (for pruning).
    let mut kept: Vec<(usize, String)> = Vec::new();
    if view.exists(&work)? {
        // Whether the work dataset holds this tool's own output for this stage: only then
        // may a first stage (no input snapshot to roll back to) destroy it without -x.
        let mut ours = false;
        if let Some(out) = &target.output_snapshot {
            let reason = if !view.exists(&snap(out))? {
                format!("{} does not exist", snap(out))
            } else {
                match view.get(&snap(out), Prop::Key)? {
                    Some(k) if k == key && !opts.reset && select::partial(opts).is_none() => {
                        // Later stages' snapshots were made from this one: keep them. Only
                        // when this is the newest snapshot is the tree reset to it.
                        if view.snapshots()?.last() == Some(&snap(out)) {
                            zfs.rollback(&snap(out))?;
                        }
                        events(&Event::CacheHit {
                            snapshot: snap(out),
                            key: key.clone(),
                        });
                        rec.cache = "hit".into();
                        return Ok(Outcome::Cached);
                    }
                    Some(_) => {
                        ours = true;
                        if opts.reset {
                            "-r was given".to_string()
                        } else if let Some(why) = select::partial(opts) {
                            why
                        } else {
                            "the template, its files, its features or its input changed".to_string()
                        }
                    }
                    None => match &target.input_snapshot {
                        // As the reference: -r rebuilds a stage from its input snapshot.
                        Some(s) if opts.reset => format!(
                            "-r was given ({} was built elsewhere); rebuilding from {}",
                            snap(out),
                            snap(s)
                        ),
                        _ => return Err(built_elsewhere(&work, &snap(out), target, &snap)),
                    },
                }
            };
            events(&Event::CacheMiss { reason });
        }
        let after = target.input_snapshot.as_deref().map(snap);
        let found = checkpoint::list_in(&view.snapshots()?, &work, after.as_deref());
        resumed = match (opts.from, opts.until) {
            (Some(from), _) => select::from_checkpoint(zfs, plan, &work, &found, &prefix, from)?,
            _ if opts.reset => None,
            (None, until) => {
                let mut found = found.clone();
                // A checkpoint after STEP holds more than --until STEP asks for.
                found.retain(|(i, _)| until.is_none_or(|u| *i <= u));
                let prefix_of = |s: &str| view.get(s, Prop::Prefix);
                checkpoint::newest_match_by(&found, &prefix, &prefix_of)?
            }
        };
        if let Some((index, cp)) = &resumed {
            // Later checkpoints (of steps that changed) and the old output snapshot go.
            zfs.rollback(cp)?;
            let at = found.iter().position(|(_, s)| s == cp).map_or(0, |p| p + 1);
            kept = found[..at].to_vec();
            work_mark = journal.push(Undo::Rollback {
                snapshot: cp.clone(),
            })?;
            events(&Event::Resume {
                snapshot: cp.clone(),
                index: *index,
            });
        } else if opts.resume {
            return Err(BuildError::NoCheckpoint { work });
        } else {
            match &target.input_snapshot {
                Some(s) if view.exists(&snap(s))? => {
                    zfs.rollback(&snap(s))?;
                    work_mark = journal.push(Undo::Rollback { snapshot: snap(s) })?;
                }
                Some(s) => {
                    return Err(BuildError::InputGone {
                        snapshot: snap(s),
                        work,
                    })
                }
                None if !ours => {
                    // Nothing says this tool made it: as the reference, only -x destroys it.
                    let what = match &target.output_snapshot {
                        Some(out) => format!("its output snapshot {} does not exist", snap(out)),
                        None => "the stage has neither an input nor an output snapshot".to_string(),
                    };
                    return Err(BuildError::NotOurs { work, why: what });
                }
                None => {
                    // A first stage has nothing to roll back to: it starts from scratch.
                    zfs.destroy(&work, true)?;
                    work_mark = journal.push(Undo::DestroyDataset { name: work.clone() })?;
                    zfs.create(&work, &CreateOptions::new().parents())?;
                    view.forget();
                }
            }
        }
    } else {
        if opts.resume {
            return Err(BuildError::NoWork { work });
        }
        if opts.from.is_some_and(|f| f > 0) {
            return Err(BuildError::NoFromWork { work });
        }
        if let Some(s) = &target.input_snapshot {
            return Err(BuildError::NoInput { snapshot: snap(s) });
        }
        events(&Event::CacheMiss {
            reason: format!("{work} does not exist"),
        });
        work_mark = journal.push(Undo::DestroyDataset { name: work.clone() })?;
        zfs.create(&work, &CreateOptions::new().parents())?;
        view.forget();
    }

    if let (Some(store), Some(stage), None, true) = (&opts.store, &stored, &resumed, whole) {
        // A local miss: the store may have the stage.
        let tmp_dir = &mut || scratch.dir(journal);
        if stage_store::receive(store, env, stage, tmp_dir, events)? {
            journal.done(work_mark)?;
            scratch.remove(journal)?;
            rec.cache = "store".into();
            return Ok(Outcome::Cached);
        }
        if opts.fetch_only {
            return Err(not_in_store(plan, store, &key));
        }
    }
    let mut todo = plan.clone();
    if let Some((index, _)) = &resumed {
        todo.steps.retain(|s| s.index > *index);
    }
    if let Some(until) = opts.until {
        todo.steps.retain(|s| s.index <= until);
    }
    // A rollback keeps the work dataset where it was mounted.
    let root_dir = view.mount_dir()?;
    // The scratch dataset only when a step that runs, or a push to the store, uses it.
    // Otherwise no step looks at `tmp_dir` (Execute::uses_scratch); the path given then
    // does not exist, so that one that did would fail rather than write elsewhere.
    let needs_scratch = opts.store.is_some()
        || todo
            .steps
            .iter()
            .any(|s| s.skip.is_none() && s.kind.as_ref().is_some_and(|k| k.uses_scratch()));
    let tmp_dir = if needs_scratch {
        scratch.dir(journal)?
    } else {
        std::path::PathBuf::from("/nonexistent/image-builder-scratch")
    };
    let before = list_outputs(output_dir);
    let root = super::open_root(&root_dir, "image")?;
    let place = super::StepPlace {
        root: &root,
        output_dir,
        tmp_dir: &tmp_dir,
        pool: None,
    };
    // --until: the tree after the last step it runs is kept as a checkpoint.
    let last = opts.until.and_then(|u| select::last_running(&todo, u));
    let mut stopped_at: Option<String> = None;
    let events = std::cell::RefCell::new(events);
    let mut since = 0.0;
    let mut costs = checkpoint::Costs::default();
    let mut wrote_outputs = false;
    let mut taken: Vec<(usize, String)> = Vec::new();
    let mut after = |s: &PlannedStep, seconds: f64| -> Result<(), BuildError> {
        since += seconds;
        wrote_outputs |= checkpoint::writes_outputs(s.kind.as_ref());
        let pos = plan
            .steps
            .iter()
            .position(|x| x.index == s.index)
            .unwrap_or(plan.steps.len());
        let rest = plan.steps.get(pos + 1..).unwrap_or_default();
        let Some(k) = prefix.get(pos) else {
            return Ok(());
        };
        let stop = last == Some(s.index);
        if wrote_outputs || !(stop || checkpoint::wanted(&opts.checkpoints, since, &costs, rest)) {
            return Ok(());
        }
        let cp = checkpoint::name(&work, s.index);
        let started = std::time::Instant::now();
        zfs.snapshot(&cp, &[(checkpoint::PREFIX_PROPERTY, k)])?;
        let took = started.elapsed().as_secs_f64();
        costs.add(took);
        tracing::debug!(
            "checkpoint {cp} in {took:.3} s; the next after {:.1} s of steps at least",
            costs.spacing(&opts.checkpoints)
        );
        // A failure from here on goes back to this checkpoint, not to the stage's start.
        work_mark = journal.replace(
            work_mark,
            Undo::Rollback {
                snapshot: cp.clone(),
            },
        )?;
        taken.push((s.index, cp.clone()));
        since = 0.0;
        if stop {
            stopped_at = Some(cp.clone());
        }
        (events.borrow_mut())(&Event::Checkpoint {
            snapshot: cp,
            index: s.index,
        });
        Ok(())
    };
    rec.steps = super::run_steps_in_then(
        &todo,
        opts,
        env,
        &place,
        &mut |e| (events.borrow_mut())(e),
        &mut after,
    )?;

    match opts.until {
        // Never complete: no output snapshot, no cache key.
        Some(until) => {
            let checkpoint = stopped_at.or_else(|| {
                let cp = checkpoint::name(&work, last?);
                resumed
                    .as_ref()
                    .filter(|(_, r)| *r == cp)
                    .map(|(_, r)| r.clone())
            });
            (events.borrow_mut())(&Event::Stopped {
                index: until,
                checkpoint,
            });
        }
        None => {
            if let Some(out) = &target.output_snapshot {
                zfs.snapshot(&snap(out), &[(KEY_PROPERTY, &key)])?;
            }
        }
    }
    journal.done(work_mark)?;
    // The checkpoints now after the input snapshot: those the rollback kept and those
    // this build took (nothing else snapshots the work dataset while its lock is held).
    let mut made = kept;
    made.extend(taken);
    for gone in checkpoint::prune(zfs, &made, opts.checkpoints.keep)? {
        tracing::info!("pruned checkpoint {gone}");
    }
    rec.cache = if opts.until.is_some() {
        "partial".into()
    } else {
        "miss".into()
    };
    rec.outputs = list_outputs(output_dir)
        .into_iter()
        .filter(|(n, m)| before.iter().all(|(bn, bm)| bn != n || bm != m))
        .map(|(n, _)| n)
        .collect();
    // A partial build (--until) is never pushed: it is no stage.
    if let (Some(store), None) = (&opts.store, opts.until) {
        let events = &mut |e: &Event| (events.borrow_mut())(e);
        match &stored {
            Some(stage) => stage_store::push(store, env, stage, rec, &tmp_dir, events)?,
            None => archive_store::push(store, &archive, rec, output_dir, &rec.outputs, events)?,
        }
    }
    scratch.remove(journal)?;
    Ok(Outcome::Built)
}

/// The cache-hit path, decided from one listing of the work dataset and its snapshots
/// (`rows`, with [`work_view::PROPS`]): true (the record filled in) when the output snapshot
/// carries this build's key.
/// The tree is then reset to it only when it is the newest snapshot and the work dataset
/// was written to since (`written` is not 0). False leaves everything to the full path,
/// which also says why the stage misses.
fn cached(cx: &mut TargetCx, target: &Dataset, rows: &[zfs::Listed]) -> Result<bool, BuildError> {
    let (plan, opts, env, output_dir) = (cx.plan, cx.opts, cx.env, cx.output_dir);
    let Some(out) = &target.output_snapshot else {
        return Ok(false);
    };
    let work = cx.work;
    let snap = |s: &str| format!("{work}@{s}");
    let value = |name: &str, p: Prop| {
        rows.iter()
            .find(|r| r.name == name)
            .and_then(|r| r.values.get(p.index()).cloned().flatten())
    };
    let Some(found) = value(&snap(out), Prop::Key) else {
        return Ok(false);
    };
    let input_guid = target
        .input_snapshot
        .as_ref()
        .and_then(|s| value(&snap(s), Prop::Guid));
    let inputs = cache::inputs(plan, opts, output_dir, input_guid).map_err(BuildError::Sources)?;
    let key = inputs.key();
    if found != key {
        return Ok(false);
    }
    // Later stages' snapshots were made from this one: keep them.
    let newest = rows.iter().rfind(|r| r.is_snapshot_of(work));
    if newest.is_some_and(|r| r.name == snap(out))
        && value(work, Prop::Written).as_deref() != Some("0")
    {
        env.zfs.rollback(&snap(out))?;
    }
    (cx.events)(&Event::CacheHit {
        snapshot: snap(out),
        key: key.clone(),
    });
    cx.rec.cache = "hit".into();
    cx.rec.key = Some(key);
    cx.rec.inputs = Some(inputs);
    Ok(true)
}

/// The refusal of a fetch-only build (`prereq`) that neither the cache nor the store
/// could answer.
fn not_in_store(plan: &crate::template::Plan, store: &StoreOptions, key: &str) -> BuildError {
    BuildError::NotInStore {
        template: format!("{}/{}", plan.group, plan.name),
        store: store.url.to_string(),
        tag: stage_store::tag(key),
    }
}

/// The refusal for an output snapshot without this tool's cache key: made by the reference
/// image-builder, an older version, or by hand, so nothing says what it holds or whether it
/// may be thrown away.
fn built_elsewhere(
    work: &str,
    out: &str,
    target: &Dataset,
    snap: &dyn Fn(&str) -> String,
) -> BuildError {
    let how = match &target.input_snapshot {
        Some(s) => format!(
            "pass -x to rebuild {work} from scratch, or -r to rebuild this stage from {}",
            snap(s)
        ),
        None => format!(
            "pass -x to rebuild {work} from scratch (-r cannot: the stage has no input snapshot)"
        ),
    };
    BuildError::BuiltElsewhere {
        snapshot: out.to_string(),
        how,
    }
}

/// Output files with their modification times, to tell which ones a build wrote.
fn list_outputs(dir: &std::path::Path) -> Vec<(String, Option<SystemTime>)> {
    let mut v: Vec<(String, Option<SystemTime>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().ok().and_then(|m| m.modified().ok()),
            )
        })
        .filter(|(n, _)| !n.starts_with('.') && n != "SHA256SUMS" && !n.ends_with(".build.json"))
        .collect();
    v.sort();
    v
}

/// Whether building `target` now would come from the cache, and why not. Reads ZFS only.
pub fn cache_status(
    plan: &Plan,
    target: &Dataset,
    opts: &BuildOptions,
    zfs: &dyn zfs::Zfs,
) -> Result<super::CacheStatus, BuildError> {
    use super::CacheStatus;
    let stage = layout::Stage::new(plan, target, opts);
    let (layout, work) = (&stage.layout, stage.work.clone());
    let snap = |s: &str| stage.snap(s);
    let Some(out) = &target.output_snapshot else {
        return Ok(CacheStatus::Miss(
            "the stage has no output snapshot, so it always runs".into(),
        ));
    };
    if !zfs.exists(&layout.root)? || !zfs.exists(&work)? {
        return Ok(CacheStatus::Miss(format!("{work} does not exist")));
    }
    if !zfs.exists(&snap(out))? {
        return Ok(CacheStatus::Miss(format!("{} does not exist", snap(out))));
    }
    let output_dir = stage.output_dir(zfs)?;
    let input_guid = match &target.input_snapshot {
        Some(s) if zfs.exists(&snap(s))? => zfs.get(&snap(s), "guid")?,
        _ => None,
    };
    let key = cache::inputs(plan, opts, &output_dir, input_guid)
        .map_err(BuildError::Sources)?
        .key();
    Ok(match zfs.get(&snap(out), KEY_PROPERTY)? {
        Some(k) if k == key => CacheStatus::Hit(snap(out)),
        Some(_) => {
            CacheStatus::Miss("the template, its files, its features or its input changed".into())
        }
        None => CacheStatus::Miss(built_elsewhere(&work, &snap(out), target, &snap).to_string()),
    })
}
