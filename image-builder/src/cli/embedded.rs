//! `image-builder embedded`: the warm embedded ZFS guests of this user (Linux hosts
//! without /dev/zfs): what runs, stopping them, running a command in one; and `serve`, the
//! server a warm guest runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use image_builder::context::Context as Ctx;
use image_builder::embedded::{self, warm};
use zfs::Zfs;

use super::in_guest::{self, GuestExit};

/// The warm embedded ZFS guests: `build`, `matrix` and `plan -d` on a Linux host without
/// /dev/zfs leave one running per pool, stopped after an idle time.
#[derive(Args, Debug)]
pub struct EmbeddedArgs {
    #[command(subcommand)]
    command: EmbeddedCommand,
}

#[derive(Subcommand, Debug)]
enum EmbeddedCommand {
    /// Say which warm guests run, since when, and what runs in them.
    Status,
    /// Stop the warm guest of POOL (every one without it), after the command running in
    /// it ends.
    Stop {
        /// The pool (the first component of -d).
        pool: Option<String>,
    },
    /// Run a command in the warm guest of POOL (started if none runs), in the current
    /// directory, with its output and exit status.
    Exec {
        /// The pool (the first component of -d).
        #[arg(long)]
        pool: String,
        /// Stop the guest after it has been idle this many seconds (default
        /// $IMAGE_BUILDER_VM_IDLE or 300).
        #[arg(long, value_name = "SECS")]
        vm_idle: Option<u64>,
        /// Size in GiB of a new pool image (sparse).
        #[arg(long, value_name = "GIB", default_value_t = 32)]
        vm_disk_size: u64,
        /// Host directories the command writes (repeatable).
        #[arg(long, value_name = "DIR")]
        rw: Vec<PathBuf>,
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// In the guest: serve commands on the control port (started by the first command).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        pool: String,
        #[arg(long, value_name = "SECS")]
        idle: u64,
    },
}

pub fn run(a: EmbeddedArgs, ctx: &Ctx) -> Result<ExitCode> {
    match a.command {
        EmbeddedCommand::Status => status(),
        EmbeddedCommand::Stop { pool } => {
            let guests = match pool {
                Some(p) => vec![warm::GuestDir::new(&p)],
                None => warm::GuestDir::all(),
            };
            for g in guests {
                if g.stop()? {
                    eprintln!("embedded guest {}: stopped", g.pool);
                } else {
                    eprintln!("embedded guest {}: not running", g.pool);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EmbeddedCommand::Exec {
            pool,
            vm_idle,
            vm_disk_size,
            rw,
            command,
        } => {
            ctx.handle_interrupts()?;
            let spec = in_guest::start_spec(
                ctx.runner(),
                &pool,
                vm_disk_size,
                in_guest::idle_time(vm_idle)?,
            )?;
            let rw = rw
                .iter()
                .map(|d| {
                    std::fs::create_dir_all(d)?;
                    d.canonicalize()
                })
                .collect::<std::io::Result<Vec<_>>>()?;
            Ok(match in_guest::run_warm(&spec, &pool, command, rw)? {
                GuestExit::Finished(c) => in_guest::exit_code(c),
                GuestExit::Failed(code) => code,
            })
        }
        EmbeddedCommand::Serve { pool, idle } => serve(&pool, idle, ctx),
    }
}

fn status() -> Result<ExitCode> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut any = false;
    for g in warm::GuestDir::all() {
        let Some(qemu) = g.qemu_pid() else {
            continue;
        };
        any = true;
        let info = g.info();
        let mut line = format!("{}: running (qemu pid {qemu}", g.pool);
        if let Some(i) = &info {
            line += &format!(
                ", up {} s, pool image {}",
                now.saturating_sub(i.started),
                i.disk.display()
            );
        }
        line += ")";
        println!("{line}");
        match (g.busy(), g.current()) {
            (true, Some(c)) => println!(
                "  running: {} (pid {}, for {} s)",
                c.argv.join(" "),
                c.pid,
                now.saturating_sub(c.since)
            ),
            (true, None) => println!("  busy (a command is starting or stopping it)"),
            (false, _) => {
                if let Some(i) = &info {
                    println!(
                        "  idle for {} s; stops after {} s idle",
                        now.saturating_sub(i.last_used),
                        i.idle_secs
                    );
                }
            }
        }
    }
    if !any {
        println!("no warm embedded guest runs");
    }
    Ok(ExitCode::SUCCESS)
}

/// The guest's server: commands until idle or stopped, then the pool is exported.
fn serve(pool: &str, idle: u64, ctx: &Ctx) -> Result<ExitCode> {
    let port = warm::open_port()?;
    // What the harness gave this command, every command gets too.
    let mut env: Vec<(String, String)> = ["HOME", "TERM", "ZFS_VM_GUEST", "ZFS_VM_DISKS"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    env.push((embedded::WARM_ENV.into(), "1".into()));
    let opts = warm::ServeOptions {
        idle: Duration::from_secs(idle),
        reconnect: true,
        beat: Duration::from_secs(2),
        drop_caches: true,
        host_rw: Some(PathBuf::from(warm::HOST_RW)),
        env,
    };
    tracing::info!("embedded guest {pool}: serving");
    let end = warm::serve(port, &opts, ctx.runner());
    tracing::info!(
        "embedded guest {pool}: {}; exporting the pool",
        end.describe()
    );
    let zfs = ctx.zfs();
    if zfs.exists(pool).unwrap_or(false) {
        if let Err(e) = zfs.pool_export(pool, false) {
            tracing::error!("cannot export {pool}: {e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
