//! `build --in-zone ZONE`: the same build, run inside a build zone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use image_builder::buildzone::{self, BuildZone, InZone, ZoneError};
use image_builder::host::Host;
use runner::SystemRunner;
use zfs::Zfs;

pub struct ZoneArgs<'a> {
    pub zone: &'a str,
    pub brand: &'a str,
    pub zonepath: Option<&'a Path>,
    pub output: &'a Path,
    pub dataset: &'a str,
    pub template_root: &'a Path,
    pub external: &'a [PathBuf],
}

pub fn run(a: ZoneArgs, host: Host, runner: &SystemRunner, zfs: &dyn Zfs) -> Result<ExitCode> {
    if host != Host::Illumos {
        eprintln!("error: {}", ZoneError::NotIllumos(host.name()));
        return Ok(ExitCode::FAILURE);
    }
    let exe = std::env::current_exe()
        .context("cannot tell where this program is, to mount it into the zone")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let mut mounts: Vec<PathBuf> = exe.parent().into_iter().map(Path::to_path_buf).collect();
    mounts.push(a.template_root.to_path_buf());
    mounts.extend(a.external.iter().cloned());
    mounts.sort();
    mounts.dedup();
    let mut extra = vec!["-T".to_string(), a.template_root.display().to_string()];
    for e in a.external {
        extra.push("-E".into());
        extra.push(e.display().to_string());
    }
    let args: Vec<String> = std::env::args().skip(2).collect();
    let inner = buildzone::inner_args(&args, &extra);
    // Children of the delegated dataset mount at its mountpoint inside the zone.
    let mp = zfs
        .get(a.dataset, "mountpoint")?
        .filter(|m| m.starts_with('/'))
        .with_context(|| format!("{} has no mountpoint to build under", a.dataset))?;
    let output_in_zone = PathBuf::from(mp).join("output");
    let copy_to = std::env::current_dir()?.join(a.output);
    let z = InZone {
        host,
        runner,
        zone: BuildZone {
            name: a.zone.to_string(),
            brand: a.brand.to_string(),
            zonepath: a
                .zonepath
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/zones").join(a.zone)),
            dataset: a.dataset.to_string(),
            mounts,
        },
        state_dir: PathBuf::from(buildzone::DEFAULT_STATE_DIR),
        boot_wait: Duration::from_secs(300),
        poll: Duration::from_secs(2),
    };
    eprintln!(
        "building in zone {} (brand {}, zonepath {}); outputs to {}",
        z.zone.name,
        z.zone.brand,
        z.zone.zonepath.display(),
        copy_to.display()
    );
    match z.run(&exe, &inner, &output_in_zone, &copy_to) {
        Ok(f) => {
            for t in &f.teardown_failed {
                eprintln!("error: could not remove the build zone: {t} (the next run with this zone name retries)");
            }
            Ok(match f.code {
                Some(0) if f.teardown_failed.is_empty() => ExitCode::SUCCESS,
                Some(c) if c != 0 => ExitCode::from(u8::try_from(c).unwrap_or(1)),
                _ => ExitCode::FAILURE,
            })
        }
        Err(e @ ZoneError::Interrupted { .. }) => {
            eprintln!("error: {e}; the build zone was removed");
            Ok(super::exit::interrupted())
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
