//! `image-builder build`: validate a template, then build it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use image_builder::build::convert::Format;
use image_builder::build::{self, BuildError, BuildOptions, Env, Event, Outcome};
use image_builder::context::Context as Ctx;
use image_builder::embedded;
use image_builder::host::Host;
use zfs::Zfs;

use super::args::{report, FirstBootArgs, TemplateArgs};
use super::in_guest::{self, GuestArgs, GuestExit};

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
    /// Inside a dataset stage, snapshot the work dataset (a step checkpoint) once the steps
    /// since the last one took SECONDS, and before pkg_install, unpack_tar and onu whatever
    /// the time (both within --checkpoint-budget). A rebuild starts from the newest
    /// checkpoint that still matches.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    checkpoint_after: f64,
    /// The most of the steps' time checkpoints may cost: the steps between two take at least
    /// the checkpoints' mean time divided by it (at 3, 10 s when one takes 0.3 s), before
    /// pkg_install, unpack_tar and onu too. 0: no limit.
    #[arg(long, value_name = "PERCENT", default_value_t = 3.0, value_parser = parse_percent)]
    checkpoint_budget: f64,
    /// Take no step checkpoints (for builds that are never rebuilt after an edit).
    #[arg(long, conflicts_with_all = ["checkpoint_after", "checkpoint_budget"])]
    no_checkpoints: bool,
    /// Step checkpoints a finished stage keeps (the newest ones).
    #[arg(long, value_name = "N", default_value_t = 2)]
    keep_checkpoints: usize,
    /// Leave a failed or interrupted dataset stage's work dataset as the failure left it;
    /// `image-builder clean` discards it.
    #[arg(long)]
    keep_failed: bool,
    /// Rebuild a dataset stage only from a checkpoint that still matches; refuse when none
    /// does.
    #[arg(long, conflicts_with_all = ["reset", "fullreset"])]
    resume: bool,
    /// Run a dataset stage's steps up to STEP only (an index, or FILE:steps[N] as `plan`
    /// prints it) and keep the tree as a checkpoint; the stage is left incomplete (no
    /// output snapshot), so the next build runs the rest.
    #[arg(long, value_name = "STEP")]
    until: Option<String>,
    /// Rerun a dataset stage from STEP (as for --until), starting from the checkpoint that
    /// holds the steps before it; refused when none does.
    #[arg(long, value_name = "STEP", conflicts_with_all = ["reset", "fullreset", "resume"])]
    from: Option<String>,
    #[command(flatten)]
    first_boot: FirstBootArgs,
    #[command(flatten)]
    store: super::store::StoreArgs,
    /// Print one JSON object per event (step start and finish, cache hit or miss) on
    /// standard output.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    guest: GuestArgs,
    /// Build inside the build zone ZONE (illumos only): created with the root dataset
    /// delegated, installed and booted, then halted, uninstalled and deleted when the build
    /// ends. A running zone of that name is reused and left running.
    #[arg(long, value_name = "ZONE", conflicts_with = "vm")]
    in_zone: Option<String>,
    /// With --in-zone: the build zone's brand.
    #[arg(long, value_name = "BRAND", default_value = "ipkg")]
    zone_brand: String,
    /// With --in-zone: the build zone's zonepath (default /zones/ZONE).
    #[arg(long, value_name = "PATH")]
    zone_path: Option<PathBuf>,
    /// With --in-zone: directory that receives the outputs.
    #[arg(long, value_name = "DIR", default_value = "output")]
    zone_output: PathBuf,
    /// Set by the embedded guest run: build there, then copy the outputs to DIR.
    #[arg(long, value_name = "DIR", hide = true)]
    guest_output: Option<PathBuf>,
}

