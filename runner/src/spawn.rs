//! Long-lived processes (a VM, a server) that run beside the caller instead of to completion.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};

use crate::{Cmd, RunError, SystemRunner};

/// Where a spawned process's standard output or error goes.
#[derive(Debug, Clone, Default)]
pub enum Sink {
    #[default]
    Null,
    Inherit,
    /// Created (truncated) before the process starts.
    File(PathBuf),
    /// A pipe the caller reads: [`Spawned::take_stdout`], [`Spawned::take_stderr`].
    Pipe,
}

impl Sink {
    fn stdio(&self, cmd: &str) -> Result<Stdio, RunError> {
        Ok(match self {
            Sink::Null => Stdio::null(),
            Sink::Inherit => Stdio::inherit(),
            Sink::File(p) => Stdio::from(File::create(p).map_err(|source| RunError::Io {
                cmd: cmd.to_string(),
                source,
            })?),
            Sink::Pipe => Stdio::piped(),
        })
    }
}

/// A running process in its own process group.
///
/// Dropping it stops the whole group (SIGTERM, then SIGKILL after a grace period) and
/// reaps the process, so a caller that returns early or panics leaves nothing running.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    line: String,
    status: Option<ExitStatus>,
    grace: Duration,
}

impl SystemRunner {
    /// Starts `cmd` with the same environment rules as [`crate::Runner::output`], standard
    /// input from /dev/null, and its output sent to `stdout` and `stderr`.
    pub fn spawn(&self, cmd: &Cmd, stdout: Sink, stderr: Sink) -> Result<Spawned, RunError> {
        let line = cmd.display();
        tracing::debug!(tag = cmd.get_tag().unwrap_or(""), "spawn: {line}");
        let mut c = Command::new(cmd.program());
        c.args(cmd.get_args())
            .env_clear()
            .envs(self.env_pairs())
            .envs(cmd.get_env().iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout.stdio(&line)?)
            .stderr(stderr.stdio(&line)?)
            .process_group(0);
        if let Some(dir) = cmd.get_cwd() {
            c.current_dir(dir);
        }
        let child = c.spawn().map_err(|source| RunError::Spawn {
            cmd: line.clone(),
            source,
        })?;
        Ok(Spawned {
            child,
            line,
            status: None,
            grace: Duration::from_secs(3),
        })
    }
}

impl Spawned {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The read end of a [`Sink::Pipe`] standard output (once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The read end of a [`Sink::Pipe`] standard error (once).
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// The command line, for messages.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// How long [`Spawned::stop`] and drop wait after SIGTERM before SIGKILL.
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// The exit status if the process has ended (it is reaped then).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, RunError> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(|e| self.io(e))?;
        }
        Ok(self.status)
    }

    /// Waits up to `limit` for the process to end; `None` if it is still running.
    pub fn wait_timeout(&mut self, limit: Duration) -> Result<Option<ExitStatus>, RunError> {
        let start = Instant::now();
        let mut nap = Duration::from_millis(1);
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if start.elapsed() >= limit {
                return Ok(None);
            }
            thread::sleep(nap.min(limit.saturating_sub(start.elapsed())));
            nap = (nap * 2).min(Duration::from_millis(50));
        }
    }

    /// Waits for the process to end.
    pub fn wait(&mut self) -> Result<ExitStatus, RunError> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = self.child.wait().map_err(|e| self.io(e))?;
        self.status = Some(s);
        Ok(s)
    }

    /// Stops the process group: SIGTERM, then SIGKILL if it outlives the grace period.
    pub fn stop(&mut self) -> Result<ExitStatus, RunError> {
        if let Some(s) = self.try_wait()? {
            self.kill_group(Signal::KILL);
            return Ok(s);
        }
        self.kill_group(Signal::TERM);
        if let Some(s) = self.wait_timeout(self.grace)? {
            // Children the process left behind in its group go too.
            self.kill_group(Signal::KILL);
            return Ok(s);
        }
        self.kill_group(Signal::KILL);
        self.wait()
    }

    fn kill_group(&self, sig: Signal) {
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            // ESRCH only means the group is already gone.
            let _ = kill_process_group(pid, sig);
        }
    }

    fn io(&self, source: std::io::Error) -> RunError {
        RunError::Io {
            cmd: self.line.clone(),
            source,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!("cannot stop `{}`: {e}", self.line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry; a reaped or never-existing one does not.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    }

    fn sh(script: &str) -> Cmd {
        Cmd::new("/bin/sh").args(["-c", script])
    }

    #[test]
    fn exit_status_is_reported() {
        let mut p = SystemRunner::new()
            .spawn(&sh("exit 7"), Sink::Null, Sink::Null)
            .unwrap();
        let s = p.wait_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(s.code(), Some(7));
        assert_eq!(p.try_wait().unwrap().unwrap().code(), Some(7));
    }

    #[test]
    fn output_goes_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut p = SystemRunner::new()
            .spawn(
                &sh("echo to-file; echo err >&2"),
                Sink::File(out.clone()),
                Sink::Null,
            )
            .unwrap();
        p.wait().unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), "to-file\n");
    }

    #[test]
    fn drop_stops_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // The grandchild ignores nothing but is in the same group, so it must die too.
        let p = SystemRunner::new()
            .spawn(
                &sh(&format!(
                    "sleep 60 & echo $! > {0}.tmp; echo $$ >> {0}.tmp; mv {0}.tmp {0}; wait",
                    pids.display()
                )),
                Sink::Null,
                Sink::Null,
            )
            .unwrap();
        let start = Instant::now();
        while !pids.exists() && start.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(10));
        }
        let listed: Vec<u32> = std::fs::read_to_string(&pids)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|&pid| alive(pid)));
        drop(p);
        let start = Instant::now();
        while listed.iter().any(|&pid| alive(pid)) && start.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(10));
        }
        for pid in listed {
            assert!(!alive(pid), "process {pid} survived the drop");
        }
    }

    #[test]
    fn stop_escalates_to_kill_after_the_grace_period() {
        let mut p = SystemRunner::new()
            .spawn(
                &sh("trap '' TERM; echo ready; while :; do sleep 1; done"),
                Sink::Null,
                Sink::Null,
            )
            .unwrap();
        p.set_grace(Duration::from_millis(300));
        // Give the shell time to install its trap.
        thread::sleep(Duration::from_millis(200));
        let s = p.stop().unwrap();
        assert_eq!(s.code(), None, "expected death by signal, got {s:?}");
        assert!(!alive(p.id()));
    }

    #[test]
    fn piped_output_is_read_by_the_caller() {
        use std::io::Read;
        let mut p = SystemRunner::new()
            .spawn(&sh("echo to-pipe; echo err >&2"), Sink::Pipe, Sink::Pipe)
            .unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        p.take_stdout().unwrap().read_to_string(&mut out).unwrap();
        p.take_stderr().unwrap().read_to_string(&mut err).unwrap();
        assert!(p.take_stdout().is_none());
        p.wait().unwrap();
        assert_eq!((out.as_str(), err.as_str()), ("to-pipe\n", "err\n"));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = SystemRunner::new()
            .spawn(&Cmd::new("/nonexistent/vmm"), Sink::Null, Sink::Null)
            .unwrap_err();
        assert!(matches!(err, RunError::Spawn { .. }), "{err}");
    }
}
