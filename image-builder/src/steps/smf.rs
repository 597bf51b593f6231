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
