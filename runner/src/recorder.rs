use std::sync::Mutex;
use std::time::Duration;

use crate::{Cmd, Output, RunError, Runner};

/// A scripted answer for a recorded command.
#[derive(Debug, Clone)]
pub enum Reply {
    Output(Output),
    /// Behave as if the command ran past its timeout.
    Timeout,
    /// Answer with the output once this much time has passed, as a slow command does.
    After(Duration, Output),
}

impl From<Output> for Reply {
    fn from(o: Output) -> Self {
        Reply::Output(o)
    }
}

struct Rule {
    prefix: String,
    reply: Reply,
    sticky: bool,
    used: bool,
}

/// The exit status of a command no rule matched: what a shell answers for a command it
/// cannot find.
const UNMATCHED_STATUS: i32 = 127;

/// A [`Runner`] for tests: records every command and answers from a script.
///
/// Rules match on the start of the command's [`Cmd::display`] line. A rule added with
/// [`Recorder::on`] answers once, in the order rules were added; one added with
/// [`Recorder::always`] answers every time.
///
/// A command no rule matches is a mistake in the test: it fails (exit status 127, with a
/// message naming the command on stderr), is kept in [`Recorder::unmatched`], and the
/// recorder panics when it is dropped, so the test fails even when the code under test
/// ignored the failure. A test whose point is a catch-all (every command succeeds with
/// empty output) opts in with [`Recorder::allow_unmatched`].
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<Cmd>>,
    rules: Mutex<Vec<Rule>>,
    unmatched: Mutex<Vec<String>>,
    allow_unmatched: bool,
    write_stdout_files: bool,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers every command no rule matches with success and empty output, instead of
    /// failing it.
    pub fn allow_unmatched(mut self) -> Self {
        self.allow_unmatched = true;
        self
    }

    /// Writes a scripted reply's standard output to the file a command sends its output
    /// to ([`Cmd::stdout_to`]), as the system runner would, instead of returning it: for
    /// tests that read what such a command produced (a `zfs send` stream).
    pub fn write_stdout_files(mut self) -> Self {
        self.write_stdout_files = true;
        self
    }

    /// Answers the next command whose line starts with `prefix` with `reply`, once.
    pub fn on(&self, prefix: &str, reply: impl Into<Reply>) -> &Self {
        self.push(prefix, reply.into(), false)
    }

    /// Answers every command whose line starts with `prefix` with `reply`.
    pub fn always(&self, prefix: &str, reply: impl Into<Reply>) -> &Self {
        self.push(prefix, reply.into(), true)
    }

    fn push(&self, prefix: &str, reply: Reply, sticky: bool) -> &Self {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Rule {
                prefix: prefix.to_string(),
                reply,
                sticky,
                used: false,
            });
        self
    }

    /// The command lines no rule matched (without [`Recorder::allow_unmatched`]), in order.
    pub fn unmatched(&self) -> Vec<String> {
        lock(&self.unmatched).clone()
    }

    /// The prefixes of the rules no command used: a rule added with [`Recorder::on`] that
    /// was never answered, or one added with [`Recorder::always`] that nothing matched.
    pub fn unused_rules(&self) -> Vec<String> {
        lock(&self.rules)
            .iter()
            .filter(|r| !r.used)
            .map(|r| r.prefix.clone())
            .collect()
    }

    /// Panics, naming them, if some rules were never used: a rule nothing matches means
    /// the test does not check what it says.
    #[track_caller]
    pub fn assert_all_rules_used(&self) {
        let unused = self.unused_rules();
        assert!(
            unused.is_empty(),
            "runner::Recorder: rules no command matched: {unused:?}\ncommands run: {:#?}",
            self.lines()
        );
    }

    /// Every command run so far, in order.
    pub fn calls(&self) -> Vec<Cmd> {
        lock(&self.calls).clone()
    }

    /// Every command line run so far, as [`Cmd::display`] gives them.
    pub fn lines(&self) -> Vec<String> {
        self.calls().iter().map(Cmd::display).collect()
    }

    /// Forgets the recorded calls (rules stay).
    pub fn clear(&self) {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Runner for Recorder {
    fn output(&self, cmd: &Cmd) -> Result<Output, RunError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cmd.clone());
        let line = cmd.display();
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let reply = match rules.iter().position(|r| line.starts_with(&r.prefix)) {
            Some(i) if rules[i].sticky => {
                rules[i].used = true;
                rules[i].reply.clone()
            }
            Some(i) => rules.remove(i).reply,
            None if self.allow_unmatched => Reply::Output(Output::ok("")),
            None => {
                lock(&self.unmatched).push(line.clone());
                Reply::Output(Output::failed(
                    UNMATCHED_STATUS,
                    format!(
                        "runner::Recorder: no rule matches `{line}` \
                         (add one, or opt in with Recorder::allow_unmatched)"
                    ),
                ))
            }
        };
        drop(rules);
        match reply {
            Reply::Output(o) => self.answer(cmd, line, o),
            Reply::After(took, o) => {
                std::thread::sleep(took);
                self.answer(cmd, line, o)
            }
            Reply::Timeout => Err(RunError::Timeout {
                cmd: line,
                after: cmd.get_timeout().unwrap_or(Duration::ZERO),
            }),
        }
    }
}

