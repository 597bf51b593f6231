//! Build matrices: several templates built with a job limit. Stages that share a work
//! dataset form one chain, built in order by one worker (they roll the same dataset back
//! and forth, so they can never run at once); a stage listed twice is built once; chains
//! on different work datasets run in parallel. A build that reads an archive another
//! build of the matrix packs (`unpack_tar` of a `pack_tar`) waits until that build is done.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use zfs::{CreateOptions, Zfs};

use crate::build::{self, BuildOptions, Env, Event, Outcome};
use crate::host::Host;
use crate::template::{Plan, StepKind, Target};

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

    /// Files of the output directory this build reads: archives it unpacks, `ensure_file`
    /// `outputsrc`, `gzip` and `digest` sources.
    pub fn reads(&self) -> Vec<String> {
        self.steps()
            .filter_map(|k| match k {
                StepKind::UnpackTar(u) => Some(u.name.clone()),
                StepKind::EnsureFile(f) => f.outputsrc.clone(),
                StepKind::Gzip(g) => Some(g.src.clone()),
                StepKind::Digest(d) => Some(d.src.clone()),
                _ => None,
            })
            .collect()
    }

    /// Archives this build packs into the output directory.
    pub fn writes(&self) -> Vec<String> {
        self.steps()
            .filter_map(|k| match k {
                StepKind::PackTar(p) => Some(p.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// The steps that run.
    fn steps(&self) -> impl Iterator<Item = &StepKind> {
        self.plan
            .steps
            .iter()
            .filter(|s| s.skip.is_none())
            .filter_map(|s| s.kind.as_ref())
    }

    /// The work dataset (relative to the root), or a key of its own for other targets.
    pub fn chain_key(&self) -> String {
        match self.dataset() {
            Some(d) => format!("work/{}/{}", self.plan.group, d.name),
            None => format!("job/{}", self.entry.id()),
        }
    }
}

/// Jobs grouped into chains: duplicates dropped, each chain ordered so a stage comes after
/// the stage producing its input snapshot; chains in order of first appearance.
pub fn schedule(jobs: Vec<Job>) -> Result<Vec<Vec<Job>>, MatrixError> {
    let mut seen = std::collections::HashSet::new();
    let mut chains: Vec<(String, Vec<Job>)> = Vec::new();
    for j in jobs {
        if !seen.insert(j.entry.id()) {
            continue;
        }
        let key = j.chain_key();
        match chains.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => c.push(j),
            None => chains.push((key, vec![j])),
        }
    }
    let chains = chains
        .into_iter()
        .map(|(key, mut rest)| {
            let mut ordered = Vec::new();
            while !rest.is_empty() {
                // First (in listed order) stage whose input no remaining stage produces.
                let ready = rest.iter().position(|j| {
                    let input = j.dataset().and_then(|d| d.input_snapshot.clone());
                    input.is_none_or(|i| {
                        !rest.iter().any(|o| {
                            o.dataset().and_then(|d| d.output_snapshot.as_deref()) == Some(&i)
                        })
                    })
                });
                match ready {
                    Some(i) => ordered.push(rest.remove(i)),
                    None => return Err(MatrixError::Cycle(key)),
                }
            }
            Ok(ordered)
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_file_order(&chains)?;
    Ok(chains)
}

/// Refuses chains that can never finish: a build waiting for an archive packed by a build
/// that comes after it (in its own chain, or through other waits). Kahn's algorithm over
/// the builds, with an edge from each build to the next of its chain and from each packer
/// to each reader of its archive.
fn check_file_order(chains: &[Vec<Job>]) -> Result<(), MatrixError> {
    let jobs: Vec<&Job> = chains.iter().flatten().collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
    let mut n = 0;
    for c in chains {
        for i in 1..c.len() {
            edges[n + i - 1].push(n + i);
        }
        n += c.len();
    }
    for (w, writer) in jobs.iter().enumerate() {
        let writes = writer.writes();
        for (r, reader) in jobs.iter().enumerate() {
            if r != w && reader.reads().iter().any(|f| writes.contains(f)) {
                edges[w].push(r);
            }
        }
    }
    let mut incoming = vec![0usize; jobs.len()];
    for e in edges.iter().flatten() {
        incoming[*e] += 1;
    }
    let mut ready: Vec<usize> = (0..jobs.len()).filter(|i| incoming[*i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = ready.pop() {
        seen += 1;
        for &e in &edges[i] {
            incoming[e] -= 1;
            if incoming[e] == 0 {
                ready.push(e);
            }
        }
    }
    if seen == jobs.len() {
        return Ok(());
    }
    let stuck: Vec<String> = (0..jobs.len())
        .filter(|i| incoming[*i] > 0)
        .map(|i| jobs[i].entry.id())
        .collect();
    Err(MatrixError::FileCycle(stuck.join(", ")))
}

/// The archives the matrix's own builds pack, and how far their packers are.
#[derive(Debug, Default)]
struct Archives {
    /// Per archive, how many of the builds packing it have not finished.
    left: HashMap<String, usize>,
    /// Archives a build that should pack them failed or skipped.
    failed: HashSet<String>,
}

/// Whether a build can start, as far as the archives it reads go.
#[derive(Debug, PartialEq, Eq)]
enum Inputs {
    Ready,
    Wait,
    /// This archive's packer failed: the build is skipped.
    Missing(String),
}

impl Archives {
    fn new<'a>(jobs: impl Iterator<Item = &'a Job>) -> Archives {
        let mut a = Archives::default();
        for j in jobs {
            for w in j.writes() {
                *a.left.entry(w).or_default() += 1;
            }
        }
        a
    }

    fn inputs(&self, job: &Job) -> Inputs {
        let own = job.writes();
        let reads: Vec<String> = job
            .reads()
            .into_iter()
            .filter(|r| !own.contains(r))
            .collect();
        if reads
            .iter()
            .any(|r| self.left.get(r).is_some_and(|n| *n > 0))
        {
            return Inputs::Wait;
        }
        match reads.into_iter().find(|r| self.failed.contains(r)) {
            Some(r) => Inputs::Missing(r),
            None => Inputs::Ready,
        }
    }

    fn finished(&mut self, job: &Job, ok: bool) {
        for w in job.writes() {
            if let Some(n) = self.left.get_mut(&w) {
                *n = n.saturating_sub(1);
            }
            if !ok {
                self.failed.insert(w);
            }
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
mod tests {
    use super::*;
    use crate::template::{plan, Features, PlanOptions};

    fn jobs(dir: &Path, names: &[&str]) -> Vec<Job> {
        names
            .iter()
            .map(|n| Job {
                entry: Entry {
                    group: "g".into(),
                    name: n.to_string(),
                    features: Vec::new(),
                    output_name: None,
                    test: false,
                },
                plan: plan(dir, "g", n, &Features::default(), &PlanOptions::default()),
            })
            .collect()
    }

    #[test]
    fn chains_group_by_work_dataset_in_snapshot_order_and_drop_duplicates() {
        let t = tempfile::tempdir().unwrap();
        let g = t.path().join("g");
        std::fs::create_dir_all(&g).unwrap();
        let stage = |name: &str, ds: &str, input: Option<&str>, output: Option<&str>| {
            let mut d = format!(r#""name":"{ds}""#);
            if let Some(i) = input {
                d.push_str(&format!(r#","input_snapshot":"{i}""#));
            }
            if let Some(o) = output {
                d.push_str(&format!(r#","output_snapshot":"{o}""#));
            }
            std::fs::write(
                g.join(format!("{name}.json")),
                format!(r#"{{"dataset":{{{d}}},"steps":[]}}"#),
            )
            .unwrap();
        };
        stage("base", "w", None, Some("base"));
        stage("a", "w", Some("base"), Some("a"));
        stage("b", "w", Some("base"), None);
        stage("a2", "w", Some("a"), None);
        stage("other", "v", None, None);
        let listed = jobs(t.path(), &["a2", "a", "other", "b", "base", "a"]);
        for j in &listed {
            assert!(j.plan.is_valid(), "{:?}", j.plan.problems);
        }
        let chains = schedule(listed).unwrap();
        let names: Vec<Vec<&str>> = chains
            .iter()
            .map(|c| c.iter().map(|j| j.plan.name.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["base", "a", "a2", "b"], vec!["other"]]);
        stage("x", "c", Some("y"), Some("x"));
        stage("y", "c", Some("x"), Some("y"));
        assert!(matches!(
            schedule(jobs(t.path(), &["x", "y"])),
            Err(MatrixError::Cycle(_))
        ));
    }

    #[test]
    fn readers_of_an_archive_wait_for_its_packer_and_cycles_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let g = t.path().join("g");
        std::fs::create_dir_all(&g).unwrap();
        let write =
            |name: &str, text: &str| std::fs::write(g.join(format!("{name}.json")), text).unwrap();
        write(
            "base",
            r#"{"dataset":{"name":"w","output_snapshot":"one"},"steps":[]}"#,
        );
        write(
            "a",
            r#"{"dataset":{"name":"w","input_snapshot":"one"},"steps":[{"t":"pack_tar","name":"a.tar"}]}"#,
        );
        write(
            "img",
            r#"{"dataset":{"name":"i"},"steps":[{"t":"unpack_tar","name":"a.tar"},
                {"t":"ensure_file","file":"/x","outputsrc":"notes.txt","owner":"root","group":"root","mode":"644"},
                {"t":"pack_tar","name":"img.tar","with":"never"}]}"#,
        );
        let listed = jobs(t.path(), &["img", "a", "base"]);
        for j in &listed {
            assert!(j.plan.is_valid(), "{:?}", j.plan.problems);
        }
        let chains = schedule(listed).unwrap();
        let img = &chains[0][0];
        assert_eq!(img.reads(), ["a.tar", "notes.txt"]);
        assert!(img.writes().is_empty(), "a skipped step writes nothing");
        let (base, a) = (&chains[1][0], &chains[1][1]);
        assert_eq!(a.writes(), ["a.tar"]);

        let mut arch = Archives::new(chains.iter().flatten());
        assert_eq!(arch.inputs(img), Inputs::Wait);
        assert_eq!(arch.inputs(base), Inputs::Ready);
        arch.finished(a, true);
        assert_eq!(arch.inputs(img), Inputs::Ready, "notes.txt is no build's");
        let mut arch = Archives::new(chains.iter().flatten());
        arch.finished(a, false);
        assert_eq!(arch.inputs(img), Inputs::Missing("a.tar".into()));

        // A stage reading what a later stage of its own chain packs can never start.
        write(
            "early",
            r#"{"dataset":{"name":"v","output_snapshot":"e"},"steps":[{"t":"unpack_tar","name":"late.tar"}]}"#,
        );
        write(
            "late",
            r#"{"dataset":{"name":"v","input_snapshot":"e"},"steps":[{"t":"pack_tar","name":"late.tar"}]}"#,
        );
        let e = schedule(jobs(t.path(), &["late", "early"])).unwrap_err();
        assert!(
            matches!(&e, MatrixError::FileCycle(s) if s == "g/early, g/late"),
            "{e}"
        );
    }

    #[test]
    fn log_names_never_clash() {
        let e = |n: &str, o: Option<&str>, f: &[&str]| Entry {
            group: "g".into(),
            name: n.into(),
            features: f.iter().map(|s| s.to_string()).collect(),
            output_name: o.map(Into::into),
            test: false,
        };
        let names = [
            log_name(&e("a", None, &[])),
            log_name(&e("a", Some("b"), &[])),
            log_name(&e("a", None, &["x"])),
            log_name(&e("a", None, &["y"])),
        ];
        let set: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(set.len(), names.len(), "{names:?}");
    }
}
