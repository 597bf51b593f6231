//! `p9sync`: mirror or list a 9P2000.L share from a vio9p device, TCP or Unix socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use p9sync::{Client, DeviceTransport, StreamTransport, Transport};

#[derive(Parser)]
#[command(
    name = "p9sync",
    version,
    about = "Userland 9P2000.L client: mirror a 9P share into a local directory",
    after_help = EXIT_HELP
)]
struct Cli {
    /// More log output: -v debug, -vv trace.
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "quiet")]
    verbose: u8,
    /// Less log output: -q warnings and errors only, -qq errors only, -qqq nothing.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    quiet: u8,
    /// Colour in log output: auto (only when standard error is a terminal and NO_COLOR is
    /// not set), always or never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Color::Auto, global = true)]
    color: Color,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Color {
    Auto,
    Always,
    Never,
}

/// The exit statuses (docs/cli.md has the same table for every program).
const EXIT_HELP: &str = "Exit status:\n  0    success\n  1    the work failed (the server, the transport, a local file)\n  2    bad usage or input that can be fixed (flags, a remote path with ..)";

#[derive(Subcommand)]
enum Cmd {
    /// Mirror a remote directory into a local one, copying only what changed.
    #[command(after_help = EXIT_HELP)]
    Sync {
        #[command(flatten)]
        conn: Conn,
        /// Directory inside the export to mirror (e.g. target/release).
        #[arg(long, default_value = "")]
        remote: String,
        /// Local destination directory (created if missing).
        #[arg(long)]
        dest: PathBuf,
        /// Keep local files that no longer exist on the server.
        #[arg(long)]
        no_delete: bool,
        /// Reads kept in flight per file (1..=8; 1 is strictly one at a time).
        #[arg(long, default_value_t = 4)]
        read_ahead: usize,
    },
    /// Write the man pages of p9sync and its subcommands into DIR.
    #[command(hide = true)]
    ManPages { dir: PathBuf },
    /// List a remote directory.
    #[command(after_help = EXIT_HELP)]
    Ls {
        #[command(flatten)]
        conn: Conn,
        /// Directory inside the export to list.
        #[arg(default_value = "")]
        remote: String,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false, id = "transport")]
struct Where {
    /// vio9p device, e.g. /dev/9p/repo (messages limited to 8192 bytes).
    #[arg(long, group = "transport")]
    dev: Option<PathBuf>,
    /// TCP server address, e.g. 127.0.0.1:564.
    #[arg(long, group = "transport")]
    tcp: Option<String>,
    /// Unix socket path of a 9P server.
    #[arg(long, group = "transport")]
    unix: Option<PathBuf>,
}

#[derive(Args)]
struct Conn {
    #[command(flatten)]
    at: Where,
    /// Export to attach to (server-specific; diod wants the exported path).
    #[arg(long, default_value = "")]
    aname: String,
    /// User name sent in Tattach.
    #[arg(long, default_value = "root")]
    uname: String,
    /// Numeric uid sent in Tattach (defaults to the caller's uid).
    #[arg(long)]
    uid: Option<u32>,
    /// Largest message to propose; the server and the device may lower it.
    #[arg(long, default_value_t = 262_144)]
    msize: u32,
    /// Seconds to wait for any single reply before giving up.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

fn connect(c: &Conn) -> Result<(Client<Box<dyn Transport>>, p9sync::Fid)> {
    let timeout = Duration::from_secs(c.timeout.max(1));
    let t: Box<dyn Transport> = if let Some(d) = &c.at.dev {
        Box::new(DeviceTransport::open(d, timeout)?)
    } else if let Some(a) = &c.at.tcp {
        Box::new(
            StreamTransport::tcp(a.as_str(), timeout)
                .with_context(|| format!("connecting to {a}"))?,
        )
    } else if let Some(u) = &c.at.unix {
        Box::new(StreamTransport::unix(u, timeout)?)
    } else {
        anyhow::bail!("give one of --dev, --tcp or --unix");
    };
    let mut client = Client::connect(t, c.msize).context("9P version negotiation")?;
    let uid = c.uid.unwrap_or_else(|| rustix::process::getuid().as_raw());
    let root = client
        .attach(&c.uname, &c.aname, uid)
        .with_context(|| format!("attaching to export {:?}", c.aname))?;
    tracing::debug!(msize = client.msize(), "attached");
    Ok((client, root))
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A remote path that leaves the export is the caller's to fix.
            let bad_path = matches!(
                e.downcast_ref::<p9sync::SyncError>(),
                Some(p9sync::SyncError::BadRemotePath(_))
            );
            ExitCode::from(if bad_path { 2 } else { 1 })
        }
    }
}

/// Writes a man page for p9sync and each visible subcommand (`p9sync-sync` ...).
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
    write(cmd.clone(), "p9sync")?;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        // clap names commands with &'static str; a handful of names leak once per run.
        let name: &'static str = Box::leak(format!("p9sync-{}", sub.get_name()).into_boxed_str());
        let page = sub
            .clone()
            .name(name)
            .bin_name(format!("p9sync {}", sub.get_name()));
        write(page, name)?;
    }
    Ok(())
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    // -q/-v set the level; without them RUST_LOG directives apply, over p9sync=info.
    let filter = match (cli.quiet, cli.verbose) {
        (0, 0) => {
            tracing_subscriber::EnvFilter::from_default_env().add_directive("p9sync=info".parse()?)
        }
        (0, 1) => tracing_subscriber::EnvFilter::new("debug"),
        (0, _) => tracing_subscriber::EnvFilter::new("trace"),
        (1, _) => tracing_subscriber::EnvFilter::new("warn"),
        (2, _) => tracing_subscriber::EnvFilter::new("error"),
        _ => tracing_subscriber::EnvFilter::new("off"),
    };
    let ansi = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    match cli.cmd {
        Cmd::ManPages { dir } => {
            write_man_pages(&dir)
                .with_context(|| format!("cannot write man pages in {}", dir.display()))?;
        }
        Cmd::Sync {
            conn,
            remote,
            dest,
            no_delete,
            read_ahead,
        } => {
            let t0 = Instant::now();
            let (mut c, root) = connect(&conn)?;
            let mut opts = p9sync::Options::new(remote, dest);
            opts.delete = !no_delete;
            opts.read_ahead = read_ahead;
            let r = p9sync::sync(&mut c, root, &opts)?;
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "copied {} files ({} bytes), {} links, {} unchanged, {} deleted, {} names refused in {:.2}s ({:.1} MB/s, msize {})",
                r.copied.len(),
                r.bytes_copied,
                r.links.len(),
                r.unchanged,
                r.deleted.len(),
                r.rejected.len(),
                secs,
                r.bytes_copied as f64 / 1e6 / secs.max(1e-9),
                c.msize()
            );
            c.clunk(root)?;
        }
        Cmd::Ls { conn, remote } => {
            let (mut c, root) = connect(&conn)?;
            let parts = p9sync::sync::remote_components(&remote)?;
            let dir = c.walk(root, &parts)?;
            let mut entries = c.list(dir, 1_000_000)?;
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            for e in entries {
                let name = String::from_utf8_lossy(&e.name);
                let kind = match e.dtype {
                    4 => "dir ",
                    8 => "file",
                    10 => "link",
                    _ => "?   ",
                };
                println!("{kind} {name}");
            }
            c.clunk(dir)?;
            c.clunk(root)?;
        }
    }
    Ok(())
}
