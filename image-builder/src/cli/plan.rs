//! `image-builder plan`: the resolved, expanded step list.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use image_builder::template::Plan;

use super::args::{report, TemplateArgs};

/// Show what a build would do: every step in run order with its source file and index,
/// its type, its expanded arguments, and whether `with`/`without` skips it.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    template: TemplateArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: PlanArgs) -> Result<ExitCode> {
    let plan = a.template.plan()?;
    let errors = report(&plan);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print_plan(&plan);
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_plan(plan: &Plan) {
    println!("{}/{} ({})", plan.group, plan.name, plan.file.display());
    if let Some(t) = &plan.target {
        let v = serde_json::to_value(t).unwrap_or_default();
        println!("target: {v}");
    }
    if !plan.features.is_empty() {
        println!("features: {}", plan.features.join(" "));
    }
    let root = plan.file.parent().and_then(|p| p.parent());
    for s in &plan.steps {
        let file = root
            .and_then(|r| s.file.strip_prefix(r).ok())
            .unwrap_or(&s.file);
        let args = match &s.args {
            serde_json::Value::Object(m) if m.is_empty() => String::new(),
            serde_json::Value::Null => "(did not parse)".to_string(),
            v => v.to_string(),
        };
        let skip = s
            .skip
            .as_deref()
            .map(|w| format!("  [skipped: {w}]"))
            .unwrap_or_default();
        println!(
            "{:>3}  {:<20} {}:steps[{}]  {args}{skip}",
            s.index,
            s.t,
            file.display(),
            s.step_index
        );
    }
}
