//! Builds whose product is an image file (`pool`, `pcfs`, `ufs`, `iso`). A work directory
//! `DATASET/output/.image-builder/work/GROUP-OUTPUT` holds the image file, the pool's
//! altroot and the mounted image root `a`; the finished image is renamed to
//! `DATASET/output/GROUP-OUTPUT.EXT` (the same file system: no copy) and the directory
//! removed. The reference makes a work dataset for this (`sync=disabled`); the directory
//! saves creating, finding and destroying it, three `zfs` processes per image.
//!
//! Everything temporary (the directory, the pool, the device, mounts) is written in the
//! cleanup journal before it exists, so a failure, SIGINT/SIGTERM or a crash leaves
//! nothing behind once the journal is unwound (at once, at the next start, or by
//! `image-builder clean`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::convert;
use super::error::BuildError;
use super::journal::{remove_tree, Journal, Undo};
use super::layout;
use super::record::StepTiming;
use super::target::{Target, TargetCx};
use super::{BuildOptions, Env, Event, Outcome};
use crate::host::{Host, Tool};
use crate::steps::PoolCx;
use crate::template::model::{Iso, Pcfs, Pool, Ufs};
use crate::template::{Plan, StepKind};

/// The target of an image-file build.
#[derive(Clone, Copy)]
pub enum Kind<'a> {
    Pool(&'a Pool),
    Pcfs(&'a Pcfs),
    Ufs(&'a Ufs),
    Iso(&'a Iso),
}

impl Kind<'_> {
    pub fn key(&self) -> &'static str {
        match self {
            Kind::Pool(_) => "pool",
            Kind::Pcfs(_) => "pcfs",
            Kind::Ufs(_) => "ufs",
            Kind::Iso(_) => "iso",
        }
    }

    /// Host tools the target itself needs (beyond what its steps need).
    fn needs(&self, host: Host) -> Vec<Tool> {
        match (self, host) {
            (Kind::Pool(_), Host::Illumos) => vec![Tool::Zpool, Tool::Lofiadm],
            (Kind::Pool(_), Host::Linux) => vec![Tool::Zpool, Tool::Losetup],
            (Kind::Pcfs(_), Host::Illumos) => vec![Tool::Lofiadm, Tool::Mkfs, Tool::Mount],
            (Kind::Pcfs(_), Host::Linux) => vec![Tool::MkfsVfat, Tool::Mcopy, Tool::Mmd],
            (Kind::Ufs(_), _) => vec![Tool::Lofiadm, Tool::Newfs, Tool::Mount],
            (Kind::Iso(_), Host::Illumos) => vec![Tool::Mkisofs],
            (Kind::Iso(_), Host::Linux) => vec![Tool::Xorriso],
        }
    }
}

/// What one image-file build is working with.
pub(super) struct Work<'a, 'e> {
    pub plan: &'a Plan,
    pub opts: &'a BuildOptions,
    pub env: &'a Env<'e>,
    pub journal: &'a mut Journal,
    pub events: &'a mut dyn FnMut(&Event),
    /// The work dataset's directory: image file, altroot, image root.
    pub work_dir: PathBuf,
    pub tmp_dir: PathBuf,
    pub output_dir: PathBuf,
    pub output_name: String,
    pub timings: Vec<StepTiming>,
}

impl Work<'_, '_> {
    pub fn system(&self) -> super::device::System<'_> {
        self.env.system()
    }

    /// `GROUP-OUTPUT`, the stem of every output file.
    pub fn stem(&self) -> String {
        stem(self.plan, &self.output_name)
    }

    /// Runs the template's steps against the tree at `root_dir`. The root is opened again
    /// after every `create_be`, which mounts the boot environment over the directory.
    pub fn run_steps(&mut self, root_dir: &Path, pool: Option<&PoolCx>) -> Result<(), BuildError> {
        let mut rest = self.plan.steps.as_slice();
        while !rest.is_empty() {
            let cut = rest
                .iter()
                .position(|s| s.skip.is_none() && matches!(s.kind, Some(StepKind::CreateBe(_))))
                .map_or(rest.len(), |i| i + 1);
            let mut part = self.plan.clone();
            part.steps = rest[..cut].to_vec();
            rest = &rest[cut..];
            let root = super::open_root(root_dir, "image")?;
            let place = super::StepPlace {
                root: &root,
                output_dir: &self.output_dir,
                tmp_dir: &self.tmp_dir,
                pool,
            };
            let t = super::run_steps_in(&part, self.opts, self.env, &place, self.events)?;
            self.timings.extend(t);
        }
        Ok(())
    }
}

