//! Build matrices: several templates built with a job limit. Stages that share a work
//! dataset form one chain, built in order by one worker (they roll the same dataset back
//! and forth, so they can never run at once); a stage listed twice is built once; chains
//! on different work datasets run in parallel.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use zfs::{CreateOptions, Zfs};

use crate::build::{self, BuildOptions, Env, Event, Outcome};
use crate::host::Host;
use crate::template::{Plan, Target};

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
    chains
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
        .collect()
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

/// Builds every chain with at most `jobs` running at once; returns one report per build
/// in chain order.
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
    let queue: Mutex<VecDeque<(usize, Vec<Job>)>> =
        Mutex::new(chains.into_iter().enumerate().collect());
    let done: Mutex<Vec<(usize, Vec<BuildReport>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some((i, chain)) = next else { return };
                let zfs = (env.zfs)();
                let r = run_chain(chain, env, &*zfs);
                done.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
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

fn run_chain(chain: Vec<Job>, env: &MatrixEnv<'_>, zfs: &dyn Zfs) -> Vec<BuildReport> {
    let mut failed_outputs: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for j in chain {
        let log = env.log_dir.join(log_name(&j.entry));
        let mut r = BuildReport {
            build: j.entry.id(),
            work: j.chain_key(),
            result: BuildResult::Skipped,
            started: env.epoch.elapsed().as_secs_f64(),
            seconds: 0.0,
            outputs: Vec::new(),
            log: log.clone(),
            error: None,
            test: j.entry.test,
        };
        let input = j.dataset().and_then(|d| d.input_snapshot.clone());
        if let Some(i) = input.filter(|i| failed_outputs.contains(i)) {
            r.error = Some(format!("its input snapshot @{i} was not built"));
            failed_outputs.extend(j.dataset().and_then(|d| d.output_snapshot.clone()));
            out.push(r);
            continue;
        }
        if runner::interrupt::requested() {
            r.error = Some("interrupted".into());
            out.push(r);
            continue;
        }
        let start = Instant::now();
        let opts = BuildOptions {
            output_name: j.entry.output_name.clone(),
            ..env.opts.clone()
        };
        let mut file = std::fs::File::create(&log).ok();
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
                failed_outputs.extend(j.dataset().and_then(|d| d.output_snapshot.clone()));
            }
        }
        tracing::info!("matrix: {}: {:?}", r.build, r.result);
        out.push(r);
    }
    out
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
