//! What every command shares about its output: the log level (`-q`/`-v`), colour
//! (`--color`), shell completions and man pages.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{ArgAction, Args, ValueEnum};
use image_builder::context::Output;

/// A filter directive keeping the HTTP client's byte dump out of the log.
const WIRE_DUMP_OFF: &str = "ureq_proto=debug";

/// The flags every subcommand takes.
#[derive(Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// More log output: -v adds debug messages, -vv traces.
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less log output: -q warnings and errors only, -qq errors only, -qqq nothing.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub quiet: u8,
    /// Colour in log output: auto (only when standard error is a terminal and NO_COLOR is
    /// not set), always or never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Color::Auto, global = true)]
    pub color: Color,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Auto,
    Always,
    Never,
}

impl OutputArgs {
    /// The log level the flags ask for, or None when none was given.
    pub fn level(&self) -> Option<&'static str> {
        Some(match (self.quiet, self.verbose) {
            (0, 0) => return None,
            (0, 1) => "debug",
            (0, _) => "trace",
            (1, _) => "warn",
            (2, _) => "error",
            _ => "off",
        })
    }

    /// Whether log output gets ANSI colour, given whether standard error is a terminal
    /// and the value of NO_COLOR (set and not empty means no colour; see no-color.org).
    pub fn ansi(&self, stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => stderr_is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }

    /// The output mode of the invocation, for its context.
    pub fn output(&self) -> Output {
        let terminal = std::io::stderr().is_terminal();
        Output {
            level: self.level(),
            ansi: self.ansi(terminal, std::env::var_os("NO_COLOR").as_deref()),
            terminal,
        }
    }

    /// Installs the log subscriber: -q/-v when given, else the filter in `env_var`
    /// (tracing-subscriber directives such as `image_builder=debug`), else info.
    /// The HTTP client's wire dump (`ureq_proto` traces every byte sent, Authorization
    /// headers included) stays off unless the filter names it.
    pub fn init_logging(&self, env_var: &str) {
        let directives = match self.level() {
            Some(l) => l.to_string(),
            None => std::env::var(env_var)
                .ok()
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| "info".into()),
        };
        let filter = if directives.contains("ureq_proto") {
            tracing_subscriber::EnvFilter::try_new(&directives)
        } else {
            tracing_subscriber::EnvFilter::try_new(format!("{directives},{WIRE_DUMP_OFF}"))
        }
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{WIRE_DUMP_OFF}")));
        let ansi = self.ansi(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        );
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .without_time()
            .init();
    }
}

/// Writes a man page for `cmd` (named `name`) and for each of its visible subcommands
/// (`name-sub`, recursively) into `dir`; returns the files written.
pub fn write_man_pages(mut cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    cmd.build();
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    pages(&cmd, &name, &name, dir, &mut out)?;
    Ok(out)
}

/// `name` is the page's (`image-builder-build`), `bin` how it is typed (`image-builder build`).
fn pages(
    cmd: &clap::Command,
    name: &str,
    bin: &str,
    dir: &Path,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    // clap names commands with &'static str unless its `string` feature is on; a page is
    // written once per run, so leaking the few names is harmless.
    let page_name: &'static str = Box::leak(name.to_string().into_boxed_str());
    let page = cmd.clone().name(page_name).bin_name(bin);
    let path = dir.join(format!("{name}.1"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    clap_mangen::Man::new(page).render(&mut f)?;
    f.flush()?;
    out.push(path);
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let sub_name = sub.get_name();
        pages(
            sub,
            &format!("{name}-{sub_name}"),
            &format!("{bin} {sub_name}"),
            dir,
            out,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn args(color: Color) -> OutputArgs {
        OutputArgs {
            verbose: 0,
            quiet: 0,
            color,
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color_unless_asked() {
        let auto = args(Color::Auto);
        assert!(auto.ansi(true, None));
        assert!(
            !auto.ansi(false, None),
            "a redirected log gets no ANSI codes"
        );
        assert!(!auto.ansi(true, Some(OsStr::new("1"))));
        assert!(
            auto.ansi(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(args(Color::Always).ansi(false, Some(OsStr::new("1"))));
        assert!(!args(Color::Never).ansi(true, None));
    }

    #[test]
    fn quiet_and_verbose_counts_pick_the_level() {
        let l = |quiet, verbose| {
            OutputArgs {
                verbose,
                quiet,
                color: Color::Auto,
            }
            .level()
        };
        assert_eq!(l(0, 0), None);
        assert_eq!(l(0, 1), Some("debug"));
        assert_eq!(l(0, 2), Some("trace"));
        assert_eq!(l(1, 0), Some("warn"));
        assert_eq!(l(2, 0), Some("error"));
        assert_eq!(l(3, 0), Some("off"));
    }
}
