//! The warm embedded guest: one zfs-vm guest per pool image that stays up between
//! commands, so a rebuild on a Linux host without `/dev/zfs` does not pay a guest boot.
//!
//! The first command starts `zfs-vm run --control SOCKET ... -- image-builder embedded
//! serve` detached; the guest's server ([`serve`]) then runs one command at a time on
//! request. Host and guest talk over one virtio serial port (`zfs-vm.ctl`), a Unix socket
//! on the host, in newline-delimited JSON: [`Request`] one way, [`Reply`] the other. A
//! command's standard output and error come back as [`Reply::Out`] chunks, its status as
//! [`Reply::Exit`]; Ctrl-C on the host becomes [`Request::Signal`], delivered to the
//! command's process group in the guest, so the build's own cleanup runs. A host client
//! that goes away interrupts its command the same way.
//!
//! On the host everything about one guest lives in `CACHE/embedded/warm/POOL/`: `lock`
//! (held by the command that uses the guest, so commands take turns), `ctl.sock`,
//! `qemu.pid`, `guest.json` ([`Info`]), `current.json` (the command running now) and
//! `guest.log` (the harness's and the server's messages). The server stops itself after
//! an idle time, exporting its pool first; `embedded stop` asks it to.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use runner::{Cmd, Runner, Sink, SystemRunner};
use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use serde::{Deserialize, Serialize};

use super::{io, EmbeddedError};

/// Bumped when [`Request`] or [`Reply`] change: a guest speaking another version is
/// replaced.
pub const PROTOCOL: u32 = 1;

/// The name of the control port in the guest (`/sys/class/virtio-ports/*/name`).
pub const PORT_NAME: &str = "zfs-vm.ctl";

/// Where the host's `/` is mounted read-write in the guest (`zfs-vm run --rw-root`).
pub const HOST_RW: &str = "/run/zfs-vm-host";

/// How long a guest that has run no command yet waits for its first, whatever its idle
/// time.
const FIRST_COMMAND_WAIT: Duration = Duration::from_secs(120);

/// Default idle time before the guest stops itself.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(300);

/// Host to guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Answered by [`Reply::Ready`] with the same nonce.
    Hello {
        nonce: u64,
    },
    Run(RunRequest),
    /// Send `signal` (`INT` or `TERM`) to the command `id`.
    Signal {
        id: u64,
        signal: String,
    },
    /// Stop the guest (answered by [`Reply::Stopping`]).
    Stop {
        nonce: u64,
    },
}

/// One command for the guest to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    pub id: u64,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// Added to the guest's own environment.
    pub env: Vec<(String, String)>,
    /// Host directories the command writes: made visible read-write at their own paths.
    pub rw: Vec<PathBuf>,
    /// The idle time after this command before the guest stops itself.
    pub idle_secs: u64,
}

/// Guest to host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ready {
        nonce: u64,
        protocol: u32,
        /// Commands run so far.
        commands: u64,
    },
    /// Output of command `id` on `fd` (1 or 2): `text`, or `bytes` when a chunk is not
    /// UTF-8.
    Out {
        id: u64,
        fd: u8,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        bytes: Vec<u8>,
    },
    /// Command `id` still runs (sent every couple of seconds while it does).
    Beat {
        id: u64,
    },
    /// Command `id` ended: its exit status, or 128 + the signal that killed it.
    Exit {
        id: u64,
        code: i32,
    },
    /// Command `id` could not start.
    Failed {
        id: u64,
        error: String,
    },
    Stopping {
        nonce: u64,
    },
}

impl Reply {
    fn out(id: u64, fd: u8, chunk: Vec<u8>) -> Reply {
        match String::from_utf8(chunk) {
            Ok(text) => Reply::Out {
                id,
                fd,
                text,
                bytes: Vec::new(),
            },
            Err(e) => Reply::Out {
                id,
                fd,
                text: String::new(),
                bytes: e.into_bytes(),
            },
        }
    }
}

/// Splits off the end of `buf` that may be the start of an unfinished UTF-8 sequence, so
/// chunks read from a pipe go out as text even when a read cuts a character in two.
fn split_utf8_tail(buf: &mut Vec<u8>) -> Vec<u8> {
    let valid = match std::str::from_utf8(buf) {
        Ok(_) => return std::mem::take(buf),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => return std::mem::take(buf),
    };
    let tail = buf.split_off(valid);
    std::mem::replace(buf, tail)
}

