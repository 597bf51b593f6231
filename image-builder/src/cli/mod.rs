//! Command-line interface: one file per subcommand; the work is done by the library.

mod args;
mod build;
mod clean;
mod embedded;
mod in_guest;
mod in_zone;
mod inspect;
mod matrix;
mod plan;
mod schema;
mod test;
mod validate;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A ZFS-native image builder for illumos and OpenIndiana.
#[derive(Parser)]
#[command(name = "image-builder", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Build(build::BuildArgs),
    Clean(clean::CleanArgs),
    Embedded(embedded::EmbeddedArgs),
    Inspect(inspect::InspectArgs),
    Validate(validate::ValidateArgs),
    Plan(plan::PlanArgs),
    Schema(schema::SchemaArgs),
    Vm(vm::VmArgs),
    Test(test::TestArgs),
    Matrix(matrix::MatrixArgs),
}

/// Exit status for a usage or input error (the same as clap's).
pub const EXIT_USAGE: u8 = 2;

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IMAGE_BUILDER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let result = match cli.command {
        Command::Build(a) => build::run(a),
        Command::Clean(a) => clean::run(a),
        Command::Embedded(a) => embedded::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Schema(a) => schema::run(a),
        Command::Vm(a) => vm::run(a),
        Command::Test(a) => test::run(a),
        Command::Matrix(a) => matrix::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
