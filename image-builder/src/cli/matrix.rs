//! `image-builder matrix`: build several templates with a job limit, then optionally
//! boot-test their outputs; one report for everything.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::{bail, Result};
use clap::Args;
use image_builder::boottest::{self, Report};
use image_builder::build::{self, BuildOptions};
use image_builder::host::{Host, Tool};
use image_builder::matrix::{self, BuildReport, BuildResult, Job, Matrix, MatrixEnv};
use image_builder::steps::{DevfsSetup, SmfSeeding};
use image_builder::template::{self, Features, PlanOptions};
use runner::SystemRunner;
use serde::Serialize;

use super::args::{report, SourceArgs};
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
    #[arg(
        short = 'S',
        long,
        value_name = "PATH",
        default_value = "/usr/sbin/svccfg"
    )]
    svccfg: PathBuf,
    /// See `build --smf-at-first-boot`.
    #[arg(long)]
    smf_at_first_boot: bool,
    /// See `build --devfs-at-first-boot`.
    #[arg(long)]
    devfs_at_first_boot: bool,
    /// Boot-test the outputs of entries marked `"test": true`.
    #[arg(long)]
    test: bool,
    #[command(flatten)]
    test_opts: TestOpts,
}

#[derive(Serialize)]
struct MatrixReport<'a> {
    builds: &'a [BuildReport],
    tests: &'a [Report],
    passed: bool,
}

pub fn run(a: MatrixArgs) -> Result<ExitCode> {
    let m = Matrix::load(&a.file)?;
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
        let features = Features::from_directives(&directives)?;
        let plan = template::plan(&root, &e.group, &e.name, &features, &popts);
        errors += report(&plan);
        jobs.push(Job {
            entry: e.clone(),
            plan,
        });
    }
    if errors > 0 {
        bail!("the matrix has {errors} template error(s); nothing was built");
    }
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, runner::interrupt::flag())?;
    }
    let host = Host::detect();
    let opts = BuildOptions {
        svccfg: a.svccfg.clone(),
        smf: SmfSeeding::from_flag(a.smf_at_first_boot),
        devfs: DevfsSetup::from_flag(a.devfs_at_first_boot),
        source_date_epoch: super::build::source_date_epoch(),
        external: external.clone(),
        ..BuildOptions::new(&a.dataset, &root)
    };
    for j in &jobs {
        build::preflight(&j.plan, &opts, host)?;
    }
    let chains = matrix::schedule(jobs)?;
    let runner = SystemRunner::new();
    let make_zfs = || -> Box<dyn zfs::Zfs> {
        Box::new(zfs::ZfsCli::new(
            SystemRunner::new(),
            zfs::ZfsTools::new(host.tool(Tool::Zfs), host.tool(Tool::Zpool)),
        ))
    };
    let report_dir = std::path::absolute(&a.test_opts.report)?;
    let log_dir = report_dir.join("logs");
    let env = MatrixEnv {
        host,
        runner: &runner,
        zfs: &make_zfs,
        opts: &opts,
        log_dir: &log_dir,
        epoch: std::time::Instant::now(),
    };
    let builds = matrix::run(chains, a.jobs, &env)?;
    let mut tests = Vec::new();
    if a.test && !runner::interrupt::requested() {
        let images: Vec<PathBuf> = builds
            .iter()
            .filter(|b| b.test && matches!(b.result, BuildResult::Built | BuildResult::Cached))
            .flat_map(|b| b.outputs.iter().cloned())
            .collect();
        let list = super::test::checklist(&a.test_opts)?;
        tests = super::test::test_images(&images, &a.test_opts, &list)?;
    }
    let builds_ok = builds
        .iter()
        .all(|b| matches!(b.result, BuildResult::Built | BuildResult::Cached));
    let passed = builds_ok && tests.iter().all(|t| t.passed);
    let r = MatrixReport {
        builds: &builds,
        tests: &tests,
        passed,
    };
    std::fs::create_dir_all(&report_dir)?;
    std::fs::write(
        report_dir.join("matrix.json"),
        serde_json::to_string_pretty(&r)? + "\n",
    )?;
    std::fs::write(report_dir.join("matrix.md"), markdown(&builds, &tests))?;
    eprintln!(
        "matrix: report in {}",
        report_dir.join("matrix.md").display()
    );
    let interrupted = runner::interrupt::flag().load(Ordering::SeqCst);
    Ok(if interrupted {
        ExitCode::from(130)
    } else if passed {
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
