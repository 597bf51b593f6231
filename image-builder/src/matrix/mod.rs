//! Build matrices: several templates built with a job limit. Stages that share a work
//! dataset form one chain, built in order by one worker (they roll the same dataset back
//! and forth, so they can never run at once); a stage listed twice is built once; chains
//! on different work datasets run in parallel. A build that reads a file another build of
//! the matrix writes (an archive it packs, an image target's file) waits until that build
//! is done.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use zfs::{CreateOptions, Zfs};

use crate::build::layout::ImageFile;
use crate::build::{self, BuildOptions, Env, Event, Outcome};
use crate::host::Host;
use crate::template::{Plan, Target};

pub mod emit;
mod schedule;

pub use schedule::schedule;
use schedule::{Archives, Inputs};

/// A matrix file: the builds, in the order they are listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    pub builds: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub group: String,
    pub name: String,
    /// Feature directives for this build, after the command line's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_name: Option<String>,
    /// Boot-test this build's outputs afterwards.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

impl Entry {
    /// What names this build: equal ids are the same build.
    pub fn id(&self) -> String {
        let mut id = format!("{}/{}", self.group, self.name);
        if let Some(o) = &self.output_name {
            id.push_str(&format!(" as {o}"));
        }
        if !self.features.is_empty() {
            id.push_str(&format!(" [{}]", self.features.join(" ")));
        }
        id
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("cannot read matrix {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("matrix {}: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    #[error("the stages on work dataset {0} form a cycle of input and output snapshots")]
    Cycle(String),
    #[error("builds {0} wait for each other's archives (or for a later stage on their own work dataset)")]
    FileCycle(String),
    #[error(transparent)]
    Build(Box<build::BuildError>),
    #[error(transparent)]
    Zfs(#[from] zfs::ZfsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<build::BuildError> for MatrixError {
    fn from(e: build::BuildError) -> Self {
        MatrixError::Build(Box::new(e))
    }
}

impl Matrix {
    pub fn load(path: &Path) -> Result<Matrix, MatrixError> {
        let text = std::fs::read_to_string(path).map_err(|source| MatrixError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| MatrixError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// One planned build of the matrix.
#[derive(Debug, Clone)]
pub struct Job {
    pub entry: Entry,
    pub plan: Plan,
}

impl Job {
    fn dataset(&self) -> Option<&crate::template::model::Dataset> {
        match &self.plan.target {
            Some(Target::Dataset(d)) => Some(d),
            _ => None,
        }
    }

    /// Files of the output directory this build reads ([`Plan::reads`]).
    pub fn reads(&self) -> Vec<String> {
        self.plan.reads()
    }

    /// Files this build writes to the output directory that others may read: the
    /// archives it packs and the image files of an image target.
    pub fn writes(&self) -> Vec<String> {
        let stem = format!(
            "{}-{}",
            self.plan.group,
            self.entry.output_name.as_deref().unwrap_or(&self.plan.name)
        );
        let images = self
            .plan
            .target
            .iter()
            .flat_map(ImageFile::of)
            .map(|f| f.name(&stem));
        self.plan.packs().into_iter().chain(images).collect()
    }

    /// The work dataset (relative to the root), or a key of its own for other targets.
    pub fn chain_key(&self) -> String {
        match self.dataset() {
            Some(d) => format!("work/{}/{}", self.plan.group, d.name),
            None => format!("job/{}", self.entry.id()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildResult {
    Built,
    Cached,
    Failed,
    /// Not run: its input stage failed, or the run was interrupted.
    Skipped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildReport {
    pub build: String,
    pub work: String,
    pub result: BuildResult,
    /// When the build started, in seconds after the matrix started.
    pub started: f64,
    pub seconds: f64,
    /// Output files, as full paths.
    pub outputs: Vec<PathBuf>,
    pub log: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub test: bool,
}

/// Where and how the matrix builds.
pub struct MatrixEnv<'a> {
    pub host: Host,
    pub runner: &'a dyn runner::Runner,
    /// Each worker gets its own ZFS handle.
    pub zfs: &'a (dyn Fn() -> Box<dyn Zfs> + Sync),
    pub opts: &'a BuildOptions,
    pub log_dir: &'a Path,
    /// When the matrix started, for [`BuildReport::started`].
    pub epoch: Instant,
}

/// A chain being built: what is left of it and what it has built.
struct Slot {
    index: usize,
    jobs: VecDeque<Job>,
    reports: Vec<BuildReport>,
    /// Output snapshots of this chain that were not built.
    failed_snapshots: Vec<String>,
}

struct Board {
    /// Chains with builds left and no worker, in matrix order.
    waiting: Vec<Slot>,
    running: usize,
    archives: Archives,
    done: Vec<(usize, Vec<BuildReport>)>,
}

/// Builds every chain with at most `jobs` running at once; returns one report per build
/// in chain order. A worker takes the first chain whose next build has its archives, builds
/// that one build and puts the chain back, so a chain waiting for another's archive never
/// holds a worker.
pub fn run(
    chains: Vec<Vec<Job>>,
    jobs: usize,
    env: &MatrixEnv<'_>,
) -> Result<Vec<BuildReport>, MatrixError> {
    std::fs::create_dir_all(env.log_dir).map_err(|source| MatrixError::Io {
        what: format!("cannot create {}", env.log_dir.display()),
        source,
    })?;
    prepare(&*(env.zfs)(), &env.opts.dataset, &chains)?;
    let board = Mutex::new(Board {
        archives: Archives::new(chains.iter().flatten()),
        waiting: chains
            .into_iter()
            .enumerate()
            .map(|(index, c)| Slot {
                index,
                jobs: c.into(),
                reports: Vec::new(),
                failed_snapshots: Vec::new(),
            })
            .collect(),
        running: 0,
        done: Vec::new(),
    });
    let changed = Condvar::new();
    let lock = || board.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                let zfs = (env.zfs)();
                loop {
                    let mut b = lock();
                    let (mut slot, job, inputs) = loop {
                        if b.waiting.is_empty() {
                            return;
                        }
                        let pick = b.waiting.iter().position(|w| {
                            w.jobs
                                .front()
                                .is_some_and(|j| b.archives.inputs(j) != Inputs::Wait)
                        });
                        if let Some(i) = pick {
                            let mut slot = b.waiting.remove(i);
                            let Some(job) = slot.jobs.pop_front() else {
                                b.done.push((slot.index, slot.reports));
                                continue;
                            };
                            let inputs = b.archives.inputs(&job);
                            b.running += 1;
                            break (slot, job, inputs);
                        }
                        if b.running == 0 {
                            // Unreachable after check_file_order; never wait forever.
                            for mut w in std::mem::take(&mut b.waiting) {
                                for j in std::mem::take(&mut w.jobs) {
                                    let mut r = report_for(&j, env);
                                    r.error = Some("its archives can never be built".into());
                                    w.reports.push(r);
                                }
                                b.done.push((w.index, w.reports));
                            }
                            changed.notify_all();
                            return;
                        }
                        b = changed.wait(b).unwrap_or_else(|e| e.into_inner());
                    };
                    drop(b);
                    let missing = match inputs {
                        Inputs::Missing(f) => Some(f),
                        _ => None,
                    };
                    let r = run_job(&job, env, &*zfs, &mut slot.failed_snapshots, missing);
                    let ok = matches!(r.result, BuildResult::Built | BuildResult::Cached);
                    slot.reports.push(r);
                    let mut b = lock();
                    b.archives.finished(&job, ok);
                    b.running -= 1;
                    if slot.jobs.is_empty() {
                        b.done.push((slot.index, slot.reports));
                    } else {
                        let at = b
                            .waiting
                            .iter()
                            .position(|w| w.index > slot.index)
                            .unwrap_or(b.waiting.len());
                        b.waiting.insert(at, slot);
                    }
                    changed.notify_all();
                }
            });
        }
    });
    let mut done = board.into_inner().unwrap_or_else(|e| e.into_inner()).done;
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().flat_map(|(_, r)| r).collect())
}

/// Creates the shared parents up front: two builds creating them at once would race.
fn prepare(zfs: &dyn Zfs, root: &str, chains: &[Vec<Job>]) -> Result<(), MatrixError> {
    let mut parents = vec![format!("{root}/output")];
    for j in chains.iter().flatten() {
        if j.dataset().is_some() {
            parents.push(format!("{root}/work/{}", j.plan.group));
        }
        parents.push(format!("{root}/tmp/{}", j.plan.group));
    }
    parents.dedup();
    if !zfs.exists(root)? {
        return Ok(()); // the build reports the missing root with its own advice
    }
    for p in parents {
        if !zfs.exists(&p)? {
            zfs.create(&p, &CreateOptions::new().parents())?;
        }
    }
    Ok(())
}

fn log_name(e: &Entry) -> String {
    let mut n = format!(
        "{}-{}",
        e.group,
        e.output_name.as_deref().unwrap_or(&e.name)
    );
    if !e.features.is_empty() {
        n.push_str(&format!(
            "-{:08x}",
            crc32fast::hash(e.features.join("\n").as_bytes())
        ));
    }
    n.replace('/', "_") + ".log"
}

/// The report of `j` before it runs: skipped, until it does.
fn report_for(j: &Job, env: &MatrixEnv<'_>) -> BuildReport {
    BuildReport {
        build: j.entry.id(),
        work: j.chain_key(),
        result: BuildResult::Skipped,
        started: env.epoch.elapsed().as_secs_f64(),
        seconds: 0.0,
        outputs: Vec::new(),
        log: env.log_dir.join(log_name(&j.entry)),
        error: None,
        test: j.entry.test,
    }
}

/// Builds one job of a chain; `failed_snapshots` are the chain's output snapshots not
/// built so far, `missing` an archive whose packer failed.
fn run_job(
    j: &Job,
    env: &MatrixEnv<'_>,
    zfs: &dyn Zfs,
    failed_snapshots: &mut Vec<String>,
    missing: Option<String>,
) -> BuildReport {
    let mut r = report_for(j, env);
    let output = j.dataset().and_then(|d| d.output_snapshot.clone());
    let input = j.dataset().and_then(|d| d.input_snapshot.clone());
    if let Some(i) = input.filter(|i| failed_snapshots.contains(i)) {
        r.error = Some(format!("its input snapshot @{i} was not built"));
        failed_snapshots.extend(output);
        return r;
    }
    if let Some(f) = missing {
        r.error = Some(format!("its input archive {f} was not built"));
        failed_snapshots.extend(output);
        return r;
    }
    if runner::interrupt::requested() {
        r.error = Some("interrupted".into());
        return r;
    }
    let start = Instant::now();
    let opts = BuildOptions {
        output_name: j.entry.output_name.clone(),
        ..env.opts.clone()
    };
    let mut file = std::fs::File::create(&r.log).ok();
    let mut outputs = Vec::new();
    let benv = Env {
        host: env.host,
        runner: env.runner,
        zfs,
    };
    tracing::info!("matrix: building {}", r.build);
    let res = build::build(&j.plan, &opts, &benv, &mut |e: &Event| {
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "{}", serde_json::to_string(e).unwrap_or_default());
        }
        if let Event::Finish { outputs: o, .. } = e {
            outputs = o.clone();
        }
    });
    r.seconds = start.elapsed().as_secs_f64();
    match res {
        Ok(o) => {
            r.result = if o == Outcome::Cached {
                BuildResult::Cached
            } else {
                BuildResult::Built
            };
            let dir = build::layout::mountpoint(zfs, &format!("{}/output", opts.dataset));
            if let Ok(dir) = dir {
                r.outputs = outputs.iter().map(|o| dir.join(o)).collect();
            }
        }
        Err(e) => {
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "error: {e}");
            }
            r.result = BuildResult::Failed;
            r.error = Some(e.to_string());
            failed_snapshots.extend(output);
        }
    }
    tracing::info!("matrix: {}: {:?}", r.build, r.result);
    r
}

#[cfg(test)]
mod tests;
