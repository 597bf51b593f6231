//! Command-line interface: one file per subcommand; the work is done by the library.

mod args;
mod build;
mod clean;
mod embedded;
mod in_guest;
mod in_zone;
mod inspect;
mod matrix;
mod matrix_emit;
mod output;
mod plan;
mod pull;
mod schema;
mod shell;
mod store;
mod test;
mod validate;
mod vm;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use image_builder::context::Context as Ctx;

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
    Pull(pull::PullArgs),
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

    /// An error that ended a `--json` command, as the object it prints on standard output:
    /// the event `error`, its kind (`bad_input` for exit status 2, `failed` for 1; a build
    /// error's own kind where the build itself failed), and the message.
    pub fn json_error(e: &anyhow::Error, bad_input: bool) -> serde_json::Value {
        if let Some(b) = e.downcast_ref::<image_builder::build::BuildError>() {
            return b.to_json();
        }
        serde_json::json!({
            "event": "error",
            "kind": if bad_input { "bad_input" } else { "failed" },
            "fields": {},
            "message": format!("{e:#}"),
        })
    }

    /// Marks `e` as bad input, keeping its whole message.
    pub fn bad_input(e: impl Into<anyhow::Error>) -> anyhow::Error {
        let e: anyhow::Error = e.into();
        BadInput(format!("{e:#}")).into()
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.command.wants_json();
    cli.output.init_logging("IMAGE_BUILDER_LOG");
    let ctx = Ctx::detect(cli.output.output());
    tracing::debug!(
        "host {}; zfs and zpool time out after {} s",
        ctx.host().name(),
        ctx.zfs_timeout().as_secs()
    );
    let result = dispatch(cli.command, &ctx);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let bad_input = e.is::<exit::BadInput>();
            if json {
                println!("{}", exit::json_error(&e, bad_input));
            }
            if bad_input {
                exit::usage()
            } else {
                exit::failed()
            }
        }
    }
}

impl Command {
    /// Whether the command was asked for `--json` output (its errors are then also one
    /// JSON object on standard output).
    fn wants_json(&self) -> bool {
        match self {
            Command::Build(a) => a.json,
            Command::Inspect(a) => a.json,
            Command::Plan(a) => a.json,
            Command::Validate(a) => a.json,
            _ => false,
        }
    }
}

/// Runs the subcommand with the invocation's one context.
fn dispatch(command: Command, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(a) => build::run(a, ctx),
        Command::Clean(a) => clean::run(a, ctx),
        Command::Pull(a) => pull::run(a, ctx),
        Command::Embedded(a) => embedded::run(a, ctx),
        Command::Inspect(a) => inspect::run(a, ctx),
        Command::Validate(a) => validate::run(a, ctx),
        Command::Plan(a) => plan::run(a, ctx),
        Command::Schema(a) => schema::run(a, ctx),
        Command::Shell(a) => shell::run(a, ctx),
        Command::Vm(a) => vm::run(a, ctx),
        Command::Test(a) => test::run(a, ctx),
        Command::Matrix(a) => matrix::run(a, ctx),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "image-builder", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::ManPages { dir } => output::write_man_pages(Cli::command(), &dir)
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| anyhow::anyhow!("cannot write man pages in {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use clap::CommandFactory;

    use super::Cli;

    /// Every visible long flag of every visible subcommand, by name: (command path, help).
    fn flags() -> BTreeMap<String, Vec<(String, String)>> {
        fn walk(
            cmd: &clap::Command,
            path: &str,
            out: &mut BTreeMap<String, Vec<(String, String)>>,
        ) {
            for a in cmd.get_arguments() {
                if let (Some(long), false) = (a.get_long(), a.is_hide_set()) {
                    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                    out.entry(long.to_string())
                        .or_default()
                        .push((path.to_string(), help));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                walk(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut out = BTreeMap::new();
        walk(&Cli::command(), "image-builder", &mut out);
        out
    }

    /// The one meaning of each flag name whose help is worded differently in different
    /// subcommands, as words its help says wherever it appears. A name a new subcommand
    /// defines again must be added here on purpose, with the meaning it has elsewhere.
    const SHARED: &[(&str, &str)] = &[
        ("append", "kernel command line"),
        ("dataset", "dataset"),
        ("firmware", "firmware"),
        ("image-format", "format of the"),
        ("json", "json"),
        ("kernel", "kernel"),
        ("name", "name"),
        ("net", "network: user"),
        ("no-vm", "never use the embedded zfs guest"),
        ("output-name", "name"),
        ("share", "tag=dir"),
        ("vm", "embedded zfs guest"),
        ("vm-disk-size", "size in gib of a new pool image"),
        ("vm-idle", "idle"),
    ];

    #[test]
    fn a_flag_name_means_one_thing_in_every_subcommand() {
        let mut problems = Vec::new();
        let mut worded = BTreeSet::new();
        for (long, uses) in flags() {
            for (cmd, help) in &uses {
                if help.trim().is_empty() {
                    problems.push(format!("{cmd} --{long}: no help text"));
                }
            }
            // One definition (a shared struct) reads the same everywhere.
            let texts: BTreeSet<&str> = uses.iter().map(|(_, h)| h.as_str()).collect();
            if texts.len() < 2 {
                continue;
            }
            let cmds: BTreeSet<&str> = uses.iter().map(|(c, _)| c.as_str()).collect();
            match SHARED.iter().find(|(n, _)| *n == long) {
                None => problems.push(format!(
                    "--{long} is taken by {cmds:?}: add its one meaning to SHARED"
                )),
                Some((_, words)) => {
                    worded.insert(long.clone());
                    for (cmd, help) in &uses {
                        if !help.to_lowercase().contains(words) {
                            problems
                                .push(format!("{cmd} --{long}: {help:?} does not say {words:?}"));
                        }
                    }
                }
            }
        }
        for (name, _) in SHARED {
            if !worded.contains(*name) {
                problems.push(format!(
                    "SHARED lists --{name}, which reads the same everywhere"
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn short_flags_name_one_long_flag_everywhere() {
        fn walk(cmd: &clap::Command, out: &mut BTreeMap<char, BTreeSet<String>>) {
            for a in cmd.get_arguments() {
                if let (Some(s), Some(l)) = (a.get_short(), a.get_long()) {
                    out.entry(s).or_default().insert(l.to_string());
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, out);
            }
        }
        let mut out = BTreeMap::new();
        walk(&Cli::command(), &mut out);
        let clashes: Vec<_> = out.iter().filter(|(_, l)| l.len() > 1).collect();
        assert!(
            clashes.is_empty(),
            "one short flag for several long ones: {clashes:?}"
        );
        assert_eq!(
            out.get(&'c').map(|l| l.iter().cloned().collect::<Vec<_>>()),
            Some(vec!["cpus".to_string()])
        );
    }
}
