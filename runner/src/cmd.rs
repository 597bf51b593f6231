use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One external command: program, arguments and the environment it adds.
///
/// The environment a command sees is exactly the runner's base environment plus what is
/// added here; nothing is inherited from the caller's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    tag: Option<String>,
    passthrough: bool,
    interactive: bool,
    stdout_file: Option<PathBuf>,
    stdin_file: Option<PathBuf>,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            timeout: None,
            tag: None,
            passthrough: false,
            interactive: false,
            stdout_file: None,
            stdin_file: None,
        }
    }

    /// Let the command write straight to this process's standard output and error (for a
    /// command whose output is the user's, such as a build run in a guest). Its [`Output`]
    /// then has empty `stdout` and `stderr`.
    pub fn passthrough(mut self) -> Self {
        self.passthrough = true;
        self
    }

    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    /// Run the command on this process's terminal, for a person to use (an interactive
    /// shell): standard input, output and error are this process's, and the command stays
    /// in this process's group, so it is the terminal's foreground job and gets the
    /// terminal's own signals (Ctrl-C) itself. An interrupt request still stops it.
    pub fn interactive(mut self) -> Self {
        self.interactive = true;
        self.passthrough = true;
        self
    }

    pub fn is_interactive(&self) -> bool {
        self.interactive
    }

    /// Send standard output to `path` (created or truncated before the command starts),
    /// for output too large to hold in memory, such as a `zfs send` stream. Its [`Output`]
    /// then has an empty `stdout`.
    pub fn stdout_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.stdout_file = Some(path.into());
        self
    }

    pub fn get_stdout_file(&self) -> Option<&Path> {
        self.stdout_file.as_deref()
    }

    /// Read standard input from the file `path`, for input too large to hold in memory,
    /// such as a `zfs receive` stream. It takes the place of [`Cmd::stdin`].
    pub fn stdin_from(mut self, path: impl Into<PathBuf>) -> Self {
        self.stdin_file = Some(path.into());
        self.stdin = None;
        self
    }

    pub fn get_stdin_file(&self) -> Option<&Path> {
        self.stdin_file.as_deref()
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.env
            .push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Bytes written to the command's standard input (otherwise it reads /dev/null).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// A label (usually the template step) that prefixes every logged output line.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    pub fn get_env(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    /// The value this command adds for environment variable `k`, if any.
    pub fn env_value(&self, k: &str) -> Option<&OsStr> {
        self.env
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_os_str())
    }

    pub fn get_cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    pub fn get_stdin(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }

    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub fn get_tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Program and arguments as one shell-quoted line, e.g.
    /// `/usr/sbin/zfs set 'org.example:k=a b' rpool`.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(|a| a.as_os_str()))
            .map(|a| quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+^".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code, or `None` when a signal ended the process.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        Output {
            code: Some(0),
            stdout: stdout.into(),
            stderr: Vec::new(),
        }
    }

    pub fn failed(code: i32, stderr: impl Into<Vec<u8>>) -> Self {
        Output {
            code: Some(code),
            stdout: Vec::new(),
            stderr: stderr.into(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn status_text(&self) -> String {
        match self.code {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_string(),
        }
    }

    /// The last `n` non-empty lines of standard error, joined with " | ".
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let c = Cmd::new("/usr/sbin/zfs")
            .args(["set", "org.example:k=a b", "rpool/ROOT"])
            .arg("it's");
        assert_eq!(
            c.display(),
            r"/usr/sbin/zfs set 'org.example:k=a b' rpool/ROOT 'it'\''s'"
        );
        assert_eq!(Cmd::new("/bin/true").arg("").display(), "/bin/true ''");
    }

    #[test]
    fn stderr_tail_keeps_last_lines() {
        let o = Output::failed(1, "a\n\nb\nc\n");
        assert_eq!(o.stderr_tail(2), "b | c");
        assert_eq!(o.status_text(), "exit status 1");
    }

    #[test]
    fn env_value_takes_the_last_setting() {
        let c = Cmd::new("x").env("A", "1").env("A", "2");
        assert_eq!(c.env_value("A"), Some(OsStr::new("2")));
        assert_eq!(c.env_value("B"), None);
    }
}
