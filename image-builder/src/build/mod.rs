//! Running a validated plan: the build targets, the stage cache, locking and cleanup.

mod archive_store;
pub mod bootblock;
pub mod cache;
pub mod checkpoint;
pub mod convert;
mod dataset;
pub mod device;
pub mod digests;
pub mod error;
mod error_json;
mod fs;
pub mod gpt;
pub mod image_store;
pub mod inspect;
mod iso;
pub mod journal;
pub mod layout;
pub mod lock;
mod pool;
mod preflight;
mod prereq;
pub mod record;
mod scratch;
pub mod select;
mod session;
pub mod shell;
pub mod stage_store;
mod target;
mod work;
mod work_view;
mod zone;
pub mod zone_image;

use std::path::PathBuf;
use std::time::Instant;

use runner::Runner;
use zfs::Zfs;

pub use error::BuildError;

use crate::host::Host;
use crate::steps::{DevfsSetup, SmfSeeding, StepCx};
pub use preflight::preflight;

use crate::template::{Plan, Target};

/// How to build, beyond the template.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The root dataset (`-d`).
    pub dataset: String,
    /// Name for the work area and outputs (`-N`), default the template name.
    pub output_name: Option<String>,
    /// `-S`: the svccfg for `seed_smf`.
    pub svccfg: PathBuf,
    /// `--format`: also convert raw disk images to these formats with `qemu-img`.
    pub formats: Vec<convert::Format>,
    /// Do not check that the host has the tools an image target needs (for runs whose
    /// commands are recorded rather than executed).
    pub assume_tools: bool,
    /// `-r`: rebuild even when the stage is current.
    pub reset: bool,
    /// `-x`: destroy the work dataset first.
    pub fullreset: bool,
    pub smf: SmfSeeding,
    /// `--devfs-at-first-boot`: how `devfsadm` steps run.
    pub devfs: DevfsSetup,
    pub source_date_epoch: Option<i64>,
    pub template_root: PathBuf,
    pub external: Vec<PathBuf>,
    /// `--checkpoint-after`, `--keep-checkpoints`: step checkpoints in dataset stages.
    pub checkpoints: checkpoint::Policy,
    /// `--keep-failed`: a failed or interrupted dataset stage leaves its work dataset as
    /// the failure left it (recorded in the journal for `image-builder clean`).
    pub keep_failed: bool,
    /// `--resume`: rebuild a dataset stage only from a matching checkpoint; refuse when
    /// none matches.
    pub resume: bool,
    /// `--store`: receive dataset stages that miss locally from a shared store, push
    /// those built (docs/scaling.md).
    pub store: Option<stage_store::StoreOptions>,
    /// `--until`: run a dataset stage's steps up to this index only; the stage gets a
    /// checkpoint after it but no output snapshot, so it is not complete.
    pub until: Option<usize>,
    /// `--from`: rerun a dataset stage from this step index, starting from the checkpoint
    /// that holds the steps before it; refuse when none does.
    pub from: Option<usize>,
    /// Take the stage from the cache or the store only, never running a step: how a
    /// `--store` build gets the stages that make its inputs (`prereq`).
    pub fetch_only: bool,
}

impl BuildOptions {
    /// Options for building templates under `template_root` into `dataset`, with the
    /// reference tool's defaults: no `-N`, `/usr/sbin/svccfg`, SMF imported and devfsadm
    /// run during the build, no reset, raw images only, tools checked, no fixed timestamp.
    pub fn new(dataset: impl Into<String>, template_root: impl Into<PathBuf>) -> BuildOptions {
        BuildOptions {
            dataset: dataset.into(),
            output_name: None,
            svccfg: PathBuf::from("/usr/sbin/svccfg"),
            formats: Vec::new(),
            assume_tools: false,
            reset: false,
            fullreset: false,
            smf: SmfSeeding::Import,
            devfs: DevfsSetup::Devfsadm,
            source_date_epoch: None,
            template_root: template_root.into(),
            external: Vec::new(),
            checkpoints: checkpoint::Policy::default(),
            keep_failed: false,
            resume: false,
            store: None,
            until: None,
            from: None,
            fetch_only: false,
        }
    }
}