impl Target for Kind<'_> {
    fn key(&self) -> &'static str {
        Kind::key(self)
    }

    /// The work area (its lock and journal; a directory, not a dataset) is named after the
    /// output.
    fn work_name<'a>(&'a self, output_name: &'a str) -> &'a str {
        output_name
    }

    fn check(&mut self, env: &Env, opts: &BuildOptions) -> Result<(), BuildError> {
        if let (Kind::Ufs(_), Host::Linux) = (*self, env.host) {
            return Err(BuildError::Preflight(
                "ufs images are made with illumos newfs and lofi and need an illumos host; \
                 use a pcfs or pool target on Linux"
                    .into(),
            ));
        }
        let missing: Vec<String> = self
            .needs(env.host)
            .into_iter()
            .filter(|t| !env.host.has(*t) && !opts.assume_tools)
            .map(|t| env.host.tool(t).to_string())
            .collect();
        if !missing.is_empty() {
            return Err(BuildError::Preflight(format!(
                "{} images need {}, which this {} host does not have",
                Kind::key(self),
                missing.join(", "),
                env.host.name()
            )));
        }
        Ok(())
    }

    fn run(&mut self, cx: &mut TargetCx) -> Result<Outcome, BuildError> {
        // With --store, an image with this build's key is fetched rather than built.
        if let Some(store) = &cx.opts.store {
            let key = super::image_store::key(cx.plan, cx.opts, cx.output_name, cx.output_dir)?;
            cx.rec.key = Some(key.clone());
            if let Some(files) = super::image_store::fetch(store, &key, cx.output_dir, cx.events)? {
                cx.rec.cache = "store".into();
                cx.rec.outputs = files;
                return Ok(Outcome::Cached);
            }
        }
        run(cx, *self)?;
        Ok(Outcome::Built)
    }
}

/// `GROUP-OUTPUT`: the stem of an image build's output files and its work directory.
fn stem(plan: &Plan, output_name: &str) -> String {
    format!("{}-{output_name}", plan.group)
}

fn run(cx: &mut TargetCx, kind: Kind) -> Result<(), BuildError> {
    let (plan, opts, env, output_dir, output_name) =
        (cx.plan, cx.opts, cx.env, cx.output_dir, cx.output_name);
    let journal = &mut *cx.journal;
    let events = &mut *cx.events;
    let work_dir = layout::state_dir(output_dir)
        .join("work")
        .join(stem(plan, output_name));
    // An image build never reuses its work directory; a crash can only leave garbage in
    // it, and one left over is removed first.
    let work_mark = journal.push(Undo::RemoveTree {
        path: work_dir.clone(),
    })?;
    remove_tree(&work_dir)?;
    // Scratch space inside it, removed with it: the reference makes a dataset
    // DATASET/tmp/GROUP/OUTPUT for it too, two zfs commands more per build.
    let tmp_dir = work_dir.join("scratch");
    std::fs::create_dir_all(&tmp_dir).map_err(|e| BuildError::io(&tmp_dir, e))?;
    let mut w = Work {
        plan,
        opts,
        env,
        journal,
        events,
        work_dir,
        tmp_dir,
        output_dir: output_dir.to_path_buf(),
        output_name: output_name.to_string(),
        timings: Vec::new(),
    };
    let products = match kind {
        Kind::Pool(p) => super::pool::build(&mut w, p)?,
        Kind::Pcfs(p) => super::fs::build_pcfs(&mut w, p)?,
        Kind::Ufs(u) => super::fs::build_ufs(&mut w, u)?,
        Kind::Iso(i) => super::iso::build(&mut w, i)?,
    };
    let mut outputs = Vec::new();
    let mut sums = Vec::new();
    for (src, name) in &products {
        if runner::interrupt::requested() {
            return Err(BuildError::Interrupted);
        }
        let dst = output_dir.join(name);
        tracing::info!("moving {} to {}", src.display(), dst.display());
        let t = Instant::now();
        // With the checksum for SHA256SUMS.
        sums.push((name.clone(), convert::move_hashed(src, &dst)?));
        tracing::debug!(
            "moved and hashed {name} in {:.3} s",
            t.elapsed().as_secs_f64()
        );
        outputs.push(name.clone());
        if name.ends_with(".raw") {
            for f in &opts.formats {
                let out = dst.with_extension(f.extension());
                convert::convert(env.system().runner, env.host, &dst, *f, &out)?;
                outputs.push(out.file_name().unwrap_or_default().to_string_lossy().into());
            }
        }
    }
    super::record::remember_sums(output_dir, &layout::state_dir(output_dir), &sums)?;
    let timings = std::mem::take(&mut w.timings);
    let (journal, work_dir) = (w.journal, w.work_dir);
    remove_tree(&work_dir)?;
    journal.done(work_mark)?;
    cx.rec.cache = "none".into();
    cx.rec.steps = timings;
    cx.rec.outputs = outputs;
    Ok(())
}
