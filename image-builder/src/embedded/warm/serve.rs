//! The server, in the guest: runs the commands the host sends over the control port, one
//! at a time, and sends back their output and status.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use runner::{Cmd, Runner, Sink, SystemRunner};
use rustix::process::{kill_process_group, Pid, Signal};

use super::{split_utf8_tail, Reply, Request, RunRequest, PORT_NAME, PROTOCOL};
use crate::embedded::{io, EmbeddedError};

/// How long a guest that has run no command yet waits for its first, whatever its idle
/// time.
const FIRST_COMMAND_WAIT: Duration = Duration::from_secs(120);

/// How [`serve`] runs.
pub struct ServeOptions {
    /// Stop after this long without a command.
    pub idle: Duration,
    /// The port outlives a client (virtio serial: a read of 0 bytes means no host is
    /// connected right now); otherwise (a socket) end of file ends the server.
    pub reconnect: bool,
    /// Heartbeat interval while a command runs.
    pub beat: Duration,
    /// Drop the guest's page and dentry caches before each command, so files the host
    /// changed since (templates, the binary) are read afresh through 9P.
    pub drop_caches: bool,
    /// Where the host's root is mounted read-write, for the requests' `rw` directories.
    pub host_rw: Option<PathBuf>,
    /// Variables every command gets besides the runner's base and the request's own.
    pub env: Vec<(String, String)>,
}

/// Why [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEnd {
    Idle,
    Stopped,
    /// The port closed for good (`reconnect` off).
    Closed,
}

impl ServeEnd {
    pub fn describe(self) -> &'static str {
        match self {
            ServeEnd::Idle => "idle for its idle time",
            ServeEnd::Stopped => "asked to stop",
            ServeEnd::Closed => "the control port closed",
        }
    }
}

enum Ev {
    Line(String),
    Hup,
    Data(u64, u8, Vec<u8>),
    Eof(u64),
}

/// The writing half of the port: drops what it cannot send while no host is connected
/// (a write to an unconnected virtio port would block until the next client, who must not
/// get this one's output).
struct Sender {
    port: File,
    connected: Arc<AtomicBool>,
}

