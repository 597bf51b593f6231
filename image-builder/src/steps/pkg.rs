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

/// Add or change a publisher (`pkg set-publisher --no-refresh`). `uri` sets the one origin
/// and `uris` sets several, in order (either replaces the publisher's origins; give one of
/// them, not both). With `mirror_uri`, every existing mirror is removed before the new one
/// is added.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PkgSetPublisher {
    /// Publisher name. Macros are expanded.
    pub publisher: String,
    /// Origin URI. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Origin URIs, in order. Macros are expanded; `${@f}` gives one origin per value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    /// Mirror URI. Macros are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_uri: Option<String>,
}

impl PkgSetPublisher {
    const BOTH_URI_FORMS: &'static str =
        "pkg_set_publisher takes `uri` or `uris`, not both: put every origin in `uris`";
}

impl StepArgs for PkgSetPublisher {
    fn expand(&self, x: &mut Expander) -> Self {
        PkgSetPublisher {
            publisher: x.one("publisher", &self.publisher),
            uri: x.opt("uri", &self.uri),
            uris: self.uris.as_ref().map(|u| x.list("uris", u)),
            mirror_uri: x.opt("mirror_uri", &self.mirror_uri),
        }
    }

    fn check(&self, c: &mut Checker) {
        match (&self.uri, &self.uris, &self.mirror_uri) {
            (Some(_), Some(_), _) => c.error("uris", Self::BOTH_URI_FORMS),
            (None, None, None) => c.error(
                "publisher",
                "pkg_set_publisher needs at least one of `uri`, `uris` and `mirror_uri`",
            ),
            (None, Some(u), None) if u.is_empty() => c.error(
                "uris",
                "pkg_set_publisher: `uris` expands to no origin and there is no `mirror_uri`",
            ),
            _ => {}
        }
        for (i, u) in self.uris.iter().flatten().enumerate() {
            if u.trim().is_empty() {
                c.error(&format!("uris[{i}]"), "the origin URI is empty");
            }
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
    /// Package FMRIs or names. Macros are expanded; `${@f}` gives one package per value.
    pub pkgs: Vec<String>,
}

impl StepArgs for PkgUninstall {
    fn expand(&self, x: &mut Expander) -> Self {
        PkgUninstall {
            pkgs: x.list("pkgs", &self.pkgs),
        }
    }

    fn check(&self, c: &mut Checker) {
        check_pkgs(c, &self.pkgs);
    }
}

fn check_pkgs(c: &mut Checker, pkgs: &[String]) {
    if pkgs.is_empty() {
        c.warn(
            "pkgs",
            "the package list is empty: the step will do nothing",
        );
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

// ---- execution -------------------------------------------------------------------------

use runner::Cmd;

use super::exec::{Execute, StepCx, StepError};
use crate::host::Tool;

/// pkg(1) exits 4 when there was nothing to do; for an idempotent step that is success.
const PKG_NOTHING_TO_DO: i32 = 4;

/// `pkg -R <root> ARGS...`
fn pkg(cx: &StepCx) -> Cmd {
    cx.cmd(Tool::Pkg).arg("-R").arg(cx.root_path())
}

/// Runs a pkg command that may legitimately have nothing to do.
fn run_allowing_nothing_to_do(cx: &StepCx, cmd: Cmd) -> Result<(), StepError> {
    let out = cx.runner.output(&cmd)?;
    match out.code {
        Some(0) | Some(PKG_NOTHING_TO_DO) => Ok(()),
        _ => Err(StepError::Command(runner::RunError::Failed {
            cmd: cmd.display(),
            status: out.status_text(),
            stderr_tail: out.stderr_tail(8),
        })),
    }
}

impl Execute for PkgImageCreate {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Pkg]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let mut cmd = cx.cmd(Tool::Pkg).args(["image-create", "--full"]);
        if let (Some(p), Some(u)) = (&self.publisher, &self.uri) {
            cmd = cmd.arg("--publisher").arg(format!("{p}={u}"));
        }
        cx.run(cmd.arg(cx.root_path()))?;
        Ok(())
    }
}

impl Execute for PkgSetPublisher {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Pkg]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let mut cmd = pkg(cx).args(["set-publisher", "--no-refresh"]);
        match (&self.uri, &self.uris) {
            (Some(_), Some(_)) => return Err(StepError::msg(Self::BOTH_URI_FORMS)),
            // pkg(1) set-publisher `-O origin_to_set` (`--origin-uri`): removes every origin
            // of the publisher and adds this one.
            (Some(uri), None) => cmd = cmd.arg("-O").arg(uri),
            // `-O` cannot be combined with `-g`/`-G` (pkg5 options.py,
            // opts_table_cb_pub_opts), so several origins are set the way `-O` sets one:
            // `-G '*'` (`--remove-origin`, `*` removes them all) and then one
            // `-g origin_to_add` (`--add-origin`) per URI, in the template's order.
            (None, Some(uris)) if !uris.is_empty() => {
                cmd = cmd.args(["-G", "*"]);
                for u in uris {
                    cmd = cmd.arg("-g").arg(u);
                }
            }
            _ => {}
        }
        if let Some(m) = &self.mirror_uri {
            // pkg(1) set-publisher has no "set the mirror" option, only `-m mirror_to_add`
            // (`--add-mirror`) and `-M mirror_to_remove` (`--remove-mirror`, `*` for all):
            // drop them all first, as the illumos image-builder does.
            cmd = cmd.args(["-M", "*", "-m"]).arg(m);
        }
        cx.run(cmd.arg(&self.publisher))?;
        Ok(())
    }
}

