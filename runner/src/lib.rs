//! The one place where external commands start.
//!
//! Every `zfs`, `zpool`, `pkg`, `svccfg`, `ipadm` ... invocation in the workspace is a
//! [`Cmd`] handed to a [`Runner`]. [`SystemRunner`] spawns it for real; [`Recorder`] keeps
//! the exact command lines and answers with scripted outputs, so tests can pin the illumos
//! command lines on any host.

mod cmd;
pub mod interrupt;
mod recorder;
mod spawn;
mod system;

pub use cmd::{Cmd, Output};
pub use recorder::{Recorder, Reply};
pub use spawn::{Sink, Spawned};
pub use system::SystemRunner;

use std::time::Duration;

/// What can go wrong when running a command.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed ({status}){}", tail_suffix(.stderr_tail))]
    Failed {
        cmd: String,
        status: String,
        stderr_tail: String,
    },
    #[error("`{cmd}` did not finish within {}s and was killed", .after.as_secs())]
    Timeout { cmd: String, after: Duration },
    #[error("`{cmd}` was interrupted")]
    Interrupted { cmd: String },
    #[error("i/o error while running `{cmd}`: {source}")]
    Io {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

/// Runs commands. Implementations must be shareable between threads.
pub trait Runner: Send + Sync {
    /// Runs `cmd` to completion and returns its output whatever its exit status.
    fn output(&self, cmd: &Cmd) -> Result<Output, RunError>;

    /// Runs `cmd` and fails unless it exits 0.
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let out = self.output(cmd)?;
        if out.success() {
            Ok(out)
        } else {
            Err(RunError::Failed {
                cmd: cmd.display(),
                status: out.status_text(),
                stderr_tail: out.stderr_tail(8),
            })
        }
    }
}

impl<R: Runner + ?Sized> Runner for &R {
    fn output(&self, cmd: &Cmd) -> Result<Output, RunError> {
        (**self).output(cmd)
    }
}

impl<R: Runner + ?Sized> Runner for std::sync::Arc<R> {
    fn output(&self, cmd: &Cmd) -> Result<Output, RunError> {
        (**self).output(cmd)
    }
}
