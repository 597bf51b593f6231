use std::sync::Mutex;
use std::time::Duration;

use crate::{Cmd, Output, RunError, Runner};

/// A scripted answer for a recorded command.
#[derive(Debug, Clone)]
pub enum Reply {
    Output(Output),
    /// Behave as if the command ran past its timeout.
    Timeout,
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
}

/// A [`Runner`] for tests: records every command and answers from a script.
///
/// Rules match on the start of the command's [`Cmd::display`] line. A rule added with
/// [`Recorder::on`] answers once, in the order rules were added; one added with
/// [`Recorder::always`] answers every time. A command no rule matches succeeds with empty
/// output.
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<Cmd>>,
    rules: Mutex<Vec<Rule>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
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
            });
        self
    }

    /// Every command run so far, in order.
    pub fn calls(&self) -> Vec<Cmd> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
            Some(i) if rules[i].sticky => rules[i].reply.clone(),
            Some(i) => rules.remove(i).reply,
            None => Reply::Output(Output::ok("")),
        };
        match reply {
            Reply::Output(o) => Ok(o),
            Reply::Timeout => Err(RunError::Timeout {
                cmd: line,
                after: cmd.get_timeout().unwrap_or(Duration::ZERO),
            }),
        }
    }
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
        assert!(rec.output(&zfs).unwrap().success());
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
}