impl Execute for PkgApproveCaCert {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Pkg]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        let cert = cx.template_file(&self.certfile)?;
        let mut arg = std::ffi::OsString::from("--approve-ca-cert=");
        arg.push(cert.as_os_str());
        cx.run(pkg(cx).arg("set-publisher").arg(arg).arg(&self.publisher))?;
        Ok(())
    }
}

impl Execute for PkgSetProperty {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Pkg]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        cx.run(pkg(cx).arg("set-property").arg(&self.name).arg(&self.value))?;
        Ok(())
    }
}

impl Execute for PkgInstall {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Pkg]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        // pkg(1) install needs at least one pkg_fmri_pattern; a list that expanded to
        // nothing (`${@f}` with `f` unset) is skipped, as the illumos image-builder does.
        if self.pkgs.is_empty() {
            tracing::info!("pkg_install: skipping empty package list");
            return Ok(());
        }
        run_allowing_nothing_to_do(cx, pkg(cx).arg("install").args(&self.pkgs))?;
        if !self.include_optional {
            return Ok(());
        }
        let strip = self.strip_optional_publishers.unwrap_or(true);
        let mut optional: Vec<String> = Vec::new();
        for p in &self.pkgs {
            for dep in optional_deps(cx, p)? {
                let dep = if strip { strip_publisher(&dep) } else { dep };
                if !optional.contains(&dep) {
                    tracing::info!("optional package: {p} -> {dep}");
                    optional.push(dep);
                }
            }
        }
        if optional.is_empty() {
            return Ok(());
        }
        run_allowing_nothing_to_do(cx, pkg(cx).arg("install").args(&optional))
    }
}

