//! `image-builder shell`: a shell, or one command, inside a dataset stage's tree as its
//! output snapshot, a step checkpoint or a kept failure holds it, on a clone, so nothing
//! done there reaches the stage or its cache.
//!
//! The clone `DATASET/tmp/GROUP/OUTPUT-shell` (and, for the kept failure, the snapshot
//! `WORK@ib:shell` it is cloned from) is written in a cleanup journal of its own before it
//! exists and destroyed when the command ends, fails or is interrupted; a crash leaves it
//! to `image-builder clean` or the next `shell` of the stage. The stage's work-area lock is
//! held meanwhile, so no build of it runs while the clone depends on its snapshots.

use runner::Cmd;
use zfs::CreateOptions;

use super::checkpoint;
use super::error::BuildError;
use super::journal::{Journal, Undo};
use super::layout::{self, Layout};
use super::lock::{self, Lock};
use super::{select, BuildOptions, Env};
use crate::host::Tool;
use crate::template::{Plan, Target};

/// Which state of the stage's tree to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// The output snapshot: the finished stage.
    Output,
    /// The checkpoint after this step.
    Step(usize),
    /// The work dataset as it is now: what `build --keep-failed` left.
    Failed,
}

/// The shell a `shell` without a command starts, inside the tree.
pub const SHELL: &str = "/bin/sh";

/// The name of the snapshot a `--failed` shell clones the work dataset's present state
/// from (in the tool's own `ib:` namespace, which templates cannot use).
pub const NOW_SNAPSHOT: &str = "ib:shell";

/// Runs `argv` (an interactive [`SHELL`] when empty) chrooted into a clone of the tree of
/// `plan`'s stage `at`, then destroys the clone. Returns the command's exit status.
pub fn shell(
    plan: &Plan,
    opts: &BuildOptions,
    env: &Env,
    at: &At,
    argv: &[String],
) -> Result<i32, BuildError> {
    select::dataset_only(plan.target.as_ref(), "shell")?;
    let Some(Target::Dataset(target)) = &plan.target else {
        return Err(BuildError::Invalid(1));
    };
    let zfs = env.zfs;
    let output_name = opts.output_name.as_deref().unwrap_or(&plan.name);
    let layout = Layout::new(&opts.dataset, &plan.group, output_name, Some(&target.name));
    let work = layout.work.clone().unwrap_or_default();
    if !zfs.exists(&layout.output)? || !zfs.exists(&work)? {
        return Err(BuildError::NoStage { work });
    }
    let state = layout::state_dir(&layout::mountpoint(zfs, &layout.output)?);
    let clone = format!("{}-shell", layout.tmp);
    // No build of the stage while the clone depends on its snapshots; the clone's own
    // lock tells `image-builder clean` that its journal is in use.
    let _work_lock = Lock::acquire(&state.join("locks"), &work)?;
    let _clone_lock = Lock::acquire(&state.join("locks"), &clone)?;
    let mut journal = Journal::open(&state.join("journals"), &lock::key(&clone))?;
    if !journal.is_empty() {
        tracing::info!("removing what an interrupted shell of {work} left");
        let failed = journal.unwind(&env.system());
        if !failed.is_empty() {
            return Err(BuildError::EarlierShell { failed });
        }
    }
    let result = open(plan, target, env, at, argv, &work, &clone, &mut journal);
    // The clone goes whatever happened, interrupts included.
    runner::interrupt::clear();
    let _cleanup = runner::interrupt::cleanup();
    let failed = journal.unwind(&env.system());
    if !failed.is_empty() {
        tracing::error!(
            "cleanup failed, left for `image-builder clean`: {}",
            failed.join("; ")
        );
        if result.is_ok() {
            return Err(BuildError::ShellClone { failed });
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn open(
    plan: &Plan,
    target: &crate::template::model::Dataset,
    env: &Env,
    at: &At,
    argv: &[String],
    work: &str,
    clone: &str,
    journal: &mut Journal,
) -> Result<i32, BuildError> {
    let zfs = env.zfs;
    let source = match at {
        At::Output => match &target.output_snapshot {
            Some(out) if zfs.exists(&format!("{work}@{out}"))? => format!("{work}@{out}"),
            out => {
                let what = match out {
                    Some(o) => format!("{work}@{o} does not exist (the stage is not complete)"),
                    None => "the stage has no output snapshot".to_string(),
                };
                return Err(BuildError::NothingToOpen {
                    what,
                    checkpoints: checkpoints(zfs, work)?,
                });
            }
        },
        At::Step(i) => {
            let cp = checkpoint::name(work, *i);
            if !zfs.exists(&cp)? {
                let s = plan.steps.iter().find(|s| s.index == *i);
                return Err(BuildError::NoCheckpointAfter {
                    index: *i,
                    step: s
                        .map(|s| format!(" ({}, {})", s.t, select::place(plan, s)))
                        .unwrap_or_default(),
                    checkpoints: checkpoints(zfs, work)?,
                });
            }
            cp
        }
        At::Failed => {
            let now = format!("{work}@{NOW_SNAPSHOT}");
            journal.push(Undo::DestroyDataset { name: now.clone() })?;
            zfs.snapshot(&now, &[])?;
            now
        }
    };
    let parent = match zfs::name::parent(clone) {
        zfs::name::Parent::Dataset(p) => p.to_string(),
        _ => String::new(),
    };
    if !parent.is_empty() && !zfs.exists(&parent)? {
        zfs.create(&parent, &CreateOptions::new().parents())?;
    }
    journal.push(Undo::DestroyDataset {
        name: clone.to_string(),
    })?;
    zfs.clone_snapshot(&source, clone, &[])?;
    let dir = layout::mountpoint(zfs, clone)?;
    tracing::info!(
        "{} in {} (a clone of {source}, destroyed afterwards)",
        if argv.is_empty() { "shell" } else { "running" },
        dir.display()
    );
    let cmd = Cmd::new(env.host.tool(Tool::Chroot)).arg(&dir);
    let cmd = if argv.is_empty() {
        let cmd = cmd.arg(SHELL).interactive();
        match std::env::var_os("TERM") {
            Some(t) => cmd.env("TERM", t),
            None => cmd,
        }
    } else {
        cmd.args(argv).passthrough()
    };
    let out = env.runner.output(&cmd).map_err(|e| match e {
        runner::RunError::Interrupted { .. } => BuildError::Interrupted,
        e => BuildError::Run(e),
    })?;
    Ok(out.code.unwrap_or(128 + 9))
}

/// The checkpoints of `work`, said for an error message.
fn checkpoints(zfs: &dyn zfs::Zfs, work: &str) -> Result<String, BuildError> {
    let found = checkpoint::list(zfs, work, None)?;
    Ok(if found.is_empty() {
        format!("{work} has no checkpoints")
    } else {
        format!(
            "{work} has checkpoints after step(s) {}",
            found
                .iter()
                .map(|(i, _)| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}