// ---------------------------------------------------------------------------------------
// The server, in the guest.

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
        for d in super::rw_dirs(&req.rw) {
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

// ---------------------------------------------------------------------------------------
// The client, on the host.

/// What `guest.json` records about a running guest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    pub pool: String,
    pub disk: PathBuf,
    pub harness_pid: u32,
    /// Unix time the guest was started and last finished a command.
    pub started: u64,
    pub last_used: u64,
    pub idle_secs: u64,
}

/// The command running in the guest now (`current.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Current {
    pub pid: u32,
    pub argv: Vec<String>,
    pub since: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The files of the warm guest of one pool.
#[derive(Debug, Clone)]
pub struct GuestDir {
    pub pool: String,
    pub dir: PathBuf,
}

/// How a client starts a guest when none runs.
#[derive(Debug, Clone)]
pub struct StartSpec {
    pub harness: PathBuf,
    pub disk: PathBuf,
    pub exe: PathBuf,
    pub idle: Duration,
    /// The harness's `--timeout`: the longest the guest may live.
    pub lifetime_secs: u64,
    /// How long a new guest may take to answer.
    pub boot_timeout: Duration,
}

/// How long a running guest may take to answer a hello before it counts as hung.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence during a command (no output, no heartbeat) after which the guest counts as hung.
const SILENCE: Duration = Duration::from_secs(90);

/// The lock that makes commands take turns at one guest; released on drop.
pub struct Turn {
    _file: File,
}

impl GuestDir {
    pub fn new(pool: &str) -> GuestDir {
        GuestDir {
            pool: pool.to_string(),
            dir: super::cache_dir().join("warm").join(pool),
        }
    }

