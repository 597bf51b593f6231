//! The check before a build: every running step's tools are on this host.

use super::error::BuildError;
use super::BuildOptions;
use crate::host::{Host, Tool};
use crate::steps::{DevfsSetup, SmfSeeding};
use crate::template::{Plan, StepKind};

/// Refuses, before anything happens, a plan whose running steps need tools this host lacks.
pub fn preflight(plan: &Plan, opts: &BuildOptions, host: Host) -> Result<(), BuildError> {
    let mut missing = Vec::new();
    for s in plan.steps.iter().filter(|s| s.skip.is_none()) {
        let Some(kind) = &s.kind else { continue };
        let at = format!(
            "step {} ({}, {} steps[{}])",
            s.index,
            s.t,
            s.file.display(),
            s.step_index
        );
        if let StepKind::SeedSmf(_) = kind {
            if opts.smf == SmfSeeding::Import && !is_executable(&opts.svccfg) {
                missing.push(format!(
                    "{at} needs svccfg at {} (give an illumos svccfg with -S, or use --smf-at-first-boot to let the image import its manifests when it first boots)",
                    opts.svccfg.display()
                ));
            }
            continue;
        }
        if let StepKind::Devfsadm(_) = kind {
            if opts.devfs == DevfsSetup::AtFirstBoot {
                continue;
            }
        }
        for tool in kind.needs() {
            if !host.has(*tool) {
                missing.push(format!(
                    "{at} needs {}, which this {} host does not have: {}",
                    host.tool(*tool),
                    host.name(),
                    which_host(*tool)
                ));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(BuildError::Preflight(missing.join("\n")))
    }
}

fn which_host(tool: Tool) -> &'static str {
    match tool {
        Tool::Pkg => "IPS steps run on an illumos host with pkg(1) (OpenIndiana, OmniOS, Helios)",
        Tool::Devfsadm => "devfsadm runs on an illumos host (or use --devfs-at-first-boot to leave /dev to the image's first boot, a reconfiguration boot)",
        _ => "this step runs on an illumos host",
    }
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
