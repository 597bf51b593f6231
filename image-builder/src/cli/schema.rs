//! `image-builder schema`: the template reference derived from the types.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use image_builder::context::Context as Ctx;
use image_builder::template::reference;

/// Print the JSON Schema of a template step, or the Markdown reference of every build
/// target and step (the generated part of docs/templates.md).
#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Print the Markdown reference instead of the JSON Schema.
    #[arg(long)]
    markdown: bool,
}

pub fn run(a: SchemaArgs, _ctx: &Ctx) -> Result<ExitCode> {
    if a.markdown {
        print!("{}", reference::markdown());
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&reference::step_schema())?
        );
    }
    Ok(ExitCode::SUCCESS)
}
