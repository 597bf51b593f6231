//! `image-builder schema`: the JSON Schema of a template step.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use image_builder::template::StepKind;

/// Print the JSON Schema of template steps (derived from the same types the loader uses).
#[derive(Args, Debug)]
pub struct SchemaArgs {}

pub fn run(_a: SchemaArgs) -> Result<ExitCode> {
    let schema = schemars::schema_for!(StepKind);
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}