impl Recorder {
    /// A scripted output, written to the command's stdout file when asked to.
    fn answer(&self, cmd: &Cmd, line: String, o: Output) -> Result<Output, RunError> {
        match cmd.get_stdout_file() {
            Some(path) if self.write_stdout_files => {
                std::fs::write(path, &o.stdout)
                    .map_err(|source| RunError::Io { cmd: line, source })?;
                Ok(Output {
                    stdout: Vec::new(),
                    ..o
                })
            }
            _ => Ok(o),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let unmatched = lock(&self.unmatched);
        if !unmatched.is_empty() && !std::thread::panicking() {
            panic!(
                "runner::Recorder: commands no rule matched (add rules, or opt in with \
                 Recorder::allow_unmatched): {unmatched:#?}"
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_lines_and_answers_rules_in_order() {
        let rec = Recorder::new();
        rec.on("/usr/sbin/zfs list", Output::ok("a\n"))
            .on("/usr/sbin/zfs list", Output::failed(1, "no such dataset"))
            .always("/usr/sbin/zpool", Output::ok("p\n"));
        let zfs = Cmd::new("/usr/sbin/zfs").args(["list", "-H", "rpool"]);
        assert_eq!(rec.output(&zfs).unwrap().stdout, b"a\n");
        assert_eq!(rec.output(&zfs).unwrap().code, Some(1));
        for _ in 0..2 {
            let z = rec
                .output(&Cmd::new("/usr/sbin/zpool").arg("list"))
                .unwrap();
            assert_eq!(z.stdout, b"p\n");
        }
        assert_eq!(
            rec.lines(),
            [
                "/usr/sbin/zfs list -H rpool",
                "/usr/sbin/zfs list -H rpool",
                "/usr/sbin/zpool list",
                "/usr/sbin/zpool list"
            ]
        );
    }

    #[test]
    fn run_turns_a_scripted_failure_into_an_error() {
        let rec = Recorder::new();
        rec.on("/usr/sbin/pkg", Output::failed(4, "nothing to do"));
        let err = rec
            .run(&Cmd::new("/usr/sbin/pkg").arg("install"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`/usr/sbin/pkg install` failed (exit status 4): nothing to do"
        );
    }

    #[test]
    fn stdout_files_are_written_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("stream");
        let cmd = Cmd::new("/usr/sbin/zfs").arg("send").stdout_to(&out);
        let plain = Recorder::new();
        plain.on("/usr/sbin/zfs send", Output::ok("bytes"));
        assert_eq!(plain.output(&cmd).unwrap().stdout, b"bytes");
        assert!(!out.exists());
        let writing = Recorder::new().write_stdout_files();
        writing.on("/usr/sbin/zfs send", Output::ok("bytes"));
        assert!(writing.output(&cmd).unwrap().stdout.is_empty());
        assert_eq!(std::fs::read(&out).unwrap(), b"bytes");
    }

    #[test]
    fn a_slow_reply_comes_after_its_time() {
        let rec = Recorder::new();
        rec.on(
            "/bin/x",
            Reply::After(Duration::from_millis(120), Output::ok("late")),
        );
        let started = std::time::Instant::now();
        assert_eq!(rec.output(&Cmd::new("/bin/x")).unwrap().stdout, b"late");
        assert!(started.elapsed() >= Duration::from_millis(120));
    }

    #[test]
    fn scripted_timeout() {
        let rec = Recorder::new();
        rec.on("/bin/x", Reply::Timeout);
        let err = rec
            .output(&Cmd::new("/bin/x").timeout(Duration::from_secs(5)))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`/bin/x` did not finish within 5s and was killed"
        );
    }

    #[test]
    fn an_unmatched_command_fails_and_fails_the_test() {
        let rec = Recorder::new();
        rec.on("/usr/sbin/zfs list", Output::ok("a\n"));
        let zfs = Cmd::new("/usr/sbin/zfs").args(["list", "-H", "rpool"]);
        assert!(rec.output(&zfs).unwrap().success());
        // The once-rule is used up: the same command again has no rule.
        let err = rec.run(&zfs).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`/usr/sbin/zfs list -H rpool` failed (exit status 127): runner::Recorder: \
             no rule matches `/usr/sbin/zfs list -H rpool` (add one, or opt in with \
             Recorder::allow_unmatched)"
        );
        assert_eq!(rec.unmatched(), ["/usr/sbin/zfs list -H rpool"]);
        // Both calls are recorded.
        assert_eq!(rec.lines().len(), 2);
        // Dropping it fails the test, even if the code under test ignored the failure.
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(rec)));
        let msg = dropped.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("commands no rule matched") && msg.contains("/usr/sbin/zfs list -H rpool"),
            "{msg}"
        );
    }

    #[test]
    fn allow_unmatched_answers_success() {
        let rec = Recorder::new().allow_unmatched();
        let out = rec
            .output(&Cmd::new("/usr/sbin/zpool").arg("sync"))
            .unwrap();
        assert!(out.success());
        assert!(out.stdout.is_empty());
        assert!(rec.unmatched().is_empty());
        assert_eq!(rec.lines(), ["/usr/sbin/zpool sync"]);
    }

    #[test]
    fn unused_rules_are_reported() {
        let rec = Recorder::new();
        rec.on("/usr/sbin/zfs snapshot", Output::ok(""))
            .on("/usr/sbin/zfs destroy", Output::ok(""))
            .always("/usr/sbin/zpool", Output::ok(""))
            .always("/usr/sbin/beadm", Output::ok(""));
        rec.run(&Cmd::new("/usr/sbin/zfs").args(["snapshot", "p/a@b"]))
            .unwrap();
        rec.run(&Cmd::new("/usr/sbin/zpool").arg("list")).unwrap();
        assert_eq!(
            rec.unused_rules(),
            ["/usr/sbin/zfs destroy", "/usr/sbin/beadm"]
        );
        let failed = std::panic::catch_unwind(|| rec.assert_all_rules_used());
        assert!(failed.is_err());

        let rec = Recorder::new();
        rec.always("/usr/sbin/zpool", Output::ok(""));
        rec.run(&Cmd::new("/usr/sbin/zpool").arg("list")).unwrap();
        rec.assert_all_rules_used();
    }
}
