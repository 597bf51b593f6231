//! Expect-like automation of a serial console reached through a Unix socket.
//!
//! A reader thread keeps the whole transcript; [`Console::wait_for`] consumes it up to a
//! pattern, so nothing printed between two waits is lost. Input is written to the socket
//! as-is: the emulated 16550 only takes bytes from the socket when its FIFO has room, so
//! nothing is dropped however fast we write (unlike typing into a graphical console).

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot connect to the console socket {}: {source}", .path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("console write failed: {0}")]
    Write(#[source] std::io::Error),
    #[error("no {pattern:?} on the console within {}s; last output:\n{tail}", .waited.as_secs())]
    Timeout {
        pattern: String,
        waited: Duration,
        tail: String,
    },
    #[error("the console closed while waiting for {pattern:?}; last output:\n{tail}")]
    Closed { pattern: String, tail: String },
}

/// What a command run with [`Console::run`] printed, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub status: i32,
    /// Standard output and error, `\r\n` turned into `\n`.
    pub output: String,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    closed: bool,
    first_at: Option<Instant>,
    tee: Option<Box<dyn Write + Send>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connected serial console.
pub struct Console {
    stream: UnixStream,
    shared: Arc<Shared>,
    cursor: usize,
    seq: u64,
    reader: Option<JoinHandle<()>>,
}

/// A second handle for writing to the console from another thread.
pub struct ConsoleWriter(UnixStream);

impl ConsoleWriter {
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ConsoleError> {
        self.0.write_all(bytes).map_err(ConsoleError::Write)
    }
}

/// How much of the transcript error messages quote.
const TAIL: usize = 2000;

impl Console {
    /// Connects to a console socket, retrying until it appears or `timeout` passes.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Console, ConsoleError> {
        let start = Instant::now();
        loop {
            match UnixStream::connect(path) {
                Ok(s) => return Console::from_stream(s),
                Err(e) if start.elapsed() >= timeout => {
                    return Err(ConsoleError::Connect {
                        path: path.to_path_buf(),
                        source: e,
                    })
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Drives an already connected stream (a socket pair in tests).
    pub fn from_stream(stream: UnixStream) -> Result<Console, ConsoleError> {
        let mut rd = stream.try_clone().map_err(ConsoleError::Write)?;
        let shared = Arc::new(Shared::default());
        let sh = Arc::clone(&shared);
        let reader = thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                let n = match rd.read(&mut chunk) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let mut st = sh.lock();
                if n == 0 {
                    st.closed = true;
                    sh.cond.notify_all();
                    return;
                }
                st.first_at.get_or_insert_with(Instant::now);
                st.buf.extend_from_slice(&chunk[..n]);
                if let Some(t) = st.tee.as_mut() {
                    let _ = t.write_all(&chunk[..n]);
                    let _ = t.flush();
                }
                sh.cond.notify_all();
            }
        });
        Ok(Console {
            stream,
            shared,
            cursor: 0,
            seq: 0,
            reader: Some(reader),
        })
    }

    /// Copies everything the console prints from now on to `out` (e.g. standard output).
    pub fn tee(&self, out: Box<dyn Write + Send>) {
        self.shared.lock().tee = Some(out);
    }

    pub fn writer(&self) -> Result<ConsoleWriter, ConsoleError> {
        Ok(ConsoleWriter(
            self.stream.try_clone().map_err(ConsoleError::Write)?,
        ))
    }

    /// When the first byte arrived, if any has.
    pub fn first_output_at(&self) -> Option<Instant> {
        self.shared.lock().first_at
    }

    /// Everything received so far, lossily decoded.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().buf).into_owned()
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ConsoleError> {
        self.stream.write_all(bytes).map_err(ConsoleError::Write)
    }

    pub fn send_line(&mut self, line: &str) -> Result<(), ConsoleError> {
        self.send(format!("{line}\n").as_bytes())
    }

