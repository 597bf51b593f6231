//! Arguments shared by the commands that read a template.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::exit::{bad_input, BadInput};
use clap::Args;
use image_builder::build::BuildOptions;
use image_builder::steps::{DevfsSetup, SmfSeeding};
use image_builder::template::{self, Features, Plan, PlanOptions};

/// The format of disk images given to `vm` and `test` (`--image-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageFormat {
    #[default]
    Raw,
    Qcow2,
}

impl From<ImageFormat> for image_builder::vm::DiskFormat {
    fn from(f: ImageFormat) -> Self {
        match f {
            ImageFormat::Raw => image_builder::vm::DiskFormat::Raw,
            ImageFormat::Qcow2 => image_builder::vm::DiskFormat::Qcow2,
        }
    }
}

/// What a host without the image's own tools leaves to the image's first boot (`build`,
/// `matrix`, and `plan -d`, whose cache answer depends on them).
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct FirstBootArgs {
    /// seed_smf installs the image's seed repository and leaves importing manifests to the
    /// image's first boot, instead of running svccfg now (for hosts without an svccfg that
    /// matches the image).
    #[arg(long)]
    pub smf_at_first_boot: bool,
    /// devfsadm steps leave /dev to the image's first boot instead of running devfsadm now:
    /// they create /reconfigure, which makes that boot a reconfiguration boot (for hosts
    /// without devfsadm, such as Linux).
    #[arg(long)]
    pub devfs_at_first_boot: bool,
}

impl FirstBootArgs {
    /// `opts` with the SMF seeding and devfs setup these flags ask for.
    pub fn apply(self, opts: BuildOptions) -> BuildOptions {
        BuildOptions {
            smf: SmfSeeding::from_flag(self.smf_at_first_boot),
            devfs: DevfsSetup::from_flag(self.devfs_at_first_boot),
            ..opts
        }
    }
}

/// Which template to read and with what features.
#[derive(Args, Debug, Clone)]
pub struct TemplateArgs {
    /// Template group: templates are read from TEMPLATES/GROUP/NAME.json.
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    pub group: String,
    /// Template name.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Where templates and files come from, and the features in force.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Template root [default: the project's templates/ in a source tree, else
    /// PREFIX/share/image-builder/templates].
    #[arg(short = 'T', long = "templates", value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Feature directive, applied in order: NAME, NAME=VALUE, NAME+=VALUE, NAME-=VALUE,
    /// NAME~=VALUE or ^NAME.
    #[arg(short = 'F', long = "feature", value_name = "DIRECTIVE")]
    pub features: Vec<String>,
    /// Directory searched for `extsrc` files (repeatable, searched in order; must exist).
    #[arg(short = 'E', long = "external-src", value_name = "DIR")]
    pub external: Vec<PathBuf>,
    /// File listing paths (one per line, relative to the template root) to treat as
    /// present, for checking a template tree that ships without its build products.
    #[arg(long = "assume-present", value_name = "LIST")]
    pub assume_present: Option<PathBuf>,
}

impl TemplateArgs {
    /// Loads, expands and validates the template.
    pub fn plan(&self) -> Result<Plan> {
        let root = self.source.root()?;
        let features = self.source.features()?;
        let external = self.source.external()?;
        let present = self.source.assume_present(&root)?;
        let opts = PlanOptions {
            external: &external,
            assume_present: &|p| present.contains(p),
        };
        Ok(template::plan(
            &root,
            &self.group,
            &self.name,
            &features,
            &opts,
        ))
    }
}

impl SourceArgs {
    pub fn features(&self) -> Result<Features> {
        Features::from_directives(&self.features).map_err(bad_input)
    }

    pub fn root(&self) -> Result<PathBuf> {
        let root = match &self.templates {
            Some(t) => absolute(t)?,
            None => default_templates()?,
        };
        if !root.is_dir() {
            bail!(BadInput(format!(
                "template root {} is not a directory",
                root.display()
            )));
        }
        // Resolve `..` and links once, so every message names a plain path.
        Ok(root.canonicalize().unwrap_or(root))
    }

    /// The paths named by `--assume-present`, made absolute under `root`.
    pub fn assume_present(&self, root: &Path) -> Result<HashSet<PathBuf>> {
        let Some(list) = &self.assume_present else {
            return Ok(HashSet::new());
        };
        let text = std::fs::read_to_string(list)
            .with_context(|| format!("cannot read --assume-present list {}", list.display()))
            .map_err(bad_input)?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| root.join(l))
            .collect())
    }

    pub fn external(&self) -> Result<Vec<PathBuf>> {
        self.external
            .iter()
            .map(|e| {
                if !e.is_dir() {
                    bail!(BadInput(format!(
                        "-E {}: external file source must be an existing directory",
                        e.display()
                    )));
                }
                absolute(e)
            })
            .collect()
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(p))
}

/// The project's `templates/` when running from a source tree (`.../target/{debug,release}`),
/// otherwise `PREFIX/share/image-builder/templates` beside `PREFIX/bin`.
fn default_templates() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let in_tree = dir
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "target"))
        .and_then(Path::parent)
        .map(|top| top.join("templates"));
    if let Some(t) = in_tree.filter(|t| t.is_dir()) {
        return Ok(t);
    }
    Ok(dir.join("../share/image-builder/templates"))
}

/// Prints every problem of a plan to standard error; returns the error count.
pub fn report(plan: &Plan) -> usize {
    for p in &plan.problems {
        eprintln!("{p}");
    }
    plan.errors().count()
}