    /// Every guest directory there is.
    pub fn all() -> Vec<GuestDir> {
        let base = super::cache_dir().join("warm");
        let mut out: Vec<GuestDir> = std::fs::read_dir(&base)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| GuestDir::new(&e.file_name().to_string_lossy()))
            .collect();
        out.sort_by(|a, b| a.pool.cmp(&b.pool));
        out
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("guest.log")
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn info(&self) -> Option<Info> {
        let text = std::fs::read_to_string(self.file("guest.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write_json(&self, name: &str, v: &impl Serialize) -> Result<(), EmbeddedError> {
        let path = self.file(name);
        let tmp = self.file(&format!(".{name}.tmp"));
        let text = serde_json::to_string_pretty(v).unwrap_or_default();
        std::fs::write(&tmp, text + "\n").map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }

    pub fn current(&self) -> Option<Current> {
        let text = std::fs::read_to_string(self.file("current.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The QEMU process of this guest, if it runs.
    pub fn qemu_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.file("qemu.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ours = String::from_utf8_lossy(&cmdline).contains(&*self.socket().to_string_lossy());
        (ours && alive(pid)).then_some(pid)
    }

    /// Takes this guest's turn lock, waiting for the command that holds it (saying so) and
    /// giving up when interrupted.
    pub fn turn(&self, quiet: bool) -> Result<Turn, EmbeddedError> {
        use rustix::fs::{flock, FlockOperation};
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let path = self.file("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let mut said = false;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Turn { _file: file }),
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {}
                Err(e) => return Err(io(&path, e.into())),
            }
            if !said && !quiet {
                let what = self
                    .current()
                    .map(|c| format!(" ({}, pid {})", c.argv.join(" "), c.pid))
                    .unwrap_or_default();
                eprintln!(
                    "embedded guest {}: another command is running in it{what}; waiting",
                    self.pool
                );
                said = true;
            }
            if runner::interrupt::requested() {
                return Err(EmbeddedError::Setup(
                    "interrupted while waiting for the embedded guest".into(),
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether a command holds the turn lock now.
    pub fn busy(&self) -> bool {
        use rustix::fs::{flock, FlockOperation};
        let Ok(file) = File::open(self.file("lock")) else {
            return false;
        };
        flock(&file, FlockOperation::NonBlockingLockShared).is_err()
    }

    /// Connects and says hello; `None` if the guest does not answer within `limit`.
    fn connect(&self, limit: Duration) -> Option<Conn> {
        let deadline = Instant::now() + limit;
        let stream = loop {
            match UnixStream::connect(self.socket()) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
                Err(_) => return None,
            }
        };
        let mut conn = Conn::new(stream).ok()?;
        let nonce = u64::from(std::process::id()) << 32 | (unix_now() & 0xffff_ffff);
        conn.send(&Request::Hello { nonce }).ok()?;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match conn.recv(left.min(Duration::from_millis(500))) {
                Ok(Some(Reply::Ready {
                    nonce: n, protocol, ..
                })) if n == nonce => return (protocol == PROTOCOL).then_some(conn),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Stops the guest's processes: QEMU, then the harness's process group.
    pub fn kill(&self) {
        let harness = self.info().map(|i| i.harness_pid);
        let qemu = self.qemu_pid();
        for sig in [Signal::TERM, Signal::KILL] {
            if let Some(p) = qemu.and_then(|p| Pid::from_raw(p as i32)) {
                let _ = kill_process(p, sig);
            }
            if let Some(p) = harness.and_then(|p| Pid::from_raw(p as i32)) {
                let _ = kill_process_group(p, sig);
            }
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10)
                && (qemu.is_some_and(alive) || harness.is_some_and(alive))
            {
                thread::sleep(Duration::from_millis(100));
            }
            if !(qemu.is_some_and(alive) || harness.is_some_and(alive)) {
                break;
            }
        }
        self.forget();
    }

    fn forget(&self) {
        for f in ["ctl.sock", "qemu.pid", "guest.json", "current.json"] {
            let _ = std::fs::remove_file(self.file(f));
        }
    }

    /// A connection to a running guest of this pool, starting one when none runs or the
    /// one that runs does not answer. Call with the turn held.
    pub fn ensure(&self, spec: &StartSpec) -> Result<Conn, EmbeddedError> {
        if self.qemu_pid().is_some() {
            if let Some(c) = self.connect(HELLO_TIMEOUT) {
                let up = self
                    .info()
                    .map(|i| format!(", up {} s", unix_now().saturating_sub(i.started)))
                    .unwrap_or_default();
                eprintln!(
                    "embedded guest {}: reusing the running guest{up}",
                    self.pool
                );
                return Ok(c);
            }
            eprintln!(
                "embedded guest {}: the running guest does not answer; replacing it",
                self.pool
            );
            self.kill();
        } else if self.info().is_some() {
            eprintln!(
                "embedded guest {}: the last guest is gone (stopped or crashed); starting a new one",
                self.pool
            );
            self.kill();
        }
        self.start(spec)
    }

    fn start(&self, spec: &StartSpec) -> Result<Conn, EmbeddedError> {
        self.forget();
        eprintln!(
            "embedded guest {}: starting it (stops after {} s idle; `image-builder embedded stop` stops it now)",
            self.pool,
            spec.idle.as_secs()
        );
        let mut cmd = Cmd::new(&spec.harness);
        for var in [
            "HOME",
            "XDG_CACHE_HOME",
            "ZFS_VM_CACHE",
            "ZFS_VM_ACCEL",
            "ZFS_VM_MEM",
            "ZFS_VM_SMP",
            "ZFS_VM_DEBUG",
        ] {
            if let Some(v) = std::env::var_os(var) {
                cmd = cmd.env(var, v);
            }
        }
        cmd = cmd
            .env("ZFS_VM_QUIET", "1")
            .args(["run", "--timeout"])
            .arg(spec.lifetime_secs.to_string())
            .arg("--drive")
            .arg(&spec.disk)
            .arg("--control")
            .arg(self.socket())
            .arg("--pidfile")
            .arg(self.file("qemu.pid"))
            .arg("--rw-root")
            // guest.log is a file: no colour codes in it.
            .args([
                "--env",
                "IMAGE_BUILDER_LOG=info",
                "--env",
                "NO_COLOR=1",
                "--",
            ])
            .arg(&spec.exe)
            .args(["embedded", "serve", "--pool", &self.pool, "--idle"])
            .arg(spec.idle.as_secs().to_string());
        // The last guest's log stays beside the new one, for why it ended.
        let _ = std::fs::rename(self.log(), self.file("guest.log.old"));
        let spawned = SystemRunner::new().spawn(&cmd, Sink::Null, Sink::File(self.log()))?;
        let harness_pid = spawned.id();
        // The guest outlives this command: the harness is left running in its own process
        // group (it stops QEMU and cleans up however it ends).
        std::mem::forget(spawned);
        let now = unix_now();
        self.write_json(
            "guest.json",
            &Info {
                pool: self.pool.clone(),
                disk: spec.disk.clone(),
                harness_pid,
                started: now,
                last_used: now,
                idle_secs: spec.idle.as_secs(),
            },
        )?;
        let deadline = Instant::now() + spec.boot_timeout;
        while Instant::now() < deadline {
            if !alive(harness_pid) {
                break;
            }
            if self.socket().exists() {
                if let Some(c) = self.connect(deadline.saturating_duration_since(Instant::now())) {
                    return Ok(c);
                }
            }
            if runner::interrupt::requested() {
                self.kill();
                return Err(EmbeddedError::Setup(
                    "interrupted while the embedded guest was starting".into(),
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
        let tail = std::fs::read_to_string(self.log()).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(30).collect();
        self.kill();
        Err(EmbeddedError::Setup(format!(
            "the embedded guest for pool {} did not start within {} s; its log ({}) ends:\n{}",
            self.pool,
            spec.boot_timeout.as_secs(),
            self.log().display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )))
    }

    /// Runs `req` in the guest (see [`GuestDir::ensure`]), forwarding output and Ctrl-C;
    /// returns the command's exit status. Call with the turn held.
    pub fn run(&self, spec: &StartSpec, req: RunRequest) -> Result<i32, EmbeddedError> {
        let mut conn = self.ensure(spec)?;
        let _ = self.write_json(
            "current.json",
            &Current {
                pid: std::process::id(),
                argv: req.argv.clone(),
                since: unix_now(),
            },
        );
        let id = req.id;
        let result = run_on(&mut conn, req);
        let _ = std::fs::remove_file(self.file("current.json"));
        if let Some(mut info) = self.info() {
            info.last_used = unix_now();
            info.idle_secs = spec.idle.as_secs();
            let _ = self.write_json("guest.json", &info);
        }
        match result {
            Ok(code) => Ok(code),
            Err(why) => {
                let tail = std::fs::read_to_string(self.log()).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(20).collect();
                self.kill();
                Err(EmbeddedError::Setup(format!(
                    "command {id} in the embedded guest for pool {}: {why}; the guest was stopped (its log, {}, ends:\n{})",
                    self.pool,
                    self.log().display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )))
            }
        }
    }

    /// Asks the guest to stop (waiting for a command in it to end) and waits until it
    /// has; false if none ran.
    pub fn stop(&self) -> Result<bool, EmbeddedError> {
        let _turn = self.turn(false)?;
        if self.qemu_pid().is_none() {
            self.forget();
            return Ok(false);
        }
        if let Some(mut c) = self.connect(Duration::from_secs(10)) {
            let nonce = unix_now();
            if c.send(&Request::Stop { nonce }).is_ok() {
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_secs(60) && self.qemu_pid().is_some() {
                    let _ = c.recv(Duration::from_millis(200));
                }
            }
        }
        self.kill();
        Ok(true)
    }
}

/// One command's conversation; `Err` says why the guest failed it (not the command).
fn run_on(conn: &mut Conn, req: RunRequest) -> Result<i32, String> {
    let id = req.id;
    conn.send(&Request::Run(req)).map_err(|e| e.to_string())?;
    let mut heard = Instant::now();
    let mut forwarded = false;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    loop {
        if runner::interrupt::requested() && !forwarded {
            forwarded = true;
            conn.send(&Request::Signal {
                id,
                signal: "INT".into(),
            })
            .map_err(|e| e.to_string())?;
        }
        match conn.recv(Duration::from_millis(200)) {
            Ok(Some(r)) => {
                heard = Instant::now();
                match r {
                    Reply::Out {
                        id: i,
                        fd,
                        text,
                        bytes,
                    } if i == id => {
                        let res = if fd == 1 {
                            let mut o = stdout.lock();
                            o.write_all(text.as_bytes())
                                .and_then(|_| o.write_all(&bytes))
                                .and_then(|_| o.flush())
                        } else {
                            let mut o = stderr.lock();
                            o.write_all(text.as_bytes())
                                .and_then(|_| o.write_all(&bytes))
                                .and_then(|_| o.flush())
                        };
                        // A closed stdout (`| head`) ends the command as it would here.
                        if res.is_err() && !forwarded {
                            forwarded = true;
                            let _ = conn.send(&Request::Signal {
                                id,
                                signal: "TERM".into(),
                            });
                        }
                    }
                    Reply::Exit { id: i, code } if i == id => return Ok(code),
                    Reply::Failed { id: i, error } if i == id => {
                        eprintln!("error: the embedded guest could not run the command: {error}");
                        return Ok(125);
                    }
                    _ => {}
                }
            }
            Ok(None) if heard.elapsed() > SILENCE => {
                return Err(format!(
                    "the guest said nothing for {} s (hung?)",
                    SILENCE.as_secs()
                ))
            }
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
}

/// A client connection: replies are read line by line with a timeout.
pub struct Conn {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    line: Vec<u8>,
}

impl Conn {
    fn new(stream: UnixStream) -> std::io::Result<Conn> {
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Conn {
            stream,
            reader,
            line: Vec::new(),
        })
    }

    fn send(&mut self, r: &Request) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.stream.write_all(&line)
    }

    /// The next reply, `None` when none came within `limit`; `Err` when the guest closed
    /// the connection.
    fn recv(&mut self, limit: Duration) -> Result<Option<Reply>, String> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        loop {
            match self.reader.read_until(b'\n', &mut self.line) {
                Ok(0) => return Err("the guest closed the control connection".into()),
                Ok(_) if self.line.ends_with(b"\n") => {
                    let line = std::mem::take(&mut self.line);
                    let text = String::from_utf8_lossy(&line);
                    if text.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Reply>(text.trim()) {
                        Ok(r) => return Ok(Some(r)),
                        Err(e) => {
                            tracing::debug!("control connection: not a reply ({e}): {text}");
                            continue;
                        }
                    }
                }
                Ok(_) => return Err("the guest closed the control connection".into()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(None),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// Whether process `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A request id unique enough for one guest: the client's pid and the time.
pub fn request_id() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    (u64::from(std::process::id()) << 40) ^ t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn requests_and_replies_are_one_json_object_a_line() {
        let r = Request::Signal {
            id: 7,
            signal: "INT".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"signal":{"id":7,"signal":"INT"}}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        let out = Reply::out(3, 2, b"caf\xc3\xa9\n".to_vec());
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"out":{"id":3,"fd":2,"text":"café\n"}}"#
        );
        let raw = Reply::out(3, 1, vec![0xff, 0x00]);
        assert_eq!(
            serde_json::to_string(&raw).unwrap(),
            r#"{"out":{"id":3,"fd":1,"bytes":[255,0]}}"#
        );
    }

    #[test]
    fn a_character_cut_by_a_read_waits_for_its_rest() {
        let mut buf = b"ab\xc3".to_vec();
        assert_eq!(split_utf8_tail(&mut buf), b"ab");
        assert_eq!(buf, b"\xc3");
        buf.extend_from_slice(b"\xa9!");
        assert_eq!(split_utf8_tail(&mut buf), "é!".as_bytes());
        assert!(buf.is_empty());
        // Bytes that can never be UTF-8 go as they are.
        let mut bad = b"a\xff".to_vec();
        assert_eq!(split_utf8_tail(&mut bad), b"a\xff");
    }

    fn opts() -> ServeOptions {
        ServeOptions {
            idle: Duration::from_secs(30),
            reconnect: false,
            beat: Duration::from_millis(200),
            drop_caches: false,
            host_rw: None,
            env: vec![("FROM_SERVER".into(), "s".into())],
        }
    }

    /// A server on one end of a socket pair, a client connection on the other.
    fn pair(o: ServeOptions) -> (Conn, thread::JoinHandle<ServeEnd>) {
        let (a, b) = UnixStream::pair().unwrap();
        let port = File::from(std::os::fd::OwnedFd::from(b));
        let h = thread::spawn(move || serve(port, &o, &SystemRunner::new()));
        (Conn::new(a).unwrap(), h)
    }

    fn req(id: u64, script: &str) -> RunRequest {
        RunRequest {
            id,
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            env: vec![("FROM_CLIENT".into(), "c".into())],
            rw: vec![],
            idle_secs: 30,
        }
    }

    /// Everything command `id` sent until it ended: (stdout, stderr, status).
    fn collect(c: &mut Conn, id: u64) -> (String, String, i32) {
        let (mut o, mut e) = (String::new(), String::new());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            match c.recv(Duration::from_millis(200)).unwrap() {
                Some(Reply::Out {
                    id: i, fd, text, ..
                }) if i == id => {
                    if fd == 1 {
                        o += &text
                    } else {
                        e += &text
                    }
                }
                Some(Reply::Exit { id: i, code }) if i == id => return (o, e, code),
                _ => {}
            }
        }
        panic!("command {id} did not end: {o} {e}");
    }

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
