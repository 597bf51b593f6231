//! `sysconfig`: the SMF start method and a small CLI for humans.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgAction, CommandFactory, Parser, Subcommand, ValueEnum};
use sysconfig::config::{self, Config, Level, Output};
use sysconfig::daemon::{self, Mode, Options};
use tracing_subscriber::filter::LevelFilter;

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
    /// More log output than the configuration's level: -v debug, -vv trace.
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "quiet")]
    verbose: u8,
    /// Less log output: -q warnings and errors only, -qq errors only, -qqq nothing.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    quiet: u8,
    /// Colour in console log output: auto (only when standard error is a terminal and
    /// NO_COLOR is not set), always or never. A log file never gets colour.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Color::Auto, global = true)]
    color: Color,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the desired and the applied state side by side.
    #[command(after_help = EXIT_HELP)]
    Show {
        /// Print the stored desired and applied records and each key's state as one JSON
        /// object (password hashes redacted).
        #[arg(long)]
        json: bool,
    },
    /// Show the changes the plugins would make.
    #[command(after_help = EXIT_HELP)]
    Plan {
        /// Print the plan as one JSON object (`instance_id`, `warnings`, `unowned`,
        /// `plugin_errors`, `changes` with their `plugin`, `id`, `key`, `summary`);
        /// password hashes redacted.
        #[arg(long)]
        json: bool,
    },
    /// Apply the desired state now (also when this instance was configured before).
    #[command(after_help = EXIT_HELP)]
    Apply,
    /// Print the JSON Schema of the desired configuration.
    #[command(after_help = EXIT_HELP)]
    Schema,
    /// Write the man pages of sysconfig and its subcommands into DIR.
    #[command(hide = true)]
    ManPages { dir: PathBuf },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Color {
    Auto,
    Always,
    Never,
}

/// Whether console output gets ANSI colour (NO_COLOR set and not empty means none).
fn ansi(color: Color) -> bool {
    match color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// The log level -q/-v ask for, or None to keep the configuration's.
fn flag_level(quiet: u8, verbose: u8) -> Option<LevelFilter> {
    Some(match (quiet, verbose) {
        (0, 0) => return None,
        (0, 1) => LevelFilter::DEBUG,
        (0, _) => LevelFilter::TRACE,
        (1, _) => LevelFilter::WARN,
        (2, _) => LevelFilter::ERROR,
        _ => LevelFilter::OFF,
    })
}

/// Writes a man page for `cmd` and each visible subcommand (`sysconfig-plan` ...).
fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command();
    cmd.build();
    let write = |page: clap::Command, name: &str| -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{name}.1")))?);
        clap_mangen::Man::new(page).render(&mut f)?;
        f.flush()
    };
    write(cmd.clone(), "sysconfig")?;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        // clap names commands with &'static str; a handful of names leak once per run.
        let name: &'static str =
            Box::leak(format!("sysconfig-{}", sub.get_name()).into_boxed_str());
        let page = sub
            .clone()
            .name(name)
            .bin_name(format!("sysconfig {}", sub.get_name()));
        write(page, name)?;
    }
    Ok(())
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

fn init_logging(cfg: &config::Logging, cli: &Cli) -> anyhow::Result<()> {
    let level = flag_level(cli.quiet, cli.verbose).unwrap_or(match cfg.level {
        Level::Error => LevelFilter::ERROR,
        Level::Warn => LevelFilter::WARN,
        Level::Info => LevelFilter::INFO,
        Level::Debug => LevelFilter::DEBUG,
        Level::Trace => LevelFilter::TRACE,
    });
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    match cfg.output {
        // SMF logs standard error to a file: colour codes only for a terminal.
        Output::Console => builder
            .with_ansi(ansi(cli.color))
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
    use std::io::Write as _;
    let cli = Cli::parse();
    if let Some(Command::ManPages { dir }) = &cli.command {
        write_man_pages(dir)
            .with_context(|| format!("cannot write man pages in {}", dir.display()))?;
        return Ok(true);
    }
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(config::DEFAULT_PATH), false),
    };
    let cfg = Config::load(&path, explicit)?;
    init_logging(&cfg.logging, &cli)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mode = match cli.command {
        None => Mode::Run,
        Some(Command::Plan { .. }) => Mode::Plan,
        Some(Command::Apply) => Mode::Apply,
        Some(Command::Show { json: true }) => {
            let v = daemon::show_json(&cfg, &cli.root)?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            )?;
            return Ok(true);
        }
        Some(Command::Show { json: false }) => {
            daemon::show(&cfg, &cli.root, &mut out)?;
            return Ok(true);
        }
        Some(Command::ManPages { .. }) => return Ok(true),
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
    let json = matches!(cli.command, Some(Command::Plan { json: true }));
    let report = if json {
        let r = daemon::run(&cfg, &opts, &runner, &mut std::io::sink())?;
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&r.to_json()).unwrap_or_default()
        )?;
        r
    } else {
        daemon::run(&cfg, &opts, &runner, &mut out)?
    };
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
