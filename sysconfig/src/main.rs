//! `sysconfig`: the SMF start method and a small CLI for humans.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sysconfig::config::{self, Config, Level, Output};
use sysconfig::daemon::{self, Mode, Options};

/// The exit statuses (docs/cli.md has the same table for every program).
const EXIT_HELP: &str = "Exit status:\n  0    success: every change was applied (or there was nothing to do)\n  1    the work failed: a change failed, a source could not be reached, a file could \
     not be read or written\n  2    bad usage or input that can be fixed: flags, the configuration file, the \
     metadata a source returned";

/// Exit status for bad usage or input that can be fixed (the same as clap's).
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "sysconfig",
    version,
    about = "First-boot system configuration for illumos",
    after_help = EXIT_HELP
)]
struct Cli {
    /// Configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Configure the system mounted at ALTROOT instead of the running one.
    #[arg(
        short = 'R',
        long = "root",
        value_name = "ALTROOT",
        default_value = "/"
    )]
    root: PathBuf,
    /// Print every change, command and file write without doing it.
    #[arg(long)]
    dry_run: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the desired and the applied state side by side.
    #[command(after_help = EXIT_HELP)]
    Show,
    /// Show the changes the plugins would make.
    #[command(after_help = EXIT_HELP)]
    Plan,
    /// Apply the desired state now (also when this instance was configured before).
    #[command(after_help = EXIT_HELP)]
    Apply,
    /// Print the JSON Schema of the desired configuration.
    #[command(after_help = EXIT_HELP)]
    Schema,
}

/// An alternate root that is not a directory: bad usage.
#[derive(Debug, thiserror::Error)]
#[error("alternate root {path}: {source}")]
struct BadRoot {
    path: String,
    source: std::io::Error,
}

/// Whether `e` is bad usage or input that can be fixed (exit status 2) rather than a
/// failure of the work (1).
fn is_bad_input(e: &anyhow::Error) -> bool {
    use sysconfig::daemon::DaemonError;
    use sysconfig::sources::SourceError;
    e.is::<BadRoot>()
        || matches!(
            e.downcast_ref::<config::ConfigError>(),
            Some(config::ConfigError::Parse { .. })
        )
        || matches!(
            e.downcast_ref::<DaemonError>(),
            Some(DaemonError::Source(SourceError::Malformed { .. }))
        )
}

fn init_logging(cfg: &config::Logging) -> anyhow::Result<()> {
    let level = match cfg.level {
        Level::Error => tracing::Level::ERROR,
        Level::Warn => tracing::Level::WARN,
        Level::Info => tracing::Level::INFO,
        Level::Debug => tracing::Level::DEBUG,
        Level::Trace => tracing::Level::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    match cfg.output {
        // SMF logs standard error to a file: colour codes only for a terminal.
        Output::Console => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init(),
        Output::File => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&cfg.file)
                .with_context(|| format!("cannot open log file {}", cfg.file.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init()
        }
    }
    Ok(())
}

fn real_main() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(config::DEFAULT_PATH), false),
    };
    let cfg = Config::load(&path, explicit)?;
    init_logging(&cfg.logging)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mode = match cli.command {
        None => Mode::Run,
        Some(Command::Plan) => Mode::Plan,
        Some(Command::Apply) => Mode::Apply,
        Some(Command::Show) => {
            daemon::show(&cfg, &cli.root, &mut out)?;
            return Ok(true);
        }
        Some(Command::Schema) => {
            let s = serde_json::to_string_pretty(&sysconfig::schema::Desired::json_schema())?;
            println!("{s}");
            return Ok(true);
        }
    };
    let runner = runner::SystemRunner::new();
    // Plugins and chrooted commands get an absolute root, whatever their working directory.
    let root = std::fs::canonicalize(&cli.root).map_err(|source| BadRoot {
        path: cli.root.display().to_string(),
        source,
    })?;
    let opts = Options {
        root,
        dry_run: cli.dry_run,
        mode,
    };
    let report = daemon::run(&cfg, &opts, &runner, &mut out)?;
    if !report.ok() {
        tracing::error!("sysconfig finished with failures; see the lines above");
    }
    Ok(report.ok())
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sysconfig: {e:#}");
            if is_bad_input(&e) {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