pub fn run(a: BuildArgs, ctx: &Ctx) -> Result<ExitCode> {
    let plan = a.template.plan()?;
    let errors = report(&plan);
    if errors > 0 {
        eprintln!(
            "error: {}/{} has {errors} error(s); nothing was built",
            plan.group, plan.name
        );
        if a.json {
            println!("{}", BuildError::Invalid(errors).to_json());
        }
        return Ok(super::exit::usage());
    }
    let (until, from) = match select_steps(&plan, &a) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(super::exit::usage());
        }
    };
    ctx.handle_interrupts()
        .context("cannot install signal handlers")?;
    let host = ctx.host();
    // What a build zone cannot build, and zones anywhere but illumos: said before anything
    // starts.
    if a.in_zone.is_some() {
        if let Err(e) = image_builder::buildzone::zone_can_build(plan.target.as_ref()) {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    if a.in_zone.is_some() && host != Host::Illumos {
        eprintln!(
            "error: {}",
            image_builder::buildzone::ZoneError::NotIllumos(host.name())
        );
        return Ok(super::exit::usage());
    }
    let runner = ctx.runner();
    if ctx.output().progress_bars(a.json) {
        install_progress_bar();
    }
    let zfs = ctx.zfs();
    let opts = a.first_boot.apply(BuildOptions {
        output_name: a.output_name.clone(),
        svccfg: a.svccfg.clone(),
        formats: a.formats.clone(),
        reset: a.reset,
        fullreset: a.fullreset,
        checkpoints: build::checkpoint::Policy {
            after_seconds: a.checkpoint_after,
            keep: a.keep_checkpoints,
            budget: (a.checkpoint_budget > 0.0).then(|| a.checkpoint_budget / 100.0),
            never: a.no_checkpoints,
        },
        keep_failed: a.keep_failed,
        resume: a.resume,
        until,
        from,
        source_date_epoch: source_date_epoch(),
        external: a.template.source.external()?,
        ..BuildOptions::new(&a.dataset, a.template.source.root()?)
    });
    let opts = a.store.apply(opts)?;
    // Refuse a build this host cannot run before starting anything, guest included.
    if let Err(e) = build::preflight(&plan, &opts, host) {
        eprintln!("error: {e}");
        if a.json {
            println!("{}", e.to_json());
        }
        return Ok(super::exit::usage());
    }
    if let Some(zone) = &a.in_zone {
        let za = super::in_zone::ZoneArgs {
            zone,
            brand: &a.zone_brand,
            zonepath: a.zone_path.as_deref(),
            output: &a.zone_output,
            dataset: &a.dataset,
            template_root: &opts.template_root,
            external: &opts.external,
        };
        return super::in_zone::run(za, host, runner, &zfs);
    }
    if a.guest.wanted(host, a.guest_output.is_some()) {
        return Ok(match a.guest.run(&a.dataset, runner, &[])? {
            GuestExit::Finished(c) => in_guest::exit_code(c),
            GuestExit::Failed(code) => code,
        });
    }
    if let Some(out) = &a.guest_output {
        let disk = std::env::var("ZFS_VM_DISKS").unwrap_or_default();
        let disk = disk
            .split_whitespace()
            .next()
            .unwrap_or("/dev/vda")
            .to_string();
        embedded::guest_pool(&zfs, &opts.dataset, &disk, Path::new("/ib-embedded"))?;
        let code = run_build(&plan, &opts, &ctx.env(&zfs), a.json);
        runner::interrupt::clear();
        let _cleanup = runner::interrupt::cleanup();
        let output_ds = format!("{}/output", opts.dataset);
        if zfs.exists(&output_ds)? {
            let from = build::layout::mountpoint(&zfs, &output_ds)?;
            for f in embedded::copy_outputs(runner, &from, out)? {
                eprintln!("copied {f} to {}", out.display());
            }
        }
        embedded::guest_release(&zfs, &opts.dataset)?;
        return Ok(code);
    }
    Ok(run_build(&plan, &opts, &ctx.env(&zfs), a.json))
}

fn run_build(
    plan: &image_builder::template::Plan,
    opts: &BuildOptions,
    env: &Env,
    json: bool,
) -> ExitCode {
    let mut show = |e: &Event| {
        if json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            eprintln!("{}", describe(e));
        }
    };
    match build::build(plan, opts, env, &mut show) {
        Ok(Outcome::Built) | Ok(Outcome::Cached) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!("{}", e.to_json());
            }
            if let BuildError::Interrupted = e {
                eprintln!("error: interrupted; everything the build made was undone");
                super::exit::interrupted()
            } else {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// `--until` and `--from` as step indices; an error names what is wrong with them.
fn select_steps(
    plan: &image_builder::template::Plan,
    a: &BuildArgs,
) -> Result<(Option<usize>, Option<usize>), String> {
    use image_builder::build::select;
    if a.until.is_none() && a.from.is_none() {
        return Ok((None, None));
    }
    select::dataset_only(plan.target.as_ref(), "--until and --from").map_err(|e| e.to_string())?;
    let pick = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|v| select::resolve(plan, flag, v))
            .transpose()
            .map_err(|e| e.to_string())
    };
    let until = pick("--until", &a.until)?;
    let from = pick("--from", &a.from)?;
    if let (Some(f), Some(u)) = (from, until) {
        if f > u {
            return Err(format!(
                "--from {f} comes after --until {u}: no step would run"
            ));
        }
    }
    Ok((until, from))
}

