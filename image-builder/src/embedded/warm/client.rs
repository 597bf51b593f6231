//! The client, on the host: the files of a warm guest, starting it, and running one
//! command in it.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use runner::{Sink, SystemRunner};

use crate::build::lock::Held;
use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use serde::{Deserialize, Serialize};

use super::{Reply, Request, RunRequest, PROTOCOL};
use crate::embedded::{io, EmbeddedError};

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
    _held: Held,
}

impl GuestDir {
    pub fn new(pool: &str) -> GuestDir {
        GuestDir {
            pool: pool.to_string(),
            dir: crate::embedded::cache_dir().join("warm").join(pool),
        }
    }

    /// Every guest directory there is.
    pub fn all() -> Vec<GuestDir> {
        let base = crate::embedded::cache_dir().join("warm");
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
                Ok(()) => return Ok(Turn { _held: Held(file) }),
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
        let cmd = crate::embedded::harness_cmd(&spec.harness, &["ZFS_VM_DEBUG"])
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

// `new`, `send` and `recv` are `pub(super)` for the server's tests, which are its clients.
impl Conn {
    pub(super) fn new(stream: UnixStream) -> std::io::Result<Conn> {
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Conn {
            stream,
            reader,
            line: Vec::new(),
        })
    }

    pub(super) fn send(&mut self, r: &Request) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.stream.write_all(&line)
    }

    /// The next reply, `None` when none came within `limit`; `Err` when the guest closed
    /// the connection.
    pub(super) fn recv(&mut self, limit: Duration) -> Result<Option<Reply>, String> {
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
