//! `image-builder shell`: a shell, or one command, in a dataset stage's tree.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use image_builder::build::shell::{self, At};
use image_builder::build::{select, BuildError, BuildOptions};
use image_builder::context::Context as Ctx;
use image_builder::embedded;

use super::args::{report, TemplateArgs};
use super::in_guest::{self, GuestArgs, GuestExit};

/// Open a shell (or run one command) inside a dataset stage's tree: at its output
/// snapshot, at a step checkpoint (--at STEP), or as a failed build left it (--failed).
///
/// The tree is a ZFS clone, chrooted into and destroyed when the shell exits, so nothing
/// done there changes the stage or its cache. No build of the stage runs meanwhile. With
/// the embedded ZFS guest only the command form (`-- CMD ARGS...`) works.
#[derive(Args, Debug)]
pub struct ShellArgs {
    #[command(flatten)]
    template: TemplateArgs,
    /// Root dataset of the builds.
    #[arg(short = 'd', long = "dataset", value_name = "DATASET")]
    dataset: String,
    /// Output name (`-N`) the stage was built with.
    #[arg(short = 'N', long = "output-name", value_name = "NAME")]
    output_name: Option<String>,
    /// Open the checkpoint after STEP (an index, or FILE:steps[N] as `plan` prints it).
    #[arg(long, value_name = "STEP", conflicts_with = "failed")]
    at: Option<String>,
    /// Open the work dataset as it is now: what `build --keep-failed` left.
    #[arg(long)]
    failed: bool,
    #[command(flatten)]
    guest: GuestArgs,
    /// Run this command (and its arguments) in the tree instead of an interactive /bin/sh;
    /// its exit status is shell's.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

pub fn run(a: ShellArgs, ctx: &Ctx) -> Result<ExitCode> {
    let plan = a.template.plan()?;
    let errors = report(&plan);
    if errors > 0 {
        eprintln!(
            "error: {}/{} has {errors} error(s); nothing was opened",
            plan.group, plan.name
        );
        return Ok(super::exit::usage());
    }
    if let Err(e) = select::dataset_only(plan.target.as_ref(), "shell") {
        return bad(&e);
    }
    let at = match (&a.at, a.failed) {
        (Some(v), _) => match select::resolve(&plan, "--at", v) {
            Ok(i) => At::Step(i),
            Err(e) => return bad(&e),
        },
        (None, true) => At::Failed,
        (None, false) => At::Output,
    };
    let host = ctx.host();
    let runner = ctx.runner();
    let inside = std::env::var_os("ZFS_VM_GUEST").is_some();
    if a.guest.wanted(host, inside) {
        if a.command.is_empty() {
            return bad(
                &"an interactive shell cannot run in the embedded ZFS guest (it has no \
                 terminal to give it): run one command with `image-builder shell ... -- CMD \
                 ARGS...`",
            );
        }
        return Ok(match a.guest.run_plan(&a.dataset, runner)? {
            GuestExit::Finished(c) => in_guest::exit_code(c),
            GuestExit::Failed(code) => code,
        });
    }
    signals(a.command.is_empty())?;
    let zfs = ctx.zfs();
    let opts = BuildOptions {
        output_name: a.output_name.clone(),
        external: a.template.source.external()?,
        ..BuildOptions::new(&a.dataset, a.template.source.root()?)
    };
    let env = ctx.env(&zfs);
    if inside {
        let disk = std::env::var("ZFS_VM_DISKS").unwrap_or_default();
        let disk = disk.split_whitespace().next().unwrap_or("/dev/vda");
        embedded::guest_pool(&zfs, &a.dataset, disk, Path::new("/ib-embedded"))?;
    }
    let result = shell::shell(&plan, &opts, &env, &at, &a.command);
    if inside {
        embedded::guest_release(&zfs, &a.dataset)?;
    }
    match result {
        Ok(code) => Ok(in_guest::exit_code(code)),
        Err(BuildError::Interrupted) => {
            eprintln!("error: interrupted; the clone was destroyed");
            Ok(super::exit::interrupted())
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(super::exit::failed())
        }
    }
}

/// Says what is wrong with what the user gave: exit status 2.
fn bad(e: &dyn std::fmt::Display) -> Result<ExitCode> {
    eprintln!("error: {e}");
    Ok(super::exit::usage())
}

/// The signal handling of a shell: for one command, as `build` (SIGINT, SIGTERM and SIGHUP
/// stop it and the clone is destroyed). For an interactive shell, Ctrl-C and Ctrl-\ belong
/// to the shell on the terminal and leave this process alone; SIGTERM and SIGHUP stop the
/// shell and the clone is destroyed.
fn signals(interactive: bool) -> Result<()> {
    if !interactive {
        return runner::interrupt::install().context("cannot install signal handlers");
    }
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let ignored = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGQUIT] {
        signal_hook::flag::register(sig, ignored.clone())
            .context("cannot install signal handlers")?;
    }
    for sig in [SIGTERM, SIGHUP] {
        signal_hook::flag::register(sig, runner::interrupt::flag())
            .context("cannot install signal handlers")?;
    }
    Ok(())
}