/// `SOURCE_DATE_EPOCH` from the environment, for reproducible archives.
pub(super) fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s)
        .ok_or_else(|| format!("unknown image format {s:?}: expected qcow2, vmdk or vhd"))
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a percentage from 0 to 100")),
    }
}

fn describe(e: &Event) -> String {
    match e {
        Event::Start {
            group, name, work, ..
        } => match work {
            Some(w) => format!("building {group}/{name} in {w}"),
            None => format!("building {group}/{name}"),
        },
        Event::Cleanup { message, .. } => format!("cleaning up: {message}"),
        Event::CacheHit { snapshot, .. } => {
            format!("up to date: {snapshot} matches this build (cache hit)")
        }
        Event::CacheMiss { reason } => format!("building: {reason}"),
        Event::StoreHit {
            store, snapshot, ..
        } => format!("received {snapshot} from {store} (store hit)"),
        Event::StoreFiles { store, files, .. } => {
            format!("fetched {} from {store} (store hit)", files.join(", "))
        }
        Event::StorePush { store, tag, .. } => format!("pushed {tag} to {store}"),
        Event::StepStart { index, t, location } => format!("step {index}: {t} ({location})"),
        Event::StepFinish { index, t, seconds } => {
            format!("step {index}: {t} done in {seconds:.1}s")
        }
        Event::StepSkipped { index, t, reason } => format!("step {index}: {t} skipped: {reason}"),
        Event::Resume { snapshot, index } => {
            format!("resuming from {snapshot}: steps 0-{index} are unchanged")
        }
        Event::Checkpoint { snapshot, index } => {
            format!("checkpoint after step {index}: {snapshot}")
        }
        Event::Stopped { index, checkpoint } => match checkpoint {
            Some(cp) => format!(
                "stopped after step {index} (--until): the tree is in {cp}; the stage is not \
                 complete, the next build runs the rest"
            ),
            None => format!(
                "stopped after step {index} (--until); the stage is not complete, the next \
                 build runs the rest"
            ),
        },
        Event::KeptFailed { work, dir, dataset } => format!(
            "kept the failed work dataset {work} (mounted at {dir}); \
             discard it with `image-builder clean -d {dataset}`"
        ),
        Event::Finish {
            seconds,
            outputs,
            record,
            ..
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

/// A progress bar for unpacking and packing on a terminal.
fn install_progress_bar() {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    image_builder::progress::install(Box::new(move |what, done, total| {
        if bar.length() != Some(total) {
            bar.reset();
            bar.set_length(total);
            bar.set_message(what.to_string());
        }
        bar.set_position(done);
        if done >= total {
            bar.finish_and_clear();
        }
    }));
}
