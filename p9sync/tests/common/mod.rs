//! A real diod server on 127.0.0.1 for the integration tests, killed on drop.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use p9sync::{Client, Fid, StreamTransport};

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub struct Diod {
    child: Child,
    pub port: u16,
    pub export: PathBuf,
}

fn find_diod() -> Option<PathBuf> {
    ["/usr/sbin/diod", "/usr/bin/diod", "/usr/local/sbin/diod"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Diod {
    /// Starts diod exporting `export`, or returns None (after saying so) when diod is
    /// not installed.
    pub fn start(export: &Path) -> Option<Diod> {
        let Some(bin) = find_diod() else {
            // Written to the stderr handle, not through eprintln!, so libtest's output
            // capture does not hide the skip.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {}: diod is not installed (Debian: apt-get install diod)",
                std::thread::current().name().unwrap_or("test")
            );
            return None;
        };
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .ok()?
                .local_addr()
                .ok()?
                .port();
            // The long-running server is a test fixture that must outlive one call,
            // so it is spawned directly rather than through a run-to-completion runner.
            // -n: no auth; -N: no passwd lookups; -S/-U: every attach maps to the
            // user running the test; -c /dev/null: ignore any host config.
            let child = Command::new(&bin)
                .args(["-f", "-n", "-N", "-S", "-U"])
                .arg(whoami())
                .args(["-c", "/dev/null", "-L", "stderr", "-e"])
                .arg(export)
                .args(["-l", &format!("127.0.0.1:{port}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn diod");
            let mut d = Diod {
                child,
                port,
                export: export.to_owned(),
            };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(d);
                }
                if let Ok(Some(_)) = d.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.child.kill();
        }
        panic!("diod did not start listening");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn connect(&self, msize: u32) -> (Client<StreamTransport>, Fid) {
        let t = StreamTransport::tcp(self.addr(), TIMEOUT).expect("connect to diod");
        let mut c = Client::connect(t, msize).expect("version");
        let root = c
            .attach(
                &whoami(),
                self.export.to_str().unwrap(),
                rustix::process::getuid().as_raw(),
            )
            .expect("attach");
        (c, root)
    }
}

impl Drop for Diod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn whoami() -> String {
    if rustix::process::getuid().is_root() {
        return "root".into();
    }
    std::env::var("USER").unwrap_or_else(|_| "nobody".into())
}

/// Deterministic pseudo-random bytes so content mismatches are caught.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