    /// Waits until `pattern` appears after what earlier waits consumed; returns the text
    /// up to and including it, and consumes that much.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String, ConsoleError> {
        self.wait_for_any(&[pattern], timeout).map(|(_, text)| text)
    }

    /// Like [`Console::wait_for`] with several patterns: the one that appears first wins
    /// and its index is returned.
    pub fn wait_for_any(
        &mut self,
        patterns: &[&str],
        timeout: Duration,
    ) -> Result<(usize, String), ConsoleError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            let hay = &st.buf[self.cursor..];
            let hit = patterns
                .iter()
                .enumerate()
                .filter_map(|(i, p)| find(hay, p.as_bytes()).map(|at| (at + p.len(), i)))
                .min();
            if let Some((end, i)) = hit {
                let text = String::from_utf8_lossy(&hay[..end]).into_owned();
                self.cursor += end;
                return Ok((i, text));
            }
            let what = patterns.join("\" or \"");
            if st.closed {
                return Err(ConsoleError::Closed {
                    pattern: what,
                    tail: tail(&st.buf),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ConsoleError::Timeout {
                    pattern: what,
                    waited: timeout,
                    tail: tail(&st.buf),
                });
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Runs a shell command on a console that shows a POSIX shell prompt and returns its
    /// output and status.
    ///
    /// The command is wrapped in markers on one input line. The markers are written split
    /// by quotes, so the terminal's echo of the typed line never matches them; `eval` keeps
    /// a trailing `#` comment or `&` in `cmd` from swallowing the closing marker.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<CommandOutput, ConsoleError> {
        self.seq += 1;
        let n = self.seq;
        let begin = format!("<<ib:{n}:begin>>");
        let end = format!("<<ib:{n}:end:");
        self.send_line(&format!(
            "echo '<<ib:{n}:''begin>>'; eval '{}'; echo \"<<ib:{n}:\"\"end:$?>>\"",
            cmd.replace('\'', r"'\''")
        ))?;
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        self.wait_for(&begin, left())?;
        let body = self.wait_for(&end, left())?;
        let status_text = self.wait_for(">>", left())?;
        let status = status_text
            .trim_end_matches(">>")
            .trim()
            .parse()
            .unwrap_or(-1);
        let body = body.strip_suffix(&end).unwrap_or(&body);
        let body = body.replace("\r\n", "\n").replace('\r', "");
        let body = body.strip_prefix('\n').unwrap_or(&body).to_string();
        Ok(CommandOutput {
            status,
            output: body,
        })
    }

    /// Waits for the other end to close (the VM powered off).
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<(), ConsoleError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while !st.closed {
            let now = Instant::now();
            if now >= deadline {
                return Err(ConsoleError::Timeout {
                    pattern: "<console closed>".into(),
                    waited: timeout,
                    tail: tail(&st.buf),
                });
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        // Unblocks the reader thread even while the peer is still running.
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn tail(buf: &[u8]) -> String {
    let start = buf.len().saturating_sub(TAIL);
    String::from_utf8_lossy(&buf[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    /// A real shell on the far end of a socket pair, its output echoed back like a tty.
    fn shell() -> (Console, std::process::Child) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg("PS1='$ ' exec /bin/sh -i 2>&1")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(
                theirs.try_clone().unwrap(),
            )))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (Console::from_stream(ours).unwrap(), child)
    }

    #[test]
    fn run_returns_output_and_status_between_markers() {
        let (mut c, mut child) = shell();
        let t = Duration::from_secs(10);
        let out = c.run("echo one; echo two >&2", t).unwrap();
        assert_eq!(out.status, 0);
        assert_eq!(out.output, "one\ntwo\n");
        let out = c
            .run("printf 'no newline'; exit_code=3; (exit 3)", t)
            .unwrap();
        assert_eq!(out.status, 3);
        assert_eq!(out.output, "no newline");
        // A quote and a trailing comment in the command do not break the markers.
        let out = c.run("echo \"it's\" # comment", t).unwrap();
        assert_eq!((out.status, out.output.as_str()), (0, "it's\n"));
        c.send_line("exit").unwrap();
        c.wait_closed(t).unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn wait_for_consumes_in_order_and_times_out_with_the_tail() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut c = Console::from_stream(ours).unwrap();
        theirs.write_all(b"boot...\nlogin: ").unwrap();
        let got = c.wait_for("login: ", Duration::from_secs(5)).unwrap();
        assert_eq!(got, "boot...\nlogin: ");
        // Already consumed: a second wait for the same text must not match it again.
        let e = c
            .wait_for("login: ", Duration::from_millis(100))
            .unwrap_err();
        assert!(
            matches!(&e, ConsoleError::Timeout { tail, .. } if tail.contains("boot...")),
            "{e}"
        );
        theirs.write_all(b"Password:").unwrap();
        let (i, _) = c
            .wait_for_any(&["# ", "Password:"], Duration::from_secs(5))
            .unwrap();
        assert_eq!(i, 1);
        assert!(c.first_output_at().is_some());
    }

    #[test]
    fn a_closed_console_fails_the_wait_at_once() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut c = Console::from_stream(ours).unwrap();
        drop(theirs);
        let start = Instant::now();
        let e = c.wait_for("never", Duration::from_secs(30)).unwrap_err();
        assert!(matches!(e, ConsoleError::Closed { .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn writer_and_tee() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let c = Console::from_stream(ours).unwrap();
        let (tee_in, tee_out) = UnixStream::pair().unwrap();
        c.tee(Box::new(tee_in));
        let mut w = c.writer().unwrap();
        w.send(b"ping\n").unwrap();
        let mut line = String::new();
        BufReader::new(theirs.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ping\n");
        (&theirs).write_all(b"pong\n").unwrap();
        let mut seen = String::new();
        BufReader::new(tee_out).read_line(&mut seen).unwrap();
        assert_eq!(seen, "pong\n");
    }
}
