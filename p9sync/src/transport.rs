//! Moving whole 9P frames over a byte stream (TCP, Unix socket) or a message
//! device (`/dev/9p/<tag>` from illumos `vio9p`).

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::TransportError;
use crate::msg::HEADER_LEN;

/// Largest frame `vio9p` moves in either direction (its per-request DMA buffer).
pub const VIO9P_MAX_MESSAGE: u32 = 8192;

/// One request/response channel to a 9P server.
pub trait Transport {
    /// Largest frame this channel can carry at all; msize is capped to it.
    fn max_message(&self) -> u32;
    /// Sends one complete frame.
    fn send(&mut self, frame: &[u8]) -> Result<(), TransportError>;
    /// Receives one complete frame into `buf`, refusing frames over `limit` bytes
    /// before allocating for them.
    fn recv(&mut self, buf: &mut Vec<u8>, limit: u32) -> Result<(), TransportError>;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn max_message(&self) -> u32 {
        (**self).max_message()
    }
    fn send(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        (**self).send(frame)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, limit: u32) -> Result<(), TransportError> {
        (**self).recv(buf, limit)
    }
}

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// 9P over a byte stream: frames are delimited by their size field.
pub struct StreamTransport {
    sock: Sock,
    timeout: Duration,
}

impl StreamTransport {
    pub fn tcp(addr: impl ToSocketAddrs, timeout: Duration) -> Result<Self, TransportError> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    // Every exchange is one small request then a wait: Nagle would
                    // add a delay to each one.
                    s.set_nodelay(true)?;
                    return Ok(StreamTransport {
                        sock: Sock::Tcp(s),
                        timeout,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .map(TransportError::Io)
            .unwrap_or_else(|| TransportError::Io(ErrorKind::NotFound.into())))
    }

    pub fn unix(path: &Path, timeout: Duration) -> Result<Self, TransportError> {
        let s = UnixStream::connect(path).map_err(|source| TransportError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(StreamTransport {
            sock: Sock::Unix(s),
            timeout,
        })
    }

    /// Wraps an already connected Unix stream (e.g. one end of a socketpair).
    pub fn from_unix(s: UnixStream, timeout: Duration) -> Self {
        StreamTransport {
            sock: Sock::Unix(s),
            timeout,
        }
    }

    fn set_timeouts(&self, t: Duration) -> std::io::Result<()> {
        // A zero duration means "block forever" to the socket API.
        let t = Some(t.max(Duration::from_millis(1)));
        match &self.sock {
            Sock::Tcp(s) => s.set_read_timeout(t).and_then(|_| s.set_write_timeout(t)),
            Sock::Unix(s) => s.set_read_timeout(t).and_then(|_| s.set_write_timeout(t)),
        }
    }

    /// Reads exactly `buf.len()` bytes before `deadline`, so a server dripping one
    /// byte at a time cannot stretch one reply forever.
    fn read_full(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), TransportError> {
        let mut done = 0;
        while done < buf.len() {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or(TransportError::Timeout(self.timeout))?;
            self.set_timeouts(left)?;
            let n = match &mut self.sock {
                Sock::Tcp(s) => s.read(&mut buf[done..]),
                Sock::Unix(s) => s.read(&mut buf[done..]),
            };
            match n {
                Ok(0) => return Err(TransportError::Closed),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.map_err(e)),
            }
        }
        Ok(())
    }

    fn map_err(&self, e: std::io::Error) -> TransportError {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => TransportError::Timeout(self.timeout),
            ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => {
                TransportError::Closed
            }
            _ => TransportError::Io(e),
        }
    }
}

impl Transport for StreamTransport {
    fn max_message(&self) -> u32 {
        u32::MAX
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        self.set_timeouts(self.timeout)?;
        let r = match &mut self.sock {
            Sock::Tcp(s) => s.write_all(frame),
            Sock::Unix(s) => s.write_all(frame),
        };
        r.map_err(|e| self.map_err(e))
    }

    fn recv(&mut self, buf: &mut Vec<u8>, limit: u32) -> Result<(), TransportError> {
        let deadline = Instant::now() + self.timeout;
        let mut size = [0u8; 4];
        self.read_full(&mut size, deadline)?;
        let len = check_size(u32::from_le_bytes(size), limit)?;
        buf.clear();
        buf.resize(len, 0);
        buf[..4].copy_from_slice(&size);
        self.read_full(&mut buf[4..], deadline)
    }
}

fn check_size(size: u32, limit: u32) -> Result<usize, TransportError> {
    if size > limit {
        return Err(TransportError::Oversize { size, max: limit });
    }
    if (size as usize) < HEADER_LEN {
        return Err(TransportError::Undersize(size));
    }
    Ok(size as usize)
}

/// 9P over a message device: each write(2) submits one request and each read(2)
/// returns one whole reply.
///
/// illumos `vio9p` insists on an exclusive read/write open (`O_EXCL`, EBUSY for a
/// second opener) and has no poll(2) entry point, so the timeout is implemented by
/// opening non-blocking and retrying EAGAIN with a short back-off.
pub struct DeviceTransport {
    file: File,
    timeout: Duration,
    max: u32,
}

impl DeviceTransport {
    pub fn open(path: &Path, timeout: Duration) -> Result<Self, TransportError> {
        use rustix::fs::{Mode, OFlags};
        let flags =
            OFlags::RDWR | OFlags::EXCL | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| match e {
            rustix::io::Errno::BUSY => TransportError::Busy(path.to_owned()),
            e => TransportError::Open {
                path: path.to_owned(),
                source: e.into(),
            },
        })?;
        Ok(Self::from_file(File::from(fd), timeout))
    }

    /// Wraps an already open, non-blocking, message-preserving descriptor.
    pub fn from_file(file: File, timeout: Duration) -> Self {
        DeviceTransport {
            file,
            timeout,
            max: VIO9P_MAX_MESSAGE,
        }
    }

    fn retry<R>(
        &mut self,
        mut op: impl FnMut(&mut File) -> std::io::Result<R>,
    ) -> Result<R, TransportError> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_micros(20);
        loop {
            match op(&mut self.file) {
                Ok(r) => return Ok(r),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(TransportError::Timeout(self.timeout));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(2));
                }
                Err(e) => return Err(TransportError::Io(e)),
            }
        }
    }
}

impl Transport for DeviceTransport {
    fn max_message(&self) -> u32 {
        self.max
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        if frame.len() > self.max as usize {
            return Err(TransportError::Oversize {
                size: frame.len() as u32,
                max: self.max,
            });
        }
        let n = self.retry(|f| f.write(frame))?;
        if n != frame.len() {
            return Err(TransportError::Io(std::io::Error::new(
                ErrorKind::WriteZero,
                format!("device took {n} of {} bytes of one request", frame.len()),
            )));
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>, limit: u32) -> Result<(), TransportError> {
        let cap = limit.min(self.max) as usize;
        buf.clear();
        buf.resize(cap, 0);
        let n = self.retry(|f| f.read(&mut buf[..]))?;
        if n == 0 {
            return Err(TransportError::Closed);
        }
        buf.truncate(n);
        if n >= 4 {
            let size = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
            check_size(size, cap as u32)?;
        }
        Ok(())
    }
}
