//! `image-builder build`: validate a template, then build it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use image_builder::build::convert::Format;
use image_builder::build::{self, BuildError, BuildOptions, Env, Event, Outcome};
use image_builder::host::{Host, Tool};
use image_builder::steps::SmfSeeding;
use runner::SystemRunner;

use super::args::{report, TemplateArgs};

/// Build an image from a template.
///
/// The whole template is validated first, and the host checked for every tool its steps
/// need; nothing on the system is touched when either fails. A dataset stage whose output
/// snapshot is current (same template, files, features and input) is taken from the cache.
#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    template: TemplateArgs,
    /// Root dataset for the build's work, output and scratch datasets.
    #[arg(short = 'd', long = "dataset", value_name = "DATASET")]
    dataset: String,
    /// Name for the work area and output files instead of the template name.
    #[arg(short = 'N', long = "output-name", value_name = "NAME")]
    output_name: Option<String>,
    /// svccfg program for seed_smf (its DTD and repository format must match the image's).
    #[arg(
        short = 'S',
        long = "svccfg",
        value_name = "PATH",
        default_value = "/usr/sbin/svccfg"
    )]
    svccfg: PathBuf,
    /// Also write disk images in these formats (qcow2, vmdk, vhd; repeatable), converted
    /// from the raw image with qemu-img.
    #[arg(long = "format", value_name = "FORMAT", value_parser = parse_format)]
    formats: Vec<Format>,
    /// Rebuild this stage even when its output snapshot is current.
    #[arg(short = 'r', long = "reset")]
    reset: bool,
    /// Destroy the work dataset first and build from nothing.
    #[arg(short = 'x', long = "fullreset")]
    fullreset: bool,
    /// seed_smf installs the image's seed repository and leaves importing manifests to the
    /// image's first boot, instead of running svccfg now (for hosts without an svccfg that
    /// matches the image).
    #[arg(long)]
    smf_at_first_boot: bool,
    /// Print one JSON object per event (step start and finish, cache hit or miss) on
    /// standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(a: BuildArgs) -> Result<ExitCode> {
    let plan = a.template.plan()?;
    let errors = report(&plan);
    if errors > 0 {
        eprintln!(
            "error: {}/{} has {errors} error(s); nothing was built",
            plan.group, plan.name
        );
        return Ok(ExitCode::FAILURE);
    }
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, runner::interrupt::flag())?;
    }
    let host = Host::detect();
    let runner = SystemRunner::new();
    // A pool whose device fails can block zfs and zpool forever; nothing may wait that long.
    let zfs = zfs::ZfsCli::new(
        &runner,
        zfs::ZfsTools::new(host.tool(Tool::Zfs), host.tool(Tool::Zpool)),
    )
    .with_timeout(std::time::Duration::from_secs(1800));
    let opts = BuildOptions {
        dataset: a.dataset,
        output_name: a.output_name,
        svccfg: a.svccfg,
        formats: a.formats,
        assume_tools: false,
        reset: a.reset,
        fullreset: a.fullreset,
        smf: if a.smf_at_first_boot {
            SmfSeeding::AtFirstBoot
        } else {
            SmfSeeding::Import
        },
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.parse().ok()),
        template_root: a.template.source.root()?,
        external: a.template.source.external()?,
    };
    let env = Env {
        host,
        runner: &runner,
        zfs: &zfs,
    };
    let json = a.json;
    let mut show = |e: &Event| {
        if json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            eprintln!("{}", describe(e));
        }
    };
    match build::build(&plan, &opts, &env, &mut show) {
        Ok(Outcome::Built) | Ok(Outcome::Cached) => Ok(ExitCode::SUCCESS),
        Err(BuildError::Interrupted) => {
            eprintln!("error: interrupted; everything the build made was undone");
            Ok(ExitCode::from(130))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s)
        .ok_or_else(|| format!("unknown image format {s:?}: expected qcow2, vmdk or vhd"))
}

fn describe(e: &Event) -> String {
    match e {
        Event::Start {
            group, name, work, ..
        } => match work {
            Some(w) => format!("building {group}/{name} in {w}"),
            None => format!("building {group}/{name}"),
        },
        Event::Cleanup { undo } => format!("cleaning up: {undo}"),
        Event::CacheHit { snapshot, .. } => {
            format!("up to date: {snapshot} matches this build (cache hit)")
        }
        Event::CacheMiss { reason } => format!("building: {reason}"),
        Event::StepStart { index, t, location } => format!("step {index}: {t} ({location})"),
        Event::StepFinish { index, t, seconds } => {
            format!("step {index}: {t} done in {seconds:.1}s")
        }
        Event::StepSkipped { index, t, reason } => format!("step {index}: {t} skipped: {reason}"),
        Event::Finish {
            seconds,
            outputs,
            record,
        } => {
            let outs = if outputs.is_empty() {
                String::new()
            } else {
                format!("; wrote {}", outputs.join(", "))
            };
            format!("done in {seconds:.1}s{outs}; record {record}")
        }
    }
}
