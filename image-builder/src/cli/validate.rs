//! `image-builder validate`: report every problem of a template, or of a whole tree.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use image_builder::context::Context as Ctx;
use image_builder::template::{self, Plan, PlanOptions};

use super::args::{report, SourceArgs};

/// Check a template (and everything it includes) without running anything.
///
/// Reports every problem found, not just the first: file, JSON path, line and column,
/// the bad value and what is expected. Exits 0 when there is no error (warnings allowed),
/// 2 otherwise (a template to fix).
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Template group: templates are read from TEMPLATES/GROUP/NAME.json.
    #[arg(
        short = 'g',
        long = "group",
        value_name = "GROUP",
        required_unless_present = "all"
    )]
    group: Option<String>,
    /// Template name.
    #[arg(
        short = 'n',
        long = "name",
        value_name = "NAME",
        required_unless_present = "all"
    )]
    name: Option<String>,
    /// Validate every template under the template root (GROUP/*.json, not the include/
    /// and files/ trees) instead of one.
    #[arg(long, conflicts_with_all = ["group", "name"])]
    all: bool,
    /// Print one JSON object a template on standard output (`group`, `name`, `errors`,
    /// `warnings`, `steps` and `problems`, each with `severity`, `file`, `path`, `line`,
    /// `column` and `message`) instead of the problems as text on standard error.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    source: SourceArgs,
}

pub fn run(a: ValidateArgs, _ctx: &Ctx) -> Result<ExitCode> {
    let root = a.source.root()?;
    let features = a.source.features()?;
    let external = a.source.external()?;
    let present = a.source.assume_present(&root)?;
    let opts = PlanOptions {
        external: &external,
        assume_present: &|p| present.contains(p),
    };
    let targets = match (a.group, a.name) {
        (Some(g), Some(n)) => vec![(g, n)],
        _ => template::load::main_templates(&root)?,
    };
    let mut failed = 0;
    for (group, name) in &targets {
        let plan = template::plan(&root, group, name, &features, &opts);
        if a.json {
            if plan.errors().count() > 0 {
                failed += 1;
            }
            println!("{}", serde_json::to_string(&json_summary(&plan))?);
            continue;
        }
        if report(&plan) > 0 {
            failed += 1;
        }
        summary(&plan);
    }
    if targets.len() > 1 && !a.json {
        eprintln!("{} template(s), {failed} with errors", targets.len());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        super::exit::usage()
    })
}

fn summary(plan: &Plan) {
    eprintln!(
        "{}/{}: {} error(s), {} warning(s), {} step(s)",
        plan.group,
        plan.name,
        plan.errors().count(),
        plan.warnings().count(),
        plan.steps.len()
    );
}

/// What `--json` prints for one template.
fn json_summary(plan: &Plan) -> serde_json::Value {
    serde_json::json!({
        "group": plan.group,
        "name": plan.name,
        "errors": plan.errors().count(),
        "warnings": plan.warnings().count(),
        "steps": plan.steps.len(),
        "problems": plan.problems,
    })
}
