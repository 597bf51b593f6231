//! `image-builder matrix`: build several templates with a job limit, then optionally
//! boot-test their outputs; one report for everything.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::exit::{bad_input, BadInput};
use clap::Args;
use image_builder::boottest::{self, Report};
use image_builder::build::{self, BuildOptions};
use image_builder::context::Context as Ctx;
use image_builder::embedded;
use image_builder::matrix::{self, BuildReport, BuildResult, Job, Matrix, MatrixEnv};
use image_builder::template::{self, Features, PlanOptions};
use runner::SystemRunner;
use serde::{Deserialize, Serialize};

use super::args::{report, FirstBootArgs, SourceArgs};
use super::in_guest::{exit_code, GuestArgs, GuestExit};
use super::test::TestOpts;

/// Build a matrix of templates (a JSON file listing {group, name, features, output_name,
/// test}) with at most -j builds at once. Stages on the same work dataset run in order in
/// one chain, so a stage shared by several templates is built once; each build logs to
/// its own file. With --test, the outputs of entries marked `"test": true` are then
/// boot-tested. Writes matrix.json and matrix.md in --report DIR.
#[derive(Args, Debug)]
pub struct MatrixArgs {
    /// The matrix file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Builds running at once.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1)]
    jobs: usize,
    /// Root dataset for the builds' work, output and scratch datasets.
    #[arg(short = 'd', long = "dataset", value_name = "DATASET")]
    dataset: String,
    #[command(flatten)]
    source: SourceArgs,
    /// svccfg program for seed_smf (its DTD and repository format must match the image's).
    #[arg(
        short = 'S',
        long,
        value_name = "PATH",
        default_value = "/usr/sbin/svccfg"
    )]
    svccfg: PathBuf,
    #[command(flatten)]
    first_boot: FirstBootArgs,
    #[command(flatten)]
    store: super::store::StoreArgs,
    /// Build nothing: print a CI pipeline for ENGINE (github-actions or gitlab-ci) on
    /// standard output, one job per build in the matrix's order, every job with this
    /// --store, the boot tests and the report as jobs of their own (docs/scaling.md).
    #[arg(long, value_name = "ENGINE", requires = "store")]
    emit: Option<super::matrix_emit::EngineArg>,
    /// Boot-test the outputs of entries marked `"test": true`.
    #[arg(long)]
    test: bool,
    /// With the embedded guest, the tests run on this host.
    #[command(flatten)]
    guest: GuestArgs,
    /// Set by the embedded guest run: build there, copy the outputs to DIR, write the
    /// build report, and leave the tests to the host.
    #[arg(long, value_name = "DIR", hide = true)]
    guest_output: Option<PathBuf>,
    #[command(flatten)]
    test_opts: TestOpts,
}

#[derive(Serialize)]
struct MatrixReport<'a> {
    builds: &'a [BuildReport],
    tests: &'a [Report],
    passed: bool,
}