/// The FMRIs of `package`'s optional dependencies.
fn optional_deps(cx: &StepCx, package: &str) -> Result<Vec<String>, StepError> {
    let cmd = pkg(cx).args([
        "contents",
        "-t",
        "depend",
        "-a",
        "type=optional",
        "-H",
        "-o",
        "fmri",
        package,
    ]);
    let out = cx.runner.output(&cmd)?;
    if !out.success() {
        // pkg cannot tell "no optional dependencies" from other failures except by this
        // message, so it is the one place English output is matched.
        if String::from_utf8_lossy(&out.stderr).contains("no matching actions found") {
            return Ok(Vec::new());
        }
        return Err(StepError::Command(runner::RunError::Failed {
            cmd: cmd.display(),
            status: out.status_text(),
            stderr_tail: out.stderr_tail(8),
        }));
    }
    Ok(out
        .stdout_str()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// `pkg://publisher/name@version` -> `pkg:/name@version`; other forms are unchanged.
pub fn strip_publisher(fmri: &str) -> String {
    match fmri.strip_prefix("pkg://") {
        Some(rest) => match rest.split_once('/') {
            Some((_, name)) => format!("pkg:/{name}"),
            None => fmri.to_string(),
        },
        None => fmri.to_string(),
    }
}

impl Execute for PkgUninstall {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Pkg]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        // pkg(1) uninstall needs at least one pkg_fmri_pattern: skip an empty list, as the
        // illumos image-builder does.
        if self.pkgs.is_empty() {
            tracing::info!("pkg_uninstall: skipping empty package list");
            return Ok(());
        }
        cx.run(pkg(cx).arg("uninstall").args(&self.pkgs))?;
        Ok(())
    }
}

/// The current value of `kind` (`variant` or `facet`) `name`, from `pkg variant|facet -F json`.
fn current_value(cx: &StepCx, kind: &str, name: &str) -> Result<Option<String>, StepError> {
    let out = cx.run(pkg(cx).args([kind, "-F", "json"]))?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .map_err(|e| StepError::msg(format!("cannot parse `pkg {kind} -F json` output: {e}")))?;
    let full = format!("{kind}.{name}");
    Ok(rows
        .iter()
        .find(|r| r[kind].as_str() == Some(&full))
        .and_then(|r| r["value"].as_str().map(str::to_string)))
}

impl Execute for PkgChangeVariant {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Pkg]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        if current_value(cx, "variant", &self.variant)?.as_deref() == Some(&self.value) {
            tracing::info!("variant {} is already {}", self.variant, self.value);
            return Ok(());
        }
        run_allowing_nothing_to_do(
            cx,
            pkg(cx)
                .arg("change-variant")
                .arg(format!("{}={}", self.variant, self.value)),
        )
    }
}

impl Execute for PkgChangeFacet {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Pkg]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        if current_value(cx, "facet", &self.facet)?.as_deref() == Some(&self.value) {
            tracing::info!("facet {} is already {}", self.facet, self.value);
            return Ok(());
        }
        run_allowing_nothing_to_do(
            cx,
            pkg(cx)
                .arg("change-facet")
                .arg(format!("{}={}", self.facet, self.value)),
        )
    }
}

impl Execute for PkgPurgeHistory {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Pkg]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        cx.run(pkg(cx).arg("purge-history"))?;
        Ok(())
    }
}

impl Execute for Onu {
    fn needs(&self) -> &'static [Tool] {
        &[Tool::Pkg]
    }

    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        const ONU_PUBLISHER: &str = "on-nightly";
        cx.run(
            pkg(cx)
                .args(["set-publisher", "--no-refresh", "--non-sticky"])
                .arg(&self.publisher),
        )?;
        cx.run(
            pkg(cx)
                .args(["set-publisher", "-e", "--no-refresh", "-P", "-O"])
                .arg(&self.repo)
                .arg(ONU_PUBLISHER),
        )?;
        cx.run(pkg(cx).args(["refresh", "--full"]))?;
        if !self.uninstall.is_empty() {
            cx.run(pkg(cx).arg("uninstall").args(&self.uninstall))?;
        }
        run_allowing_nothing_to_do(cx, pkg(cx).args(["change-facet", "onu.ooceonly=false"]))?;
        run_allowing_nothing_to_do(cx, pkg(cx).arg("update"))?;
        cx.run(pkg(cx).arg("purge-history"))?;
        Ok(())
    }
}
