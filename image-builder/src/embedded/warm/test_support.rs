//! For the server's tests: a server and a client connection on the two ends of a socket
//! pair, and what a command sent back.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use runner::SystemRunner;

use super::{serve, Conn, Reply, RunRequest, ServeEnd, ServeOptions};

pub(super) fn opts() -> ServeOptions {
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
pub(super) fn pair(o: ServeOptions) -> (Conn, thread::JoinHandle<ServeEnd>) {
    let (a, b) = UnixStream::pair().unwrap();
    let port = File::from(std::os::fd::OwnedFd::from(b));
    let h = thread::spawn(move || serve(port, &o, &SystemRunner::new()));
    (Conn::new(a).unwrap(), h)
}

pub(super) fn req(id: u64, script: &str) -> RunRequest {
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
pub(super) fn collect(c: &mut Conn, id: u64) -> (String, String, i32) {
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