pub fn run(a: MatrixArgs, ctx: &Ctx) -> Result<ExitCode> {
    let m = Matrix::load(&a.file).map_err(bad_input)?;
    let root = a.source.root()?;
    let external = a.source.external()?;
    let present = a.source.assume_present(&root)?;
    let popts = PlanOptions {
        external: &external,
        assume_present: &|p| present.contains(p),
    };
    let mut jobs = Vec::new();
    let mut errors = 0;
    for e in &m.builds {
        let mut directives = a.source.features.clone();
        directives.extend(e.features.iter().cloned());
        let features = Features::from_directives(&directives).map_err(bad_input)?;
        let plan = template::plan(&root, &e.group, &e.name, &features, &popts);
        errors += report(&plan);
        jobs.push(Job {
            entry: e.clone(),
            plan,
        });
    }
    if errors > 0 {
        bail!(BadInput(format!(
            "the matrix has {errors} template error(s); nothing was built"
        )));
    }
    if let Some(engine) = a.emit {
        let chains = matrix::schedule(jobs).map_err(bad_input)?;
        let common = super::matrix_emit::common_args(&a.source, &a.first_boot, &a.svccfg, &a.store);
        return super::matrix_emit::run(
            engine,
            &chains,
            &a.file,
            &a.dataset,
            common,
            &a.test_opts.report,
        );
    }
    ctx.handle_interrupts()
        .context("cannot install signal handlers")?;
    let host = ctx.host();
    let opts = a.first_boot.apply(BuildOptions {
        svccfg: a.svccfg.clone(),
        source_date_epoch: super::build::source_date_epoch(),
        external: external.clone(),
        ..BuildOptions::new(&a.dataset, &root)
    });
    let opts = a.store.apply(opts)?;
    for j in &jobs {
        build::preflight(&j.plan, &opts, host).map_err(bad_input)?;
    }
    // A bad checklist is refused before anything is built.
    let list = super::test::checklist(&a.test_opts).map_err(bad_input)?;
    let tested: HashSet<String> = m.builds.iter().filter(|e| e.test).map(|e| e.id()).collect();
    let chains = matrix::schedule(jobs).map_err(bad_input)?;
    let runner = ctx.runner();
    let make_zfs = ctx.zfs_factory();
    let report_dir = std::path::absolute(&a.test_opts.report)?;
    let log_dir = report_dir.join("logs");
    let env = MatrixEnv {
        host,
        runner,
        zfs: &make_zfs,
        opts: &opts,
        log_dir: &log_dir,
        epoch: std::time::Instant::now(),
    };
    let builds = if a.guest.wanted(host, a.guest_output.is_some()) {
        match in_guest(&a, runner, &report_dir, &tested)? {
            Ok(b) => b,
            Err(code) => return Ok(code),
        }
    } else if let Some(out) = &a.guest_output {
        return guest_builds(chains, &a, &env, out, &report_dir);
    } else {
        matrix::run(chains, a.jobs, &env)?
    };
    let mut tests = Vec::new();
    if a.test && !runner::interrupt::requested() {
        let images: Vec<PathBuf> = builds
            .iter()
            .filter(|b| b.test && matches!(b.result, BuildResult::Built | BuildResult::Cached))
            .flat_map(|b| b.outputs.iter().cloned())
            .collect();
        tests = super::test::test_images(&images, &a.test_opts, &list, runner)?;
    }
    let passed = write_report(&report_dir, &builds, &tests)?;
    // Cleanup clears the request; a signal that arrived is still counted.
    Ok(if ctx.interrupted() {
        super::exit::interrupted()
    } else if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes matrix.json and matrix.md; returns whether every build and test passed.
fn write_report(report_dir: &Path, builds: &[BuildReport], tests: &[Report]) -> Result<bool> {
    let builds_ok = builds
        .iter()
        .all(|b| matches!(b.result, BuildResult::Built | BuildResult::Cached));
    let passed = builds_ok && tests.iter().all(|t| t.passed);
    let r = MatrixReport {
        builds,
        tests,
        passed,
    };
    std::fs::create_dir_all(report_dir)?;
    std::fs::write(
        report_dir.join("matrix.json"),
        serde_json::to_string_pretty(&r)? + "\n",
    )?;
    std::fs::write(report_dir.join("matrix.md"), markdown(builds, tests))?;
    eprintln!(
        "matrix: report in {}",
        report_dir.join("matrix.md").display()
    );
    Ok(passed)
}

/// What the guest run leaves for the host: matrix.json with the builds and no tests.
#[derive(Deserialize)]
struct GuestReport {
    builds: Vec<BuildReport>,
}

/// Runs this same command inside the embedded ZFS guest, which builds (see
/// [`guest_builds`]); returns its build reports, or the exit status when the guest could
/// not run. `tested` are the ids of the entries to boot-test.
fn in_guest(
    a: &MatrixArgs,
    runner: &SystemRunner,
    report_dir: &Path,
    tested: &HashSet<String>,
) -> Result<std::result::Result<Vec<BuildReport>, ExitCode>> {
    std::fs::create_dir_all(report_dir)?;
    let report_dir = report_dir.canonicalize()?;
    let guest_report = report_dir.join("matrix.json");
    match std::fs::remove_file(&guest_report) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", guest_report.display()))
        }
        _ => {}
    }
    // 1: some build failed; the report says which.
    match a
        .guest
        .run(&a.dataset, runner, std::slice::from_ref(&report_dir))?
    {
        GuestExit::Finished(0 | 1) => {}
        GuestExit::Finished(c) => return Ok(Err(exit_code(c))),
        GuestExit::Failed(code) => return Ok(Err(code)),
    }
    let text = std::fs::read_to_string(&guest_report).with_context(|| {
        format!(
            "the embedded ZFS guest wrote no build report ({})",
            guest_report.display()
        )
    })?;
    let mut r: GuestReport = serde_json::from_str(&text)
        .with_context(|| format!("cannot read {}", guest_report.display()))?;
    for b in &mut r.builds {
        b.test = tested.contains(&b.build);
    }
    Ok(Ok(r.builds))
}

/// In the guest: import (or create) the pool, run the builds, copy their outputs to the
/// host directory `out` (the reports name them there), write the build report, export.
fn guest_builds(
    chains: Vec<Vec<matrix::Job>>,
    a: &MatrixArgs,
    env: &MatrixEnv<'_>,
    out: &Path,
    report_dir: &Path,
) -> Result<ExitCode> {
    let zfs = (env.zfs)();
    let disk = std::env::var("ZFS_VM_DISKS").unwrap_or_default();
    let disk = disk.split_whitespace().next().unwrap_or("/dev/vda");
    embedded::guest_pool(&*zfs, &a.dataset, disk, Path::new("/ib-embedded"))?;
    let mut builds = matrix::run(chains, a.jobs, env)?;
    runner::interrupt::clear();
    let _cleanup = runner::interrupt::cleanup();
    let output_ds = format!("{}/output", a.dataset);
    if zfs.exists(&output_ds)? {
        let from = build::layout::mountpoint(&*zfs, &output_ds)?;
        for f in embedded::copy_outputs(env.runner, &from, out)? {
            eprintln!("copied {f} to {}", out.display());
        }
    }
    for b in &mut builds {
        for o in &mut b.outputs {
            if let Some(name) = o.file_name() {
                *o = out.join(name);
            }
        }
    }
    let passed = write_report(report_dir, &builds, &[])?;
    embedded::guest_release(&*zfs, &a.dataset)?;
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn markdown(builds: &[BuildReport], tests: &[Report]) -> String {
    let mut md = String::from(
        "# Matrix report\n\n| build | work | result | time | log |\n|---|---|---|---|---|\n",
    );
    for b in builds {
        let result = match b.result {
            BuildResult::Built => "built",
            BuildResult::Cached => "cached",
            BuildResult::Failed => "failed",
            BuildResult::Skipped => "skipped",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {result} | {:.1}s | {} |",
            b.build,
            b.work,
            b.seconds,
            b.log.display()
        );
    }
    for b in builds.iter().filter(|b| b.error.is_some()) {
        let _ = write!(md, "\n{}: {}\n", b.build, b.error.as_deref().unwrap_or(""));
    }
    if !tests.is_empty() {
        md.push('\n');
        md.push_str(&boottest::report::markdown(tests));
    }
    md
}
