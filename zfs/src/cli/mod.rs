//! [`Zfs`] over the `zfs` and `zpool` commands.

mod dataset;
mod pool;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use runner::{Cmd, Output, RunError, Runner};

use crate::error::{Result, ZfsError};
use crate::options::{CreateOptions, Health, PoolCreate, PoolImport};
use crate::Zfs;

/// Where the `zfs` and `zpool` programs are; the host layer decides per platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZfsTools {
    pub zfs: PathBuf,
    pub zpool: PathBuf,
}

impl ZfsTools {
    pub fn new(zfs: impl Into<PathBuf>, zpool: impl Into<PathBuf>) -> Self {
        ZfsTools {
            zfs: zfs.into(),
            zpool: zpool.into(),
        }
    }

    /// Both programs in one directory, e.g. `/usr/sbin` (illumos and Debian alike).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        ZfsTools {
            zfs: dir.join("zfs"),
            zpool: dir.join("zpool"),
        }
    }
}

/// How long `pool_export` keeps trying while the pool is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportRetry {
    pub attempts: u32,
    pub delay: Duration,
}

impl Default for ExportRetry {
    fn default() -> Self {
        ExportRetry {
            attempts: 10,
            delay: Duration::from_millis(500),
        }
    }
}

/// [`Zfs`] implemented by running `zfs` and `zpool`.
#[derive(Debug, Clone)]
pub struct ZfsCli<R> {
    runner: R,
    tools: ZfsTools,
    export_retry: ExportRetry,
    timeout: Option<Duration>,
}

impl<R: Runner> ZfsCli<R> {
    pub fn new(runner: R, tools: ZfsTools) -> Self {
        ZfsCli {
            runner,
            tools,
            export_retry: ExportRetry::default(),
            timeout: None,
        }
    }

    /// A time limit for every command that does not set its own: a pool whose device went
    /// away can make `zfs` and `zpool` block forever.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub fn with_export_retry(mut self, retry: ExportRetry) -> Self {
        self.export_retry = retry;
        self
    }

    pub fn tools(&self) -> &ZfsTools {
        &self.tools
    }

    fn zfs(&self) -> Cmd {
        Cmd::new(&self.tools.zfs)
    }

    fn zpool(&self) -> Cmd {
        Cmd::new(&self.tools.zpool)
    }

    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        self.runner.run(&self.limited(cmd))
    }

    /// Like `run`, but a failed command is an output, not an error.
    fn output(&self, cmd: &Cmd) -> Result<Output, RunError> {
        self.runner.output(&self.limited(cmd))
    }

    /// `cmd` with the handle's time limit unless it has its own.
    fn limited(&self, cmd: &Cmd) -> Cmd {
        match self.timeout {
            Some(t) if cmd.get_timeout().is_none() => cmd.clone().timeout(t),
            _ => cmd.clone(),
        }
    }

    /// Standard output split into lines, for commands run with `-H`.
    fn lines(&self, cmd: &Cmd) -> Result<Vec<String>, RunError> {
        Ok(split_lines(&self.run(cmd)?))
    }

    /// Turns a failure of a command acting on `name` into [`ZfsError::NotFound`] when its
    /// error message or a query shows `name` does not exist; otherwise keeps the
    /// command's own error.
    fn missing_or(&self, name: &str, err: RunError) -> ZfsError {
        if let RunError::Failed { stderr_tail, .. } = &err {
            if says_missing(stderr_tail, name) {
                return ZfsError::NotFound {
                    name: name.to_string(),
                };
            }
        }
        match (&err, self.exists(name)) {
            (RunError::Failed { .. }, Ok(false)) => ZfsError::NotFound {
                name: name.to_string(),
            },
            _ => ZfsError::Run(err),
        }
    }

    /// The same for commands acting on a pool.
    fn missing_pool_or(&self, pool: &str, err: RunError) -> ZfsError {
        match (&err, self.pools()) {
            (RunError::Failed { .. }, Ok(pools)) if !pools.iter().any(|p| p == pool) => {
                ZfsError::NotFound {
                    name: pool.to_string(),
                }
            }
            _ => ZfsError::Run(err),
        }
    }
}

/// Whether a failed `zfs` command's standard error says `name` does not exist. libzfs
/// prints "ACTION: DESCRIPTION" (illumos-gate usr/src/lib/libzfs/common/libzfs_util.c,
/// zfs_verror); `zfs_open` (libzfs_dataset.c), which every command naming a data set or
/// snapshot goes through, sets the action "cannot open 'NAME'", and an ENOENT from the
/// kernel is EZFS_NOENT, described as "dataset does not exist" (libzfs_util.c,
/// zfs_standard_error_fmt and libzfs_error_description). The runner runs commands in the
/// C locale, so the text is not translated; any other text is no answer.
fn says_missing(stderr: &str, name: &str) -> bool {
    stderr.contains(&format!("cannot open '{name}': dataset does not exist"))
}

