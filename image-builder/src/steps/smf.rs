//! `seed_smf`: build the image's SMF repository at build time.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StepArgs;
use crate::template::check::{Checker, Expander};

/// Profiles `seed_smf` can apply: illumos' manifest-import only reads `generic` and
/// `platform` from `/etc/svc/profile`, and `site` from `/var/svc/profile`.
pub const PROFILES: &[&str] = &["generic", "platform", "site"];

/// Seed the SMF repository: start from the image's seed database, import every manifest
/// under `/lib/svc/manifest` with `svccfg` (the `-S` program, whose DTD and repository
/// format must match the image's), optionally turn on restarter debug logging and apply
/// profiles, then install the result as `/etc/svc/repository.db`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeedSmf {
    /// Turn on `options/logging=debug` for `svc.startd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug: Option<bool>,
    /// Apply the site profile (same as `apply_profiles: ["site"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_site: Option<bool>,
    /// Profiles to apply: `generic`, `platform`, `site`. Macros are expanded; elements
    /// that expand to nothing are dropped, so a macro can make a profile optional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apply_profiles: Vec<String>,
    /// Seed database name in `/lib/svc/seed/` (default `global`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// Start from an empty repository instead of a seed database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_seed: Option<bool>,
}

impl StepArgs for SeedSmf {
    fn expand(&self, x: &mut Expander) -> Self {
        let profiles = x.list("apply_profiles", &self.apply_profiles);
        SeedSmf {
            apply_profiles: profiles
                .into_iter()
                .filter(|p| !p.trim().is_empty())
                .collect(),
            ..self.clone()
        }
    }

    fn check(&self, c: &mut Checker) {
        if self.apply_site == Some(true) && !self.apply_profiles.is_empty() {
            c.error(
                "apply_site",
                "`apply_site` and `apply_profiles` cannot be used together",
            );
        }
        for (i, p) in self.apply_profiles.iter().enumerate() {
            if !p.contains('$') && !PROFILES.contains(&p.as_str()) {
                c.error(
                    &format!("apply_profiles[{i}]"),
                    format!(
                        "unsupported profile {p:?}: expected one of {}",
                        PROFILES.join(", ")
                    ),
                );
            }
        }
        if self.skip_seed == Some(true) && self.seed.is_some() {
            c.warn("seed", "`seed` is ignored because `skip_seed` is true");
        }
    }
}

// ---- execution -------------------------------------------------------------------------

use runner::Cmd;

use super::exec::{Execute, SmfSeeding, StepCx, StepError};
use crate::host::Tool;

impl SeedSmf {
    fn profiles(&self) -> Vec<String> {
        if self.apply_site == Some(true) {
            vec!["site".to_string()]
        } else {
            self.apply_profiles.clone()
        }
    }

    fn seed_name(&self) -> Option<&str> {
        match self.skip_seed {
            Some(true) => None,
            _ => Some(self.seed.as_deref().unwrap_or("global")),
        }
    }
}

/// The image path of a profile `seed_smf` may apply. manifest-import only supports the
/// generic and platform profiles in /etc, and the site profile in /var.
fn profile_path(name: &str) -> String {
    match name {
        "site" => "/var/svc/profile/site.xml".to_string(),
        other => format!("/etc/svc/profile/{other}.xml"),
    }
}

impl Execute for SeedSmf {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Svccfg]
    }

    /// The repository is built in the scratch directory (without sync) and copied in.
    fn uses_scratch(&self) -> bool {
        true
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        const INSTALLED: &str = "/etc/svc/repository.db";
        if cx.smf == SmfSeeding::AtFirstBoot {
            // Without a compatible svccfg, install the seed repository as a fresh illumos
            // install has it: svc.startd then runs manifest-import, which imports every
            // manifest and applies the generic, platform and site profiles on first boot.
            let Some(seed) = self.seed_name() else {
                tracing::info!("seed_smf: skip_seed and import at first boot: nothing to install");
                return Ok(());
            };
            let db = cx.root.read(format!("/lib/svc/seed/{seed}.db"))?;
            cx.root.write_atomic(INSTALLED, &db, 0o600)?;
            cx.root.set_owner(INSTALLED, Some(0), Some(0))?;
            tracing::info!("seed_smf: installed the {seed} seed repository; manifests are imported at first boot");
            return Ok(());
        }
        let root = cx.root_path();
        let repo = cx.tmp_dir.join("repo.db");
        match self.seed_name() {
            Some(seed) => {
                let db = cx.root.read(format!("/lib/svc/seed/{seed}.db"))?;
                std::fs::write(&repo, db).map_err(|e| StepError::host(&repo, e))?;
            }
            None => match std::fs::remove_file(&repo) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StepError::host(&repo, e))
                }
                _ => {}
            },
        }
        // svccfg must see the image's DTD and write the scratch repository; SVCCFG_CHECKHASH
        // records manifest hashes so manifest-import does not re-import them at boot.
        let svccfg = |args: &[&std::ffi::OsStr]| -> Cmd {
            Cmd::new(cx.svccfg)
                .tag(cx.tag.clone())
                .env(
                    "SVCCFG_DTD",
                    root.join("usr/share/lib/xml/dtd/service_bundle.dtd.1"),
                )
                .env("SVCCFG_REPOSITORY", &repo)
                .env("SVCCFG_CHECKHASH", "1")
                .env("PKG_INSTALL_ROOT", root)
                .args(args)
        };
        let manifests = root.join("lib/svc/manifest");
        cx.run(svccfg(&[
            "import".as_ref(),
            "-p".as_ref(),
            "/dev/stdout".as_ref(),
            manifests.as_os_str(),
        ]))?;
        if self.debug == Some(true) {
            // Boot arguments (-m debug) would send this to the console; the restarter's
            // property sends it to its log instead, and works where boot args cannot be set.
            cx.run(svccfg(
                &[
                    "-s",
                    "system/svc/restarter:default",
                    "addpg",
                    "options",
                    "application",
                ]
                .map(std::ffi::OsStr::new),
            ))?;
            cx.run(svccfg(
                &[
                    "-s",
                    "system/svc/restarter:default",
                    "setprop",
                    "options/logging=debug",
                ]
                .map(std::ffi::OsStr::new),
            ))?;
        }
        for p in self.profiles() {
            let path = root.join(profile_path(&p).trim_start_matches('/'));
            cx.run(svccfg(&["apply".as_ref(), path.as_os_str()]))?;
        }
        let db = std::fs::read(&repo).map_err(|e| StepError::host(&repo, e))?;
        cx.root.write_atomic(INSTALLED, &db, 0o600)?;
        cx.root.set_owner(INSTALLED, Some(0), Some(0))?;
        std::fs::remove_file(&repo).map_err(|e| StepError::host(&repo, e))?;
        Ok(())
    }
}
