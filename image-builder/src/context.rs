//! What every subcommand of one invocation shares: the host, the runner every command goes
//! through, the ZFS handle with its one time limit, the interrupt handling and the output
//! mode. The CLI makes one [`Context`] and hands it to the subcommand it runs.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use runner::{Runner, SystemRunner};
use zfs::{Zfs, ZfsCli, ZfsTools};

use crate::build::{device, Env};
use crate::host::{Host, Tool};

/// The time limit of every `zfs` and `zpool` command that sets none of its own: a pool
/// whose device fails can block them forever, and nothing may wait that long.
pub const ZFS_TIMEOUT: Duration = Duration::from_secs(1800);

/// How the invocation reports: the log level asked for, colour, and whether standard
/// error is a terminal. Whether a subcommand prints JSON is its own `--json` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// The log level from `-q`/`-v` (`"debug"`, `"warn"` ...), or None when neither was
    /// given.
    pub level: Option<&'static str>,
    /// Log output gets ANSI colour.
    pub ansi: bool,
    /// Standard error is a terminal.
    pub terminal: bool,
}

impl Output {
    /// Whether a subcommand that is not printing JSON shows progress bars.
    pub fn progress_bars(&self, json: bool) -> bool {
        !json && self.terminal
    }
}

/// One invocation's system: made once, borrowed by the subcommand.
pub struct Context<R: Runner = SystemRunner> {
    host: Host,
    runner: Arc<R>,
    zfs_timeout: Duration,
    output: Output,
}

impl Context<SystemRunner> {
    /// The context of a real run: this host, commands spawned for real.
    pub fn detect(output: Output) -> Self {
        Context::new(Host::detect(), SystemRunner::new(), output)
    }
}

impl<R: Runner + 'static> Context<R> {
    pub fn new(host: Host, runner: R, output: Output) -> Self {
        Context {
            host,
            runner: Arc::new(runner),
            zfs_timeout: ZFS_TIMEOUT,
            output,
        }
    }

    pub fn host(&self) -> Host {
        self.host
    }

    pub fn runner(&self) -> &R {
        &self.runner
    }

    pub fn output(&self) -> Output {
        self.output
    }

    /// The time limit every ZFS handle of this context gives `zfs` and `zpool`.
    pub fn zfs_timeout(&self) -> Duration {
        self.zfs_timeout
    }

    /// A ZFS handle over this context's runner, with the time limit. Handles are cheap;
    /// each thread that needs one makes its own.
    pub fn zfs(&self) -> ZfsCli<Arc<R>> {
        ZfsCli::new(
            Arc::clone(&self.runner),
            ZfsTools::new(self.host.tool(Tool::Zfs), self.host.tool(Tool::Zpool)),
        )
        .with_timeout(self.zfs_timeout)
    }

    /// What a matrix worker calls for its own ZFS handle.
    pub fn zfs_factory(&self) -> impl Fn() -> Box<dyn Zfs> + Sync + '_ {
        || Box::new(self.zfs()) as Box<dyn Zfs>
    }

    /// The build environment over `zfs` (a handle from [`Context::zfs`]).
    pub fn env<'a>(&'a self, zfs: &'a dyn Zfs) -> Env<'a> {
        Env {
            host: self.host,
            runner: &*self.runner,
            zfs,
        }
    }

    /// The device environment over `zfs` (a handle from [`Context::zfs`]).
    pub fn system<'a>(&'a self, zfs: &'a dyn Zfs) -> device::System<'a> {
        device::System {
            host: self.host,
            runner: &*self.runner,
            zfs,
        }
    }

    /// Makes SIGINT, SIGTERM and SIGHUP interrupt this invocation (see
    /// [`runner::interrupt`]); a subcommand that cleans up after itself calls this once it
    /// starts work. Installing twice does nothing.
    pub fn handle_interrupts(&self) -> std::io::Result<()> {
        runner::interrupt::install()
    }

    /// Whether the invocation was interrupted: a signal arrived (cleanup clears the
    /// request, but the signal is still counted) or an interrupt is requested.
    pub fn interrupted(&self) -> bool {
        runner::interrupt::signals() > 0 || runner::interrupt::flag().load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::BuildOptions;
    use crate::matrix::{self, MatrixEnv};
    use runner::Recorder;

    const OUTPUT: Output = Output {
        level: None,
        ansi: false,
        terminal: false,
    };

    /// A context whose runner answers `zfs list` of each of `present` with its name: what
    /// `zfs list -H -p -o name -t all NAME` prints for a dataset that exists (zfs(8),
    /// "zfs list"; -H: no header, tab-separated).
    fn recorded(host: Host, present: &[&str]) -> Context<Recorder> {
        let rec = Recorder::new();
        for name in present {
            rec.on(
                &format!("{} list -H -p -o name -t all {name}", host.tool(Tool::Zfs)),
                runner::Output::ok(format!("{name}\n")),
            );
        }
        Context::new(host, rec, OUTPUT)
    }

    #[test]
    fn the_zfs_handle_gives_every_command_the_time_limit() {
        for host in [Host::Illumos, Host::Linux] {
            let ctx = recorded(host, &["rpool/ib"]);
            assert!(ctx.zfs().exists("rpool/ib").unwrap());
            let calls = ctx.runner().calls();
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0].get_timeout(), Some(ZFS_TIMEOUT));
            assert_eq!(ctx.zfs_timeout(), ZFS_TIMEOUT);
        }
    }

    #[test]
    fn matrix_workers_get_the_same_time_limit_as_build() {
        let ctx = recorded(Host::Illumos, &["rpool/ib", "rpool/ib/output", "rpool/ib"]);
        let dir = tempfile::tempdir().unwrap();
        let opts = BuildOptions::new("rpool/ib", dir.path());
        let factory = ctx.zfs_factory();
        let env = MatrixEnv {
            host: ctx.host(),
            runner: ctx.runner(),
            zfs: &factory,
            opts: &opts,
            log_dir: &dir.path().join("logs"),
            epoch: std::time::Instant::now(),
        };
        // No chains: the matrix only makes sure its output dataset exists.
        let reports = matrix::run(Vec::new(), 2, &env).unwrap();
        assert!(reports.is_empty());
        assert_eq!(
            ctx.runner().lines(),
            [
                "/sbin/zfs list -H -p -o name -t all rpool/ib",
                "/sbin/zfs list -H -p -o name -t all rpool/ib/output"
            ]
        );
        for c in ctx.runner().calls() {
            assert_eq!(c.get_timeout(), Some(ZFS_TIMEOUT), "{}", c.display());
        }
        // The build's handle: the same limit.
        let zfs = ctx.zfs();
        ctx.runner().clear();
        assert!(ctx.env(&zfs).zfs.exists("rpool/ib").unwrap());
        assert_eq!(ctx.runner().calls()[0].get_timeout(), Some(ZFS_TIMEOUT));
        ctx.runner().assert_all_rules_used();
    }

    #[test]
    fn progress_bars_only_on_a_terminal_without_json() {
        let tty = Output {
            terminal: true,
            ..OUTPUT
        };
        assert!(tty.progress_bars(false));
        assert!(!tty.progress_bars(true));
        assert!(!OUTPUT.progress_bars(false));
    }
}
