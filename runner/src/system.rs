use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Cmd, Output, RunError, Runner};

/// Spawns real processes.
///
/// Each command gets a cleared environment (a fixed `PATH` and a UTF-8 C locale, so tool
/// output parses the same everywhere, plus whatever the [`Cmd`] adds), standard input from
/// /dev/null unless given, its own process group (so a timeout kills its children too), and
/// its output logged line by line under the command's tag.
#[derive(Debug, Clone)]
pub struct SystemRunner {
    base_env: Vec<(OsString, OsString)>,
    default_timeout: Option<Duration>,
}

impl Default for SystemRunner {
    fn default() -> Self {
        SystemRunner {
            base_env: vec![
                ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("LC_ALL".into(), "C.UTF-8".into()),
            ],
            default_timeout: None,
        }
    }
}

impl SystemRunner {
    pub fn new() -> Self {
        Self::default()
    }

    /// A timeout for commands that do not set their own.
    pub fn with_default_timeout(mut self, t: Duration) -> Self {
        self.default_timeout = Some(t);
        self
    }

    pub(crate) fn env_pairs(&self) -> impl Iterator<Item = (&OsString, &OsString)> {
        self.base_env.iter().map(|(k, v)| (k, v))
    }

    /// Adds (or replaces) a variable in the base environment every command sees.
    pub fn with_base_env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        let k = k.into();
        self.base_env.retain(|(key, _)| *key != k);
        self.base_env.push((k, v.into()));
        self
    }
}

impl Runner for SystemRunner {
    fn output(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let line = cmd.display();
        if crate::interrupt::stops_commands() {
            return Err(RunError::Interrupted { cmd: line });
        }
        let tag = cmd.get_tag().unwrap_or("").to_string();
        tracing::debug!(tag = %tag, "run: {line}");
        let started = Instant::now();
        let mut c = Command::new(cmd.program());
        c.args(cmd.get_args())
            .env_clear()
            .envs(self.base_env.iter().map(|(k, v)| (k, v)))
            .envs(cmd.get_env().iter().map(|(k, v)| (k, v)))
            .stdin(if cmd.get_stdin().is_some() {
                Stdio::piped()
            } else if cmd.is_interactive() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        if !cmd.is_interactive() {
            c.process_group(0);
        }
        if cmd.is_passthrough() {
            c.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        } else {
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        if let Some(path) = cmd.get_stdout_file() {
            let file = std::fs::File::create(path).map_err(|source| RunError::Io {
                cmd: line.clone(),
                source,
            })?;
            c.stdout(Stdio::from(file));
        }
        if let Some(path) = cmd.get_stdin_file() {
            let file = std::fs::File::open(path).map_err(|source| RunError::Io {
                cmd: line.clone(),
                source,
            })?;
            c.stdin(Stdio::from(file));
        }
        if let Some(dir) = cmd.get_cwd() {
            c.current_dir(dir);
        }
        let mut child = c.spawn().map_err(|source| RunError::Spawn {
            cmd: line.clone(),
            source,
        })?;

        let stdin_writer = match (child.stdin.take(), cmd.get_stdin()) {
            (Some(mut pipe), Some(bytes)) => {
                let bytes = bytes.to_vec();
                // A broken pipe only means the command did not read everything.
                Some(thread::spawn(move || {
                    let _ = pipe.write_all(&bytes);
                }))
            }
            _ => None,
        };
        let out = collect(child.stdout.take(), tag.clone(), false);
        let err = collect(child.stderr.take(), tag, true);

        let timeout = cmd.get_timeout().or(self.default_timeout);
        let status = wait(&mut child, timeout, !cmd.is_interactive()).map_err(|e| match e {
            WaitError::Io(source) => RunError::Io {
                cmd: line.clone(),
                source,
            },
            WaitError::Timeout(after) => RunError::Timeout {
                cmd: line.clone(),
                after,
            },
            WaitError::Interrupted => RunError::Interrupted { cmd: line.clone() },
        })?;
        if let Some(w) = stdin_writer {
            let _ = w.join();
        }
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        // With the start line, what a profile of a build needs: each command's wall time.
        tracing::debug!(
            "ran in {:.3} s ({}): {line}",
            started.elapsed().as_secs_f64(),
            status
                .code()
                .map_or("killed".to_string(), |c| format!("exit {c}"))
        );
        Ok(Output {
            code: status.code(),
            stdout,
            stderr,
        })
    }
}

/// Reads a pipe to its end, logging each line, and returns everything read.
fn collect<R: Read + Send + 'static>(
    pipe: Option<R>,
    tag: String,
    is_stderr: bool,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let Some(pipe) = pipe else { return all };
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end();
                    // A failing command's stderr travels in its error; a probe's expected
                    // complaints ("dataset does not exist") are not the user's business.
                    if is_stderr {
                        tracing::debug!(tag = %tag, "stderr: {text}");
                    } else {
                        tracing::debug!(tag = %tag, "{text}");
                    }
                    all.extend_from_slice(&line);
                }
            }
        }
        all
    })
}

enum WaitError {
    Io(std::io::Error),
    Timeout(Duration),
    Interrupted,
}

/// The longest sleep between two looks at a running command.
const MAX_NAP: Duration = Duration::from_millis(5);