/// What happens during a build, for the CLI to show (plain lines or `--json` events).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Start {
        group: String,
        name: String,
        target: String,
        work: Option<String>,
    },
    /// An undo of the journal about to run: `message` for people, the undo's own fields
    /// (`undo` names its kind) for programs.
    Cleanup {
        message: String,
        #[serde(flatten)]
        undo: journal::Undo,
    },
    CacheHit {
        snapshot: String,
        key: String,
    },
    CacheMiss {
        reason: String,
    },
    /// `--store`: the stage missed locally and was received from the store.
    StoreHit {
        store: String,
        tag: String,
        digest: String,
        snapshot: String,
    },
    /// `--store`: a stage without an output snapshot missed locally, and the files it
    /// makes were fetched from the store into the output directory.
    StoreFiles {
        store: String,
        tag: String,
        digest: String,
        files: Vec<String>,
    },
    /// `--store`: the stage just built was pushed.
    StorePush {
        store: String,
        tag: String,
        digest: String,
    },
    StepStart {
        index: usize,
        t: String,
        location: String,
    },
    StepFinish {
        index: usize,
        t: String,
        seconds: f64,
    },
    StepSkipped {
        index: usize,
        t: String,
        reason: String,
    },
    /// The stage restarts from a checkpoint: steps up to `index` are not run again.
    Resume {
        snapshot: String,
        index: usize,
    },
    Checkpoint {
        snapshot: String,
        index: usize,
    },
    /// `--until`: the stage stopped after step `index`; it has no output snapshot, so it
    /// is not complete. `checkpoint` holds the tree (none when a step wrote outputs).
    Stopped {
        index: usize,
        checkpoint: Option<String>,
    },
    /// `--keep-failed`: the failed stage's work dataset is left in place.
    KeptFailed {
        work: String,
        dir: String,
        dataset: String,
    },
    Finish {
        seconds: f64,
        outputs: Vec<String>,
        record: String,
        /// The build's cache key (stages and images; none for zones).
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
}

/// The system a build works on.
pub struct Env<'a> {
    pub host: Host,
    pub runner: &'a dyn Runner,
    pub zfs: &'a dyn Zfs,
}

impl Env<'_> {
    pub fn system(&self) -> device::System<'_> {
        device::System {
            host: self.host,
            runner: self.runner,
            zfs: self.zfs,
        }
    }
}

/// Whether the stage was built or taken from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Built,
    Cached,
}

/// Builds `plan`. Nothing touches the system unless the plan is valid and the host has
/// every tool its running steps need.
pub fn build(
    plan: &Plan,
    opts: &BuildOptions,
    env: &Env,
    events: &mut dyn FnMut(&Event),
) -> Result<Outcome, BuildError> {
    build_in(plan, opts, env, events, &mut Vec::new())
}

/// [`build`], as one of the builds that take another's inputs (`prereq`) when `chain` is
/// not empty.
fn build_in(
    plan: &Plan,
    opts: &BuildOptions,
    env: &Env,
    events: &mut dyn FnMut(&Event),
    chain: &mut Vec<String>,
) -> Result<Outcome, BuildError> {
    let errors = plan.errors().count();
    if errors > 0 {
        return Err(BuildError::Invalid(errors));
    }
    preflight(plan, opts, env.host)?;
    if opts.until.is_some() || opts.from.is_some() {
        select::dataset_only(plan.target.as_ref(), "--until and --from")?;
    }
    // With --store, what it starts from and this machine lacks comes from the store.
    prereq::fetch(plan, opts, env, events, chain)?;
    if let (Some(store), Some(t)) = (&opts.store, &plan.target) {
        if !matches!(t, Target::Dataset(_)) {
            return build_and_push_image(plan, store, opts, env, events);
        }
    }
    run_target(plan, opts, env, events)
}

/// Builds `plan` as its target says, once the checks and the inputs are done.
fn run_target(
    plan: &Plan,
    opts: &BuildOptions,
    env: &Env,
    events: &mut dyn FnMut(&Event),
) -> Result<Outcome, BuildError> {
    let (mut d, mut k, mut z);
    let t: &mut dyn target::Target = match &plan.target {
        Some(Target::Dataset(dataset)) => {
            d = dataset;
            &mut d
        }
        Some(Target::Pool(p)) => {
            k = work::Kind::Pool(p);
            &mut k
        }
        Some(Target::Pcfs(p)) => {
            k = work::Kind::Pcfs(p);
            &mut k
        }
        Some(Target::Ufs(u)) => {
            k = work::Kind::Ufs(u);
            &mut k
        }
        Some(Target::Iso(i)) => {
            k = work::Kind::Iso(i);
            &mut k
        }
        Some(Target::Zone(zone)) => {
            z = zone::ZoneBuild::new(zone);
            &mut z
        }
        None => return Err(BuildError::Invalid(1)),
    };
    target::drive(t, plan, opts, env, events)
}