impl Sender {
    fn send(&mut self, r: &Reply) {
        let Ok(mut line) = serde_json::to_vec(r) else {
            return;
        };
        line.push(b'\n');
        let mut buf = &line[..];
        while !buf.is_empty() {
            if !self.connected.load(Ordering::SeqCst) {
                return;
            }
            match self.port.write(buf) {
                Ok(0) => return,
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(2))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("control port write: {e}");
                    self.connected.store(false, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}

/// Reads lines from the port into `tx`; `Hup` each time the host goes away.
fn read_port(port: File, reconnect: bool, connected: Arc<AtomicBool>, tx: mpsc::Sender<Ev>) {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut port = port;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match port.read(&mut buf) {
            Ok(0) => {
                pending.clear();
                if (connected.swap(false, Ordering::SeqCst) || !reconnect)
                    && tx.send(Ev::Hup).is_err()
                {
                    return;
                }
                if !reconnect {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
            Ok(n) => {
                connected.store(true, Ordering::SeqCst);
                pending.extend_from_slice(&buf[..n]);
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    let line = String::from_utf8_lossy(&line).trim().to_string();
                    if !line.is_empty() && tx.send(Ev::Line(line)).is_err() {
                        return;
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                connected.store(true, Ordering::SeqCst);
                let mut fds = [PollFd::new(&port, PollFlags::IN)];
                let _ = poll(&mut fds, None);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("control port read: {e}");
                let _ = tx.send(Ev::Hup);
                return;
            }
        }
    }
}

fn read_pipe(mut r: impl Read, id: u64, fd: u8, tx: mpsc::Sender<Ev>) {
    let mut buf = [0u8; 16384];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                carry.extend_from_slice(&buf[..n]);
                let chunk = split_utf8_tail(&mut carry);
                if !chunk.is_empty() && tx.send(Ev::Data(id, fd, chunk)).is_err() {
                    return;
                }
            }
        }
    }
    if !carry.is_empty() {
        let _ = tx.send(Ev::Data(id, fd, carry));
    }
    let _ = tx.send(Ev::Eof(id));
}

struct Running {
    id: u64,
    child: runner::Spawned,
    open: u8,
    binds: Vec<PathBuf>,
}

fn signal_of(name: &str) -> Option<Signal> {
    match name {
        "INT" => Some(Signal::INT),
        "TERM" => Some(Signal::TERM),
        "HUP" => Some(Signal::HUP),
        _ => None,
    }
}

fn signal_group(r: &Running, sig: Signal) {
    if let Some(pid) = Pid::from_raw(r.child.id() as i32) {
        // ESRCH only means the command is already gone.
        let _ = kill_process_group(pid, sig);
    }
}

/// Serves requests on `port` until idle, stopped or closed.
pub fn serve(port: File, opts: &ServeOptions, runner: &SystemRunner) -> ServeEnd {
    let connected = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Ev>();
    let reader = match port.try_clone() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot use the control port: {e}");
            return ServeEnd::Closed;
        }
    };
    {
        let (c, t, re) = (connected.clone(), tx.clone(), opts.reconnect);
        thread::spawn(move || read_port(reader, re, c, t));
    }
    let mut out = Sender {
        port,
        connected: connected.clone(),
    };
    let mut idle = opts.idle;
    // The client that started the guest sends its command next: until one has come, the
    // guest waits at least FIRST_COMMAND_WAIT, so an idle time of 0 (stop after each
    // command) does not stop it before its first.
    let mut deadline = Instant::now() + idle.max(FIRST_COMMAND_WAIT);
    let mut running: Option<Running> = None;
    let mut commands = 0u64;
    let mut closed = false;
    let end = loop {
        let wait = match &running {
            Some(_) => opts.beat,
            None if closed => break ServeEnd::Closed,
            None => deadline.saturating_duration_since(Instant::now()),
        };
        let ev = match rx.recv_timeout(wait) {
            Ok(ev) => ev,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                match &running {
                    Some(r) => out.send(&Reply::Beat { id: r.id }),
                    None if Instant::now() >= deadline => break ServeEnd::Idle,
                    None => {}
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break ServeEnd::Closed,
        };
        match ev {
            Ev::Line(line) => match serde_json::from_str::<Request>(&line) {
                Ok(Request::Hello { nonce }) => {
                    // A line another client's output left unfinished ends here.
                    let _ = out.port.write(b"\n");
                    out.send(&Reply::Ready {
                        nonce,
                        protocol: PROTOCOL,
                        commands,
                    });
                }
                Ok(Request::Run(req)) => {
                    if running.is_some() {
                        out.send(&Reply::Failed {
                            id: req.id,
                            error: "another command is running in the guest".into(),
                        });
                        continue;
                    }
                    idle = Duration::from_secs(req.idle_secs);
                    commands += 1;
                    match start(&req, opts, runner, &tx) {
                        Ok(r) => running = Some(r),
                        Err(error) => {
                            deadline = Instant::now() + idle;
                            out.send(&Reply::Failed { id: req.id, error })
                        }
                    }
                }
                Ok(Request::Signal { id, signal }) => {
                    if let (Some(r), Some(sig)) = (&running, signal_of(&signal)) {
                        if r.id == id {
                            signal_group(r, sig);
                        }
                    }
                }
                Ok(Request::Stop { nonce }) => {
                    out.send(&Reply::Stopping { nonce });
                    break ServeEnd::Stopped;
                }
                Err(e) => tracing::warn!("control port: not a request ({e}): {line}"),
            },
            Ev::Hup => {
                // The client went away: its command is interrupted as Ctrl-C would.
                if let Some(r) = &running {
                    tracing::info!("the client of command {} went away; interrupting it", r.id);
                    signal_group(r, Signal::INT);
                }
                if !opts.reconnect {
                    closed = true;
                }
            }
            Ev::Data(id, fd, bytes) => out.send(&Reply::out(id, fd, bytes)),
            Ev::Eof(id) => {
                let done = match &mut running {
                    Some(r) if r.id == id => {
                        r.open -= 1;
                        r.open == 0
                    }
                    _ => false,
                };
                if done {
                    if let Some(r) = running.take() {
                        let code = finish(r, runner);
                        out.send(&Reply::Exit { id, code });
                        deadline = Instant::now() + idle;
                    }
                }
            }
        }
    };
    if let Some(r) = running.take() {
        signal_group(&r, Signal::INT);
        finish(r, runner);
    }
    end
}

/// Starts a request's command with its output piped to the event channel.
fn start(
    req: &RunRequest,
    opts: &ServeOptions,
    runner: &SystemRunner,
    tx: &mpsc::Sender<Ev>,
) -> Result<Running, String> {
    let Some((prog, args)) = req.argv.split_first() else {
        return Err("empty command".into());
    };
    if opts.drop_caches {
        if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3\n") {
            tracing::warn!("cannot drop the guest's caches: {e}");
        }
    }
    let mut binds = Vec::new();
    if let Some(host) = &opts.host_rw {
        for d in crate::embedded::rw_dirs(&req.rw) {
            let src = host.join(d.strip_prefix("/").unwrap_or(&d));
            let bind = std::fs::create_dir_all(&d)
                .map_err(|e| format!("{}: {e}", d.display()))
                .and_then(|_| {
                    runner
                        .run(&Cmd::new("/usr/bin/mount").arg("--bind").arg(&src).arg(&d))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = bind {
                unbind(&binds, runner);
                return Err(e);
            }
            binds.push(d);
        }
    }
    let mut cmd = Cmd::new(prog).args(args).cwd(&req.cwd);
    for (k, v) in opts.env.iter().chain(&req.env) {
        cmd = cmd.env(k, v);
    }
    let mut child = match runner.spawn(&cmd, Sink::Pipe, Sink::Pipe) {
        Ok(c) => c,
        Err(e) => {
            unbind(&binds, runner);
            return Err(e.to_string());
        }
    };
    let id = req.id;
    let mut open = 0;
    if let Some(o) = child.take_stdout() {
        let t = tx.clone();
        thread::spawn(move || read_pipe(o, id, 1, t));
        open += 1;
    }
    if let Some(e) = child.take_stderr() {
        let t = tx.clone();
        thread::spawn(move || read_pipe(e, id, 2, t));
        open += 1;
    }
    if open == 0 {
        // Nothing will say it ended; say it now.
        let _ = tx.send(Ev::Eof(id));
        open = 1;
    }
    Ok(Running {
        id,
        child,
        open,
        binds,
    })
}

fn unbind(binds: &[PathBuf], runner: &SystemRunner) {
    for d in binds.iter().rev() {
        if let Err(e) = runner.run(&Cmd::new("/usr/bin/umount").arg(d)) {
            tracing::warn!("{e}");
        }
    }
}

/// Waits for a command whose output has ended; its status as a shell gives it.
fn finish(mut r: Running, runner: &SystemRunner) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let code = match r.child.wait() {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            tracing::warn!("{e}");
            125
        }
    };
    unbind(&r.binds, runner);
    code
}

