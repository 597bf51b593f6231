//! Command-line interface: one file per subcommand; the work is done by the library.

mod args;
mod build;
mod clean;
mod embedded;
mod in_guest;
mod in_zone;
mod inspect;
mod matrix;
mod output;
mod plan;
mod schema;
mod shell;
mod test;
mod validate;
mod vm;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// A ZFS-native image builder for illumos and OpenIndiana.
#[derive(Parser)]
#[command(name = "image-builder", version, about, long_about = None, after_help = exit::HELP)]
struct Cli {
    #[command(flatten)]
    output: output::OutputArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[command(after_help = exit::HELP)]
enum Command {
    #[command(after_help = exit::HELP)]
    Build(build::BuildArgs),
    #[command(after_help = exit::HELP)]
    Clean(clean::CleanArgs),
    #[command(after_help = exit::HELP)]
    Embedded(embedded::EmbeddedArgs),
    #[command(after_help = exit::HELP)]
    Inspect(inspect::InspectArgs),
    #[command(after_help = exit::HELP)]
    Validate(validate::ValidateArgs),
    #[command(after_help = exit::HELP)]
    Plan(plan::PlanArgs),
    #[command(after_help = exit::HELP)]
    Schema(schema::SchemaArgs),
    #[command(after_help = exit::HELP)]
    Shell(shell::ShellArgs),
    #[command(after_help = exit::HELP)]
    Vm(vm::VmArgs),
    #[command(after_help = exit::HELP)]
    Test(test::TestArgs),
    #[command(after_help = exit::HELP)]
    Matrix(matrix::MatrixArgs),
    /// Print a shell completion script (bash, elvish, fish, powershell or zsh) to
    /// standard output.
    #[command(after_help = exit::HELP)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages of image-builder and every subcommand into DIR (what
    /// scripts/install runs).
    #[command(hide = true)]
    ManPages { dir: std::path::PathBuf },
}

/// The exit statuses of every subcommand (docs/cli.md has the same table).
pub mod exit {
    use std::process::ExitCode;

    /// The work failed: a build step, a command, a disk, a boot test.
    pub const FAILED: u8 = 1;
    /// Bad usage or input that can be fixed: an unknown flag, a template or matrix or
    /// checklist with errors, a flag this host cannot honour. Nothing was started.
    pub const USAGE: u8 = 2;
    /// Interrupted by SIGINT, SIGTERM or SIGHUP; cleanup ran (128 + SIGINT, as shells do).
    pub const INTERRUPTED: u8 = 130;

    /// The table, for every `--help`.
    pub const HELP: &str = "Exit status:\n  0    success\n  1    the work failed (a step, a command, a boot test)\n  2    bad usage or input that can be fixed (flags, a template, a matrix or checklist \
         with errors); nothing was started\n  130  interrupted by SIGINT, SIGTERM or SIGHUP; cleanup ran (a third signal quits at once)";

    pub fn usage() -> ExitCode {
        ExitCode::from(USAGE)
    }

    pub fn failed() -> ExitCode {
        ExitCode::from(FAILED)
    }

    pub fn interrupted() -> ExitCode {
        ExitCode::from(INTERRUPTED)
    }

    /// An error in what the user gave (flags, a template, a matrix file): exit status 2.
    /// Every other error a command returns exits 1.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct BadInput(pub String);

    /// Marks `e` as bad input, keeping its whole message.
    pub fn bad_input(e: impl Into<anyhow::Error>) -> anyhow::Error {
        let e: anyhow::Error = e.into();
        BadInput(format!("{e:#}")).into()
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    cli.output.init_logging("IMAGE_BUILDER_LOG");
    let result = match cli.command {
        Command::Build(a) => build::run(a),
        Command::Clean(a) => clean::run(a),
        Command::Embedded(a) => embedded::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Schema(a) => schema::run(a),
        Command::Shell(a) => shell::run(a),
        Command::Vm(a) => vm::run(a),
        Command::Test(a) => test::run(a),
        Command::Matrix(a) => matrix::run(a),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "image-builder", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::ManPages { dir } => output::write_man_pages(Cli::command(), &dir)
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| anyhow::anyhow!("cannot write man pages in {}: {e}", dir.display())),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.is::<exit::BadInput>() {
                exit::usage()
            } else {
                exit::failed()
            }
        }
    }
}
