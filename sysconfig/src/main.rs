//! `sysconfig`: the SMF start method and a small CLI for humans.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sysconfig::config::{self, Config, Level, Output};
use sysconfig::daemon::{self, Mode, Options};

#[derive(Parser)]
#[command(
    name = "sysconfig",
    version,
    about = "First-boot system configuration for illumos"
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
    Show,
    /// Show the changes the plugins would make.
    Plan,
    /// Apply the desired state now (also when this instance was configured before).
    Apply,
    /// Print the JSON Schema of the desired configuration.
    Schema,
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
    let root = std::fs::canonicalize(&cli.root)
        .with_context(|| format!("alternate root {}", cli.root.display()))?;
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
            ExitCode::from(2)
        }
    }
}
