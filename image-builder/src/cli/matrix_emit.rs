//! `matrix --emit ENGINE`: the matrix as a CI pipeline (image_builder::matrix::emit).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use image_builder::matrix::emit::{self, EmitOptions, Engine};
use image_builder::matrix::Job;

use super::args::{FirstBootArgs, SourceArgs};
use super::store::StoreArgs;

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum EngineArg {
    GithubActions,
    GitlabCi,
}

/// The flags every job repeats, as the user gave them (paths stay relative to the
/// pipeline's checkout).
pub fn common_args(
    source: &SourceArgs,
    first_boot: &FirstBootArgs,
    svccfg: &Path,
    store: &StoreArgs,
) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(t) = &source.templates {
        w.extend(["-T".to_string(), t.display().to_string()]);
    }
    for f in &source.features {
        w.extend(["-F".to_string(), f.clone()]);
    }
    for e in &source.external {
        w.extend(["-E".to_string(), e.display().to_string()]);
    }
    if svccfg != Path::new("/usr/sbin/svccfg") {
        w.extend(["-S".to_string(), svccfg.display().to_string()]);
    }
    if first_boot.smf_at_first_boot {
        w.push("--smf-at-first-boot".into());
    }
    if first_boot.devfs_at_first_boot {
        w.push("--devfs-at-first-boot".into());
    }
    if let Some(url) = &store.store {
        w.extend(["--store".to_string(), url.clone()]);
    }
    if store.store_required {
        w.push("--store-required".into());
    }
    w
}

pub fn run(
    engine: EngineArg,
    chains: &[Vec<Job>],
    file: &Path,
    dataset: &str,
    common_args: Vec<String>,
    report: &Path,
) -> Result<ExitCode> {
    let engine = match engine {
        EngineArg::GithubActions => Engine::GithubActions,
        EngineArg::GitlabCi => Engine::GitlabCi,
    };
    let o = EmitOptions {
        matrix_file: file.display().to_string(),
        dataset: dataset.to_string(),
        common_args,
        report_dir: report.display().to_string(),
    };
    print!("{}", emit::render(engine, chains, &o));
    Ok(ExitCode::SUCCESS)
}
