//! The warm embedded guest: one zfs-vm guest per pool image that stays up between
//! commands, so a rebuild on a Linux host without `/dev/zfs` does not pay a guest boot.
//!
//! The first command starts `zfs-vm run --control SOCKET ... -- image-builder embedded
//! serve` detached; the guest's server ([`serve`](fn@serve)) then runs one command at a
//! time on request. Host and guest talk over one virtio serial port (`zfs-vm.ctl`), a Unix
//! socket on the host, in newline-delimited JSON: [`Request`] one way, [`Reply`] the
//! other. A command's standard output and error come back as [`Reply::Out`] chunks, its
//! status as [`Reply::Exit`]; Ctrl-C on the host becomes [`Request::Signal`], delivered to
//! the command's process group in the guest, so the build's own cleanup runs. A host
//! client that goes away interrupts its command the same way.
//!
//! On the host everything about one guest lives in `CACHE/embedded/warm/POOL/`: `lock`
//! (held by the command that uses the guest, so commands take turns), `ctl.sock`,
//! `qemu.pid`, `guest.json` ([`Info`]), `current.json` (the command running now) and
//! `guest.log` (the harness's and the server's messages). The server stops itself after
//! an idle time, exporting its pool first; `embedded stop` asks it to.
//!
//! This module holds the protocol both sides speak; the guest's server is in the `serve`
//! submodule, the host's client in `client`, and their public items are re-exported here.

mod client;
mod serve;
#[cfg(test)]
mod test_support;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use client::{Conn, Current, GuestDir, Info, StartSpec, Turn};
pub use serve::{open_port, serve, ServeEnd, ServeOptions};

/// Bumped when [`Request`] or [`Reply`] change: a guest speaking another version is
/// replaced.
pub const PROTOCOL: u32 = 1;

/// The name of the control port in the guest (`/sys/class/virtio-ports/*/name`).
pub const PORT_NAME: &str = "zfs-vm.ctl";

/// Where the host's `/` is mounted read-write in the guest (`zfs-vm run --rw-root`).
pub const HOST_RW: &str = "/run/zfs-vm-host";

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
}