/// The guest's control port device (`/dev/vportNpM`), opened non-blocking.
pub fn open_port() -> Result<File, EmbeddedError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = Path::new("/sys/class/virtio-ports");
    let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
    for e in entries.filter_map(Result::ok) {
        let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if name.trim() == PORT_NAME {
            let dev = Path::new("/dev").join(e.file_name());
            return std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&dev)
                .map_err(|e| io(&dev, e));
        }
    }
    Err(EmbeddedError::Setup(format!(
        "no virtio port named {PORT_NAME} in {} (was the guest started with --control?)",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{collect, opts, pair, req};
    use super::*;

    #[test]
    fn a_command_runs_with_its_output_status_and_environment() {
        let (mut c, h) = pair(opts());
        c.send(&Request::Hello { nonce: 9 }).unwrap();
        assert_eq!(
            c.recv(Duration::from_secs(5)).unwrap(),
            Some(Reply::Ready {
                nonce: 9,
                protocol: PROTOCOL,
                commands: 0
            })
        );
        c.send(&Request::Run(req(
            1,
            "echo out $FROM_SERVER$FROM_CLIENT; pwd; echo err >&2; exit 3",
        )))
        .unwrap();
        let (o, e, code) = collect(&mut c, 1);
        let tmp = std::env::temp_dir().canonicalize().unwrap();
        assert_eq!(o, format!("out sc\n{}\n", tmp.display()));
        assert_eq!((e.as_str(), code), ("err\n", 3));
        // A second command on the same server; death by a signal is 128 + it.
        c.send(&Request::Run(req(2, "kill -TERM $$"))).unwrap();
        assert_eq!(collect(&mut c, 2).2, 128 + 15);
        drop(c);
        assert_eq!(h.join().unwrap(), ServeEnd::Closed);
    }

    #[test]
    fn a_forwarded_signal_reaches_the_command_and_its_cleanup_runs() {
        let (mut c, h) = pair(opts());
        // Short sleeps in a loop, not one long one: a signal that lands between a child's
        // fork and its exec runs the shell's handler in the child and is lost there, and
        // the shell (which got it too, from the group) runs its trap only once the
        // foreground child has ended.
        c.send(&Request::Run(req(
            5,
            "trap 'echo cleaned up; exit 130' INT; echo started; \
             while :; do sleep 0.1; done",
        )))
        .unwrap();
        // Wait until the trap is set, then interrupt.
        loop {
            if let Some(Reply::Out { text, .. }) = c.recv(Duration::from_secs(10)).unwrap() {
                if text.contains("started") {
                    break;
                }
            }
        }
        let t0 = Instant::now();
        c.send(&Request::Signal {
            id: 5,
            signal: "INT".into(),
        })
        .unwrap();
        let (o, _, code) = collect(&mut c, 5);
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert_eq!((o.as_str(), code), ("cleaned up\n", 130));
        drop(c);
        h.join().unwrap();
    }

    #[test]
    fn a_client_that_goes_away_interrupts_its_command() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("cleaned");
        let (mut c, h) = pair(opts());
        c.send(&Request::Run(req(
            6,
            &format!(
                // As above: no long foreground child for the signal to get lost in.
                "trap 'touch {}; exit 130' INT; echo started; while :; do sleep 0.1; done",
                mark.display()
            ),
        )))
        .unwrap();
        while !matches!(
            c.recv(Duration::from_secs(10)).unwrap(),
            Some(Reply::Out { .. })
        ) {}
        drop(c);
        assert_eq!(h.join().unwrap(), ServeEnd::Closed);
        assert!(mark.exists(), "the command's cleanup did not run");
    }

    #[test]
    fn heartbeats_while_a_quiet_command_runs_and_idle_ends_the_server() {
        let (mut c, h) = pair(ServeOptions {
            idle: Duration::from_millis(300),
            ..opts()
        });
        let mut r = req(8, "sleep 1");
        r.idle_secs = 0;
        c.send(&Request::Run(r)).unwrap();
        let mut beats = 0;
        loop {
            match c.recv(Duration::from_secs(5)).unwrap() {
                Some(Reply::Beat { id: 8 }) => beats += 1,
                Some(Reply::Exit { id: 8, code: 0 }) => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(beats >= 2, "{beats} heartbeats in a 1 s command at 200 ms");
        // idle_secs 0: the server stops right after the command, before the client leaves.
        assert_eq!(h.join().unwrap(), ServeEnd::Idle);
    }

    /// A guest started with idle time 0 (stop after each command, as one-shot callers ask)
    /// still waits for its first command instead of stopping before it arrives.
    #[test]
    fn idle_zero_still_serves_the_first_command() {
        let (mut c, h) = pair(ServeOptions {
            idle: Duration::ZERO,
            ..opts()
        });
        std::thread::sleep(Duration::from_millis(500));
        let mut r = req(9, "true");
        r.idle_secs = 0;
        c.send(&Request::Run(r)).unwrap();
        loop {
            match c.recv(Duration::from_secs(5)).unwrap() {
                Some(Reply::Beat { id: 9 }) => {}
                Some(Reply::Exit { id: 9, code: 0 }) => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(h.join().unwrap(), ServeEnd::Idle);
    }

    #[test]
    fn stop_is_answered_and_ends_the_server() {
        let (mut c, h) = pair(opts());
        c.send(&Request::Stop { nonce: 4 }).unwrap();
        assert_eq!(
            c.recv(Duration::from_secs(5)).unwrap(),
            Some(Reply::Stopping { nonce: 4 })
        );
        assert_eq!(h.join().unwrap(), ServeEnd::Stopped);
    }
}
