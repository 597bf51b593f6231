//! `image-builder pull REF DIR`: fetch an artifact from a store and verify it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use image_builder::context::Context as Ctx;
use image_builder::store::{ArtifactRef, Store};
use sha2::{Digest, Sha256};

use super::exit::BadInput;

/// Fetch an image (or a stage) from a store into DIR: every file is checked against its
/// sha256 digest in the manifest as it arrives, and, when the artifact has a SHA256SUMS,
/// against that too. Credentials and SSL_CERT_FILE as for --store (docs/scaling.md).
#[derive(Args, Debug)]
pub struct PullArgs {
    /// oci://HOST[:PORT]/REPO:TAG, oci://HOST[:PORT]/REPO@sha256:HEX, or file:///DIR:TAG;
    /// oci+https:// for HTTPS to a loopback host.
    #[arg(value_name = "REF")]
    reference: String,
    /// Directory for the files (created when missing).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub fn run(a: PullArgs, _ctx: &Ctx) -> Result<ExitCode> {
    let r = ArtifactRef::parse(&a.reference).map_err(|e| BadInput(e.to_string()))?;
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    let store = Store::open(&r.store)?;
    let Some((_, digest, paths)) = store.pull_artifact(&r.reference, &a.dir)? else {
        bail!("{} has no {}", r.store, r.reference);
    };
    let sums = a.dir.join("SHA256SUMS");
    let checked = if paths.contains(&sums) {
        check_sums(&a.dir, &sums)?
    } else {
        0
    };
    for p in &paths {
        println!("{}", p.display());
    }
    tracing::info!(
        "pulled {} ({digest}): {} file(s), each matching its digest{}",
        r,
        paths.len(),
        if checked > 0 {
            format!("; {checked} matching SHA256SUMS")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Checks every file SHA256SUMS names (`HEX  NAME`) in `dir`; returns how many.
fn check_sums(dir: &Path, sums: &Path) -> Result<usize> {
    let text =
        std::fs::read_to_string(sums).with_context(|| format!("cannot read {}", sums.display()))?;
    let mut n = 0;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let Some((want, name)) = line.split_once("  ").or_else(|| line.split_once(" *")) else {
            bail!("{} line {}: not HEX  NAME", sums.display(), i + 1);
        };
        let name = name.trim_start_matches('*');
        if name.contains('/') || name == ".." {
            bail!(
                "{} line {}: {name:?} is not a file name",
                sums.display(),
                i + 1
            );
        }
        let path = dir.join(name);
        let mut f = std::fs::File::open(&path)
            .with_context(|| format!("{} line {}: {name} was not pulled", sums.display(), i + 1))?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
        let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if got != want.to_ascii_lowercase() {
            bail!(
                "{}: its sha256 is {got}, but SHA256SUMS says {want}",
                path.display()
            );
        }
        n += 1;
    }
    Ok(n)
}