/// An image or zone build with `--store`: an image with its key is fetched from the store
/// (`work.rs`), else it is built and its outputs pushed (`image_store`).
fn build_and_push_image(
    plan: &Plan,
    store: &stage_store::StoreOptions,
    opts: &BuildOptions,
    env: &Env,
    events: &mut dyn FnMut(&Event),
) -> Result<Outcome, BuildError> {
    let mut finished = None;
    let outcome = run_target(plan, opts, env, &mut |e| {
        if let Event::Finish {
            outputs,
            record,
            key,
            ..
        } = e
        {
            finished = Some((outputs.clone(), PathBuf::from(record), key.clone()));
        }
        events(e)
    })?;
    if let (Outcome::Built, Some((outputs, record, key))) = (&outcome, finished) {
        let dir = record.parent().unwrap_or(std::path::Path::new("."));
        let output_name = opts.output_name.as_deref().unwrap_or(&plan.name);
        image_store::push(
            store,
            dir,
            &image_store::ImageId {
                group: &plan.group,
                output_name,
                key: key.as_deref(),
            },
            &outputs,
            &record,
            events,
        )?;
    }
    Ok(outcome)
}

/// Where a build's steps run: the tree they change and the directories they read and write.
pub(crate) struct StepPlace<'a> {
    /// The image or zone root (see [`open_root`]).
    pub root: &'a confine::Root,
    pub output_dir: &'a std::path::Path,
    pub tmp_dir: &'a std::path::Path,
    /// The pool of a `pool` build, while it is imported.
    pub pool: Option<&'a crate::steps::PoolCx>,
}

/// Opens the tree at `dir` confined, so no path in it leads out; `what` ("image", "zone")
/// names it in the error.
pub(crate) fn open_root(dir: &std::path::Path, what: &str) -> Result<confine::Root, BuildError> {
    confine::Root::open(dir).map_err(|source| BuildError::OpenRoot {
        what: what.to_string(),
        dir: dir.to_path_buf(),
        source: Box::new(source),
    })
}

/// Runs `plan`'s steps on `place` with `opts`' settings.
pub(crate) fn run_steps_in(
    plan: &Plan,
    opts: &BuildOptions,
    env: &Env,
    place: &StepPlace,
    events: &mut dyn FnMut(&Event),
) -> Result<Vec<record::StepTiming>, BuildError> {
    run_steps_in_then(plan, opts, env, place, events, &mut |_, _| Ok(()))
}

/// [`run_steps_in`], calling `after` once each running step has finished.
pub(crate) fn run_steps_in_then(
    plan: &Plan,
    opts: &BuildOptions,
    env: &Env,
    place: &StepPlace,
    events: &mut dyn FnMut(&Event),
    after: &mut AfterStep,
) -> Result<Vec<record::StepTiming>, BuildError> {
    let mut cx = StepCx {
        host: env.host,
        runner: env.runner,
        zfs: env.zfs,
        root: place.root,
        template_root: &opts.template_root,
        group: &plan.group,
        external: &opts.external,
        output_dir: place.output_dir,
        tmp_dir: place.tmp_dir,
        svccfg: &opts.svccfg,
        smf: opts.smf,
        devfs: opts.devfs,
        source_date_epoch: opts.source_date_epoch,
        pool: place.pool,
        tag: String::new(),
    };
    run_steps_then(plan, &mut cx, events, after)
}

/// Called after each step that ran, with the step and the seconds it took.
pub(crate) type AfterStep<'h> =
    dyn FnMut(&crate::template::PlannedStep, f64) -> Result<(), BuildError> + 'h;

