//! IPS steps: `pkg_image_create`, `pkg_set_publisher`, `pkg_approve_ca_cert`,
//! `pkg_set_property`, `pkg_install`, `pkg_uninstall`, `pkg_change_variant`,
//! `pkg_change_facet`, `pkg_purge_history`, `onu`. They run `pkg -R <image root>`, so they
//! need an illumos host with pkg(1).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{no_args_step, StepArgs};
use crate::template::check::{Checker, Expander};

/// Create a full IPS image at the image root, optionally with a first publisher.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PkgImageCreate {
    /// Publisher name; give it together with `uri`. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Publisher origin URI; give it together with `publisher`. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

impl StepArgs for PkgImageCreate {
    fn expand(&self, x: &mut Expander) -> Self {
        PkgImageCreate {
            publisher: x.opt("publisher", &self.publisher),
            uri: x.opt("uri", &self.uri),
        }
    }

    fn check(&self, c: &mut Checker) {
        if self.publisher.is_some() != self.uri.is_some() {
            c.error("publisher", "`publisher` and `uri` must be given together");
        }
    }
}

/// Add or change a publisher (`pkg set-publisher --no-refresh`). With `mirror_uri`, every
/// existing mirror is removed before the new one is added.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PkgSetPublisher {
    /// Publisher name. Macros are expanded.
    pub publisher: String,
    /// Origin URI. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Mirror URI. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_uri: Option<String>,
}

impl StepArgs for PkgSetPublisher {
    fn expand(&self, x: &mut Expander) -> Self {
        PkgSetPublisher {
            publisher: x.one("publisher", &self.publisher),
            uri: x.opt("uri", &self.uri),
            mirror_uri: x.opt("mirror_uri", &self.mirror_uri),
        }
    }

    fn check(&self, c: &mut Checker) {
        if self.uri.is_none() && self.mirror_uri.is_none() {
            c.error("publisher", "give at least one of `uri` and `mirror_uri`");
        }
    }
}

/// Approve a CA certificate for a publisher; the certificate comes from the template
/// tree's `files` directories.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PkgApproveCaCert {
    /// Publisher name.
    pub publisher: String,
    /// Relative path of the PEM file in the template tree.
    pub certfile: String,
}

impl StepArgs for PkgApproveCaCert {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        c.template_file("certfile", &self.certfile);
    }
}

/// Set an image property (`pkg set-property NAME VALUE`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PkgSetProperty {
    /// Property name, e.g. `flush-content-cache-on-success`.
    pub name: String,
    /// Property value.
    pub value: String,
}

impl StepArgs for PkgSetProperty {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        if self.name.is_empty() {
            c.error("name", "the property name is empty");
        }
    }
}

/// Install packages; with `include_optional`, then install the optional dependencies of
/// each listed package too.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PkgInstall {
    /// Package FMRIs or names. Macros are expanded; `${@f}` gives one package per value.
    pub pkgs: Vec<String>,
    /// Also install each package's `optional` dependencies.
    #[serde(default)]
    pub include_optional: bool,
    /// Drop the publisher from optional dependency FMRIs (default true), as IPS itself
    /// ignores it for `require` dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_optional_publishers: Option<bool>,
}

impl StepArgs for PkgInstall {
    fn expand(&self, x: &mut Expander) -> Self {
        PkgInstall {
            pkgs: x.list("pkgs", &self.pkgs),
            ..self.clone()
        }
    }

    fn check(&self, c: &mut Checker) {
        check_pkgs(c, &self.pkgs);
    }
}

/// Uninstall packages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PkgUninstall {
    /// Package FMRIs or names.
    pub pkgs: Vec<String>,
}

impl StepArgs for PkgUninstall {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        check_pkgs(c, &self.pkgs);
    }
}

fn check_pkgs(c: &mut Checker, pkgs: &[String]) {
    if pkgs.is_empty() {
        c.warn("pkgs", "the package list is empty");
    }
    for (i, p) in pkgs.iter().enumerate() {
        if p.trim().is_empty() || p.contains(char::is_whitespace) {
            c.error(&format!("pkgs[{i}]"), format!("invalid package name {p:?}"));
        }
    }
}

/// Change a variant (e.g. `opensolaris.zone` to `global`), only when it differs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PkgChangeVariant {
    /// Variant name without the `variant.` prefix.
    pub variant: String,
    /// Wanted value.
    pub value: String,
}

impl StepArgs for PkgChangeVariant {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        if self.variant.starts_with("variant.") {
            c.warn(
                "variant",
                "give the variant name without the `variant.` prefix",
            );
        }
    }
}

/// Change a facet (e.g. `doc.man` to `false`), only when it differs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PkgChangeFacet {
    /// Facet name without the `facet.` prefix.
    pub facet: String,
    /// Wanted value.
    pub value: String,
}

impl StepArgs for PkgChangeFacet {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        if self.facet.starts_with("facet.") {
            c.warn("facet", "give the facet name without the `facet.` prefix");
        }
    }
}

/// Remove the image's IPS operation history (`pkg purge-history`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PkgPurgeHistory {}

impl PkgPurgeHistory {
    pub const NAME: &'static str = "pkg_purge_history";
}
no_args_step!(PkgPurgeHistory);

/// Upgrade the image to OS bits from an `onu` repository: make the named publisher
/// non-sticky, add the `on-nightly` publisher for `repo`, refresh, uninstall the listed
/// packages, set `onu.ooceonly=false`, update and purge history.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Onu {
    /// Repository URI of the onu bits. Macros are expanded.
    pub repo: String,
    /// The distribution publisher to make non-sticky. Macros are expanded.
    pub publisher: String,
    /// Packages to uninstall before updating.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uninstall: Vec<String>,
}

impl StepArgs for Onu {
    fn expand(&self, x: &mut Expander) -> Self {
        Onu {
            repo: x.one("repo", &self.repo),
            publisher: x.one("publisher", &self.publisher),
            ..self.clone()
        }
    }

    fn check(&self, c: &mut Checker) {
        if self.repo.is_empty() {
            c.error("repo", "the repository URI is empty");
        }
    }
}