fn split_lines(out: &Output) -> Vec<String> {
    out.stdout_str()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn failed(cmd: &Cmd, out: &Output) -> RunError {
    RunError::Failed {
        cmd: cmd.display(),
        status: out.status_text(),
        stderr_tail: out.stderr_tail(8),
    }
}

fn assignment(k: &str, v: &str) -> Result<String> {
    crate::name::property(k)?;
    Ok(format!("{k}={v}"))
}

/// `-o k=v` (or another flag) for each pair, in order.
fn prop_args<'a>(
    flag: &'static str,
    props: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<String>> {
    let mut args = Vec::new();
    for (k, v) in props {
        args.push(flag.to_string());
        args.push(assignment(k, v)?);
    }
    Ok(args)
}

impl<R: Runner> Zfs for ZfsCli<R> {
    fn create(&self, dataset: &str, opts: &CreateOptions) -> Result<()> {
        dataset::create(self, dataset, opts)
    }

    fn destroy(&self, name: &str, recursive: bool) -> Result<()> {
        dataset::destroy(self, name, recursive)
    }

    fn destroy_snapshots(&self, dataset: &str, names: &[&str]) -> Result<()> {
        dataset::destroy_snapshots(self, dataset, names)
    }

    fn snapshot(&self, snapshot: &str, props: &[(&str, &str)]) -> Result<()> {
        dataset::snapshot(self, snapshot, props)
    }

    fn rollback(&self, snapshot: &str) -> Result<()> {
        dataset::rollback(self, snapshot)
    }

    fn clone_snapshot(&self, snapshot: &str, target: &str, props: &[(&str, &str)]) -> Result<()> {
        dataset::clone_snapshot(self, snapshot, target, props)
    }

    fn exists(&self, name: &str) -> Result<bool> {
        dataset::exists(self, name)
    }

    fn filesystems(&self, roots: &[&str], depth: u32) -> Result<Vec<crate::Filesystem>> {
        dataset::filesystems(self, roots, depth)
    }

    fn get(&self, name: &str, property: &str) -> Result<Option<String>> {
        dataset::get(self, name, property)
    }

    fn set(&self, name: &str, property: &str, value: &str) -> Result<()> {
        dataset::set(self, name, property, value)
    }

    fn children(&self, dataset: &str) -> Result<Vec<String>> {
        dataset::children(self, dataset)
    }

    fn list(&self, roots: &[&str], depth: u32, props: &[&str]) -> Result<Vec<crate::Listed>> {
        dataset::list(self, roots, depth, props)
    }

    fn snapshots(&self, dataset: &str) -> Result<Vec<String>> {
        dataset::snapshots(self, dataset)
    }

    fn mount(&self, dataset: &str) -> Result<()> {
        dataset::mount(self, dataset)
    }

    fn send(&self, snapshot: &str, out: &std::path::Path) -> Result<()> {
        dataset::send(self, snapshot, out)
    }

    fn send_incremental(&self, from: &str, snapshot: &str, out: &std::path::Path) -> Result<()> {
        dataset::send_incremental(self, from, snapshot, out)
    }

    fn receive(&self, snapshot: &str, stream: &std::path::Path, force: bool) -> Result<()> {
        dataset::receive(self, snapshot, stream, force)
    }

    fn unmount(&self, dataset: &str, force: bool) -> Result<()> {
        dataset::unmount(self, dataset, force)
    }

    fn pool_create(&self, spec: &PoolCreate) -> Result<()> {
        pool::create(self, spec)
    }

    fn pool_destroy(&self, pool: &str, force: bool) -> Result<()> {
        pool::destroy(self, pool, force)
    }

    fn pool_export(&self, pool: &str, force: bool) -> Result<()> {
        pool::export(self, pool, force)
    }

    fn pool_import(&self, spec: &PoolImport) -> Result<()> {
        pool::import(self, spec)
    }

    fn pools(&self) -> Result<Vec<String>> {
        pool::list(self)
    }

    fn pool_get(&self, pool: &str, property: &str) -> Result<String> {
        pool::get(self, pool, property)
    }

    fn pool_set(&self, pool: &str, property: &str, value: &str) -> Result<()> {
        pool::set(self, pool, property, value)
    }

    fn pool_health(&self, pool: &str) -> Result<Health> {
        pool::health(self, pool)
    }
}