/// Runs `plan`'s steps with `cx`, calling `after` once each running step has finished.
pub(crate) fn run_steps_then(
    plan: &Plan,
    cx: &mut StepCx,
    events: &mut dyn FnMut(&Event),
    after: &mut AfterStep,
) -> Result<Vec<record::StepTiming>, BuildError> {
    let root = plan
        .file
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.to_path_buf());
    let mut timings = Vec::new();
    for s in &plan.steps {
        let file = root
            .as_deref()
            .and_then(|r| s.file.strip_prefix(r).ok())
            .unwrap_or(&s.file);
        let location = format!("{}:steps[{}]", file.display(), s.step_index);
        if let Some(why) = &s.skip {
            events(&Event::StepSkipped {
                index: s.index,
                t: s.t.clone(),
                reason: why.clone(),
            });
            timings.push(record::StepTiming {
                index: s.index,
                t: s.t.clone(),
                location,
                seconds: 0.0,
                skipped: true,
            });
            continue;
        }
        let Some(kind) = &s.kind else { continue };
        if runner::interrupt::requested() {
            return Err(BuildError::Interrupted);
        }
        events(&Event::StepStart {
            index: s.index,
            t: s.t.clone(),
            location: location.clone(),
        });
        cx.tag = format!("{}:{}", s.index, s.t);
        let start = Instant::now();
        kind.execute(cx).map_err(|source| {
            if runner::interrupt::requested() {
                BuildError::Interrupted
            } else {
                BuildError::Step {
                    index: s.index,
                    t: s.t.clone(),
                    location: location.clone(),
                    source: Box::new(source),
                }
            }
        })?;
        let seconds = start.elapsed().as_secs_f64();
        events(&Event::StepFinish {
            index: s.index,
            t: s.t.clone(),
            seconds,
        });
        timings.push(record::StepTiming {
            index: s.index,
            t: s.t.clone(),
            location,
            seconds,
            skipped: false,
        });
        after(s, seconds)?;
    }
    Ok(timings)
}

/// Undoes what crashed or killed builds under `dataset` left behind: every cleanup journal
/// whose build is no longer running. Returns what was undone.
pub fn clean(dataset: &str, sys: &device::System) -> Result<Vec<String>, BuildError> {
    let zfs = sys.zfs;
    let output = format!("{dataset}/output");
    if !zfs.exists(&output)? {
        return Ok(Vec::new());
    }
    let state = layout::state_dir(&layout::mountpoint(zfs, &output)?);
    let dir = state.join("journals");
    let mut done = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(done);
    };
    for e in entries.filter_map(Result::ok) {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".journal.json") else {
            continue;
        };
        // A running build holds its lock; its journal is not ours to unwind.
        let Ok(_lock) = lock::Lock::acquire(&state.join("locks"), &name.replace('%', "/")) else {
            continue;
        };
        let mut j = journal::Journal::open(&dir, name)?;
        let pending = j.pending();
        let failed = j.unwind(sys);
        if !failed.is_empty() {
            return Err(BuildError::Undo { failed });
        }
        done.extend(pending.into_iter().map(|u| u.to_string()));
    }
    Ok(done)
}

/// What `plan -d` reports for a stage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "cache", content = "detail", rename_all = "lowercase")]
pub enum CacheStatus {
    /// The output snapshot is current.
    Hit(String),
    /// The stage would run, and why.
    Miss(String),
}

/// What `plan -d` reports per step of a dataset stage that would run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepStatus {
    /// The checkpoint the build would resume from, and the last step it holds.
    pub resume_from: Option<(usize, String)>,
    /// The first step whose prefix key differs from the last build's, and why.
    pub first_change: Option<(usize, String)>,
}

/// Per-step cache status of a dataset stage; `None` for image targets.
pub fn step_status(
    plan: &Plan,
    opts: &BuildOptions,
    zfs: &dyn Zfs,
) -> Result<Option<StepStatus>, BuildError> {
    match &plan.target {
        Some(Target::Dataset(d)) => checkpoint::step_status(plan, d, opts, zfs).map(Some),
        _ => Ok(None),
    }
}

/// Whether building `plan` now would come from the cache. Pool, file system and ISO
/// images always build.
pub fn cache_status(
    plan: &Plan,
    opts: &BuildOptions,
    zfs: &dyn Zfs,
) -> Result<CacheStatus, BuildError> {
    match &plan.target {
        Some(Target::Dataset(d)) => dataset::cache_status(plan, d, opts, zfs),
        _ => Ok(CacheStatus::Miss("image targets always build".into())),
    }
}