/// Waits for `child`; `own_group` says whether it leads a process group of its own (an
/// interactive command is in ours, and only it is stopped).
fn wait(
    child: &mut Child,
    timeout: Option<Duration>,
    own_group: bool,
) -> Result<std::process::ExitStatus, WaitError> {
    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().map_err(WaitError::Io)? {
            return Ok(status);
        }
        if crate::interrupt::stops_commands() {
            if own_group {
                kill_group(child);
            } else {
                let _ = child.kill();
            }
            let _ = child.wait();
            return Err(WaitError::Interrupted);
        }
        if let Some(limit) = timeout.filter(|l| start.elapsed() >= *l) {
            if own_group {
                kill_group(child);
            } else {
                let _ = child.kill();
            }
            let _ = child.wait();
            return Err(WaitError::Timeout(limit));
        }
        thread::sleep(nap);
        // At most a few milliseconds late: a build runs hundreds of short zfs and zpool
        // commands, and a 50 ms nap cost each of them 25 ms on average.
        nap = (nap * 2).min(MAX_NAP);
    }
}

/// Stops the command's whole process group: SIGTERM first, so a command with cleanup of its
/// own (a VM launcher removing its run directory) can do it, then SIGKILL after a grace.
fn kill_group(child: &mut Child) {
    use rustix::process::{kill_process_group, Pid, Signal};
    let pid = Pid::from_child(child);
    let _ = kill_process_group(pid, Signal::TERM);
    let deadline = Instant::now() + KILL_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            // The leader is gone; anything left in its group gets no more grace.
            let _ = kill_process_group(pid, Signal::KILL);
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = kill_process_group(pid, Signal::KILL);
    let _ = child.kill();
}

/// How long a stopped command has to exit after SIGTERM.
const KILL_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interactive_command_stays_in_this_process_group_and_others_get_their_own() {
        if !std::path::Path::new("/bin/ps").exists() {
            println!("skipped: /bin/ps is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ours = rustix::process::getpgrp()
            .as_raw_nonzero()
            .get()
            .to_string();
        let pgid_of = |interactive: bool| {
            let path = dir.path().join("pgid");
            let cmd = Cmd::new("/bin/sh").args(["-c", "ps -o pgid= -p $$"]);
            let cmd = if interactive { cmd.interactive() } else { cmd };
            let out = SystemRunner::new().output(&cmd.stdout_to(&path)).unwrap();
            assert!(out.success(), "{}", out.status_text());
            std::fs::read_to_string(&path).unwrap().trim().to_string()
        };
        assert_eq!(pgid_of(true), ours);
        assert_ne!(pgid_of(false), ours);
    }

    #[test]
    fn an_interactive_command_reads_this_process_standard_input() {
        const OUT: &str = "RUNNER_TEST_INTERACTIVE_OUT";
        if let Some(path) = std::env::var_os(OUT) {
            // The test binary run again below, with a pipe as its standard input.
            let cmd = Cmd::new("/bin/sh")
                .args(["-c", "read x; echo \"got $x\""])
                .interactive()
                .stdout_to(path);
            assert!(SystemRunner::new().output(&cmd).unwrap().success());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "system::tests::an_interactive_command_reads_this_process_standard_input",
                "--test-threads=1",
            ])
            .env(OUT, &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "got hello\n");
    }

    #[test]
    fn stdout_to_writes_a_file_and_keeps_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stream");
        let out = SystemRunner::new()
            .output(
                &Cmd::new("/bin/sh")
                    .args(["-c", "printf 'a\\0b'; echo err >&2"])
                    .stdout_to(&path),
            )
            .unwrap();
        assert!(out.success());
        assert!(out.stdout.is_empty());
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"a\0b");
    }

    #[test]
    fn captures_output_and_exit_code() {
        let r = SystemRunner::new();
        let out = r
            .output(&Cmd::new("/bin/sh").args(["-c", "echo out; echo err >&2; exit 3"]))
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn run_fails_with_command_line_status_and_stderr_tail() {
        let r = SystemRunner::new();
        let err = r
            .run(&Cmd::new("/bin/sh").args(["-c", "echo boom >&2; exit 2"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "`/bin/sh -c 'echo boom >&2; exit 2'` failed (exit status 2): boom"
        );
    }

    #[test]
    fn environment_is_cleared_and_locale_is_utf8_c() {
        std::env::set_var("RUNNER_TEST_LEAK", "1");
        let out = SystemRunner::new()
            .run(&Cmd::new("/usr/bin/env").env("EXTRA", "x"))
            .unwrap()
            .stdout_str();
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "EXTRA=x",
                "LANG=C.UTF-8",
                "LC_ALL=C.UTF-8",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
            ]
        );
    }

    #[test]
    fn stdin_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        std::fs::write(&input, b"from the file").unwrap();
        let r = SystemRunner::new();
        let out = r.run(&Cmd::new("/bin/cat").stdin_from(&input)).unwrap();
        assert_eq!(out.stdout, b"from the file");
        let missing = r.run(&Cmd::new("/bin/cat").stdin_from(dir.path().join("nope")));
        assert!(matches!(missing, Err(RunError::Io { .. })), "{missing:?}");
    }

    #[test]
    fn stdin_is_fed_or_empty() {
        let r = SystemRunner::new();
        let fed = r.run(&Cmd::new("/bin/cat").stdin("hello")).unwrap();
        assert_eq!(fed.stdout, b"hello");
        let empty = r.run(&Cmd::new("/bin/cat")).unwrap();
        assert!(empty.stdout.is_empty());
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let r = SystemRunner::new();
        let start = Instant::now();
        // The grandchild `sleep` keeps stdout open; only a group kill lets us return.
        let err = r
            .output(
                &Cmd::new("/bin/sh")
                    .args(["-c", "sleep 30 & sleep 30"])
                    .timeout(Duration::from_millis(300)),
            )
            .unwrap_err();
        assert!(matches!(err, RunError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn missing_program_is_a_spawn_error_naming_it() {
        let err = SystemRunner::new()
            .output(&Cmd::new("/nonexistent/tool").arg("x"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot start `/nonexistent/tool x`"),
            "{err}"
        );
    }
}
