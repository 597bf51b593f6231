//! A 9P2000.L client session: version negotiation, fids, and one method per request.
//!
//! Requests are issued one at a time. Any transport failure (timeout, short read,
//! oversized frame) poisons the session, because a late reply could otherwise be
//! taken for the answer to a later request.

use std::collections::HashSet;

use crate::dirent;
use crate::error::{ClientError, CodecError};
use crate::msg::{self, Attr, Rmsg, Tmsg, MAXWELEM, NOFID, NOTAG};
use crate::transport::Transport;
use crate::wire::Qid;

/// The protocol this client speaks.
pub const VERSION: &[u8] = b"9P2000.L";
/// Smallest msize accepted: an Rgetattr (160 bytes) and a useful read must fit.
pub const MIN_MSIZE: u32 = 512;
/// Room left in a frame for the Tread/Rread/Treaddir header (Linux's P9_IOHDR_SIZE).
pub const IOHDR: u32 = 24;
/// Most fids the client keeps open at once; a sync needs about one per tree level.
pub const MAX_FIDS: usize = 4096;

/// A server-side handle owned by this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fid(u32);

impl Fid {
    pub fn raw(self) -> u32 {
        self.0
    }
}

/// An owned directory entry, copied out of an Rreaddir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub qid: Qid,
    pub offset: u64,
    pub dtype: u8,
    pub name: Vec<u8>,
}

/// Counters that let tests and benchmarks check what went over the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub largest_sent: usize,
    pub largest_received: usize,
    pub data_bytes: u64,
}

#[derive(Default)]
struct FidPool {
    next: u32,
    free: Vec<u32>,
    live: HashSet<u32>,
}

impl FidPool {
    fn take(&mut self) -> Result<Fid, ClientError> {
        if self.live.len() >= MAX_FIDS {
            return Err(ClientError::FidsExhausted);
        }
        let f = match self.free.pop() {
            Some(f) => f,
            None => {
                let f = self.next;
                self.next += 1;
                f
            }
        };
        self.live.insert(f);
        Ok(Fid(f))
    }

    fn give(&mut self, f: Fid) {
        if self.live.remove(&f.0) {
            self.free.push(f.0);
        }
    }

    fn is_live(&self, f: Fid) -> bool {
        self.live.contains(&f.0)
    }
}

pub struct Client<T: Transport> {
    t: T,
    msize: u32,
    tag: u16,
    fids: FidPool,
    out: Vec<u8>,
    inb: Vec<u8>,
    poisoned: bool,
    stats: Stats,
}

fn kind_name(r: &Rmsg) -> &'static str {
    match r {
        Rmsg::Lerror { .. } => "Rlerror",
        Rmsg::Version { .. } => "Rversion",
        Rmsg::Attach { .. } => "Rattach",
        Rmsg::Walk { .. } => "Rwalk",
        Rmsg::Getattr(_) => "Rgetattr",
        Rmsg::Lopen { .. } => "Rlopen",
        Rmsg::Readdir { .. } => "Rreaddir",
        Rmsg::Read { .. } => "Rread",
        Rmsg::Readlink { .. } => "Rreadlink",
        Rmsg::Clunk => "Rclunk",
        Rmsg::Flush => "Rflush",
    }
}

fn unexpected(op: &str, r: &Rmsg) -> ClientError {
    ClientError::Protocol(format!("{op} answered with {}", kind_name(r)))
}

impl<T: Transport> Client<T> {
    /// Negotiates the protocol and msize (capped by `want` and by the transport).
    pub fn connect(t: T, want: u32) -> Result<Self, ClientError> {
        let msize = want.min(t.max_message());
        let mut c = Client {
            t,
            msize,
            tag: 0,
            fids: FidPool::default(),
            out: Vec::new(),
            inb: Vec::new(),
            poisoned: false,
            stats: Stats::default(),
        };
        if msize < MIN_MSIZE {
            return Err(ClientError::Protocol(format!(
                "msize {msize} below minimum {MIN_MSIZE}"
            )));
        }
        let (got, version) = match c.rpc(
            "version",
            &Tmsg::Version {
                msize,
                version: VERSION,
            },
        )? {
            Rmsg::Version { msize, version } => (msize, version.to_vec()),
            r => return Err(unexpected("Tversion", &r)),
        };
        if version != VERSION {
            return Err(ClientError::Version(
                String::from_utf8_lossy(&version).into_owned(),
            ));
        }
        if got > msize || got < MIN_MSIZE {
            return Err(ClientError::Protocol(format!(
                "server msize {got} outside {MIN_MSIZE}..={msize}"
            )));
        }
        c.msize = got;
        Ok(c)
    }

    pub fn msize(&self) -> u32 {
        self.msize
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Largest payload one Tread/Treaddir may ask for.
    pub fn io_size(&self) -> u32 {
        self.msize - IOHDR
    }

    /// Encodes and sends one request; returns its tag. Transport failures poison
    /// the session.
    pub(crate) fn submit(&mut self, m: &Tmsg) -> Result<u16, ClientError> {
        if self.poisoned {
            return Err(ClientError::Poisoned);
        }
        let tag = if matches!(m, Tmsg::Version { .. }) {
            NOTAG
        } else {
            self.tag = (self.tag + 1) % NOTAG;
            self.tag
        };
        m.encode(tag, &mut self.out)?;
        if self.out.len() > self.msize as usize {
            return Err(CodecError::TooBig {
                size: self.out.len(),
                msize: self.msize,
            }
            .into());
        }
        self.stats.requests += 1;
        self.stats.largest_sent = self.stats.largest_sent.max(self.out.len());
        if let Err(e) = self.t.send(&self.out) {
            self.poisoned = true;
            return Err(e.into());
        }
        Ok(tag)
    }

    /// Receives and decodes the next reply, whichever request it answers.
    pub(crate) fn receive(&mut self) -> Result<(u16, Rmsg<'_>), ClientError> {
        if self.poisoned {
            return Err(ClientError::Poisoned);
        }
        if let Err(e) = self.t.recv(&mut self.inb, self.msize) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.stats.largest_received = self.stats.largest_received.max(self.inb.len());
        Ok(msg::decode_reply(&self.inb)?)
    }

    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    pub(crate) fn count_data(&mut self, n: usize) {
        self.stats.data_bytes += n as u64;
    }

    fn rpc(&mut self, op: &'static str, m: &Tmsg) -> Result<Rmsg<'_>, ClientError> {
        let tag = self.submit(m)?;
        let (rtag, _) = self.receive()?;
        if rtag != tag {
            self.poisoned = true;
            return Err(ClientError::Protocol(format!(
                "reply tag {rtag} for request tag {tag}"
            )));
        }
        // Decoded again to hand out a borrow the tag check did not hold.
        match msg::decode_reply(&self.inb)?.1 {
            Rmsg::Lerror { ecode } => Err(ClientError::Remote { op, errno: ecode }),
            r => Ok(r),
        }
    }

    /// Attaches to the export `aname`, returning a fid for its root.
    pub fn attach(&mut self, uname: &str, aname: &str, n_uname: u32) -> Result<Fid, ClientError> {
        let fid = self.fids.take()?;
        let m = Tmsg::Attach {
            fid: fid.0,
            afid: NOFID,
            uname: uname.as_bytes(),
            aname: aname.as_bytes(),
            n_uname,
        };
        match self.rpc("attach", &m) {
            Ok(Rmsg::Attach { .. }) => Ok(fid),
            Ok(r) => {
                let e = unexpected("Tattach", &r);
                self.fids.give(fid);
                Err(e)
            }
            Err(e) => {
                self.fids.give(fid);
                Err(e)
            }
        }
    }

    /// Walks from `fid` through `names` to a new fid (no names clones `fid`).
    pub fn walk(&mut self, fid: Fid, names: &[&[u8]]) -> Result<Fid, ClientError> {
        let newfid = self.fids.take()?;
        let mut from = fid;
        let mut chunks: Vec<&[&[u8]]> = names.chunks(MAXWELEM).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for (i, chunk) in chunks.iter().enumerate() {
            let m = Tmsg::Walk {
                fid: from.0,
                newfid: newfid.0,
                names: chunk.to_vec(),
            };
            let got = match self.rpc("walk", &m) {
                Ok(Rmsg::Walk { qids }) => Ok(qids.len()),
                Ok(r) => Err(unexpected("Twalk", &r)),
                Err(e) => Err(e),
            };
            let failure = match got {
                Ok(n) if n == chunk.len() => None,
                // A short walk leaves newfid unassigned: report it like a failed lookup.
                Ok(n) if n < chunk.len() => Some(ClientError::Remote {
                    op: "walk",
                    errno: 2,
                }),
                Ok(n) => Some(ClientError::Protocol(format!(
                    "walk of {} names returned {n} qids",
                    chunk.len()
                ))),
                Err(e) => Some(e),
            };
            if let Some(e) = failure {
                if i > 0 {
                    let _ = self.clunk(newfid);
                } else {
                    self.fids.give(newfid);
                }
                return Err(e);
            }
            from = newfid;
        }
        Ok(newfid)
    }

    pub fn getattr(&mut self, fid: Fid, mask: u64) -> Result<Attr, ClientError> {
        match self.rpc("getattr", &Tmsg::Getattr { fid: fid.0, mask })? {
            Rmsg::Getattr(a) => Ok(a),
            r => Err(unexpected("Tgetattr", &r)),
        }
    }

    /// Opens `fid` with Linux open(2) flags; returns the qid and iounit (0 = msize-bound).
    pub fn lopen(&mut self, fid: Fid, flags: u32) -> Result<(Qid, u32), ClientError> {
        match self.rpc("lopen", &Tmsg::Lopen { fid: fid.0, flags })? {
            Rmsg::Lopen { qid, iounit } => Ok((qid, iounit)),
            r => Err(unexpected("Tlopen", &r)),
        }
    }

    /// One Treaddir from `offset`; an empty result means the end of the directory.
    pub fn readdir(&mut self, fid: Fid, offset: u64) -> Result<Vec<Entry>, ClientError> {
        let count = self.io_size();
        let data = match self.rpc(
            "readdir",
            &Tmsg::Readdir {
                fid: fid.0,
                offset,
                count,
            },
        )? {
            Rmsg::Readdir { data } => data,
            r => return Err(unexpected("Treaddir", &r)),
        };
        if data.len() > count as usize {
            return Err(ClientError::Protocol(format!(
                "readdir returned {} > {count} bytes",
                data.len()
            )));
        }
        let entries = dirent::parse(data)
            .map(|e| {
                e.map(|e| Entry {
                    qid: e.qid,
                    offset: e.offset,
                    dtype: e.dtype,
                    name: e.name.to_vec(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(entries)
    }

    /// Reads up to `buf.len()` bytes at `offset`, bounded by msize and `iounit`.
    pub fn read(
        &mut self,
        fid: Fid,
        offset: u64,
        iounit: u32,
        buf: &mut [u8],
    ) -> Result<usize, ClientError> {
        let mut count = self
            .io_size()
            .min(u32::try_from(buf.len()).unwrap_or(u32::MAX));
        if iounit != 0 {
            count = count.min(iounit);
        }
        let data = match self.rpc(
            "read",
            &Tmsg::Read {
                fid: fid.0,
                offset,
                count,
            },
        )? {
            Rmsg::Read { data } => data,
            r => return Err(unexpected("Tread", &r)),
        };
        if data.len() > count as usize {
            return Err(ClientError::Protocol(format!(
                "read returned {} > {count} bytes",
                data.len()
            )));
        }
        let n = data.len();
        buf[..n].copy_from_slice(data);
        self.stats.data_bytes += n as u64;
        Ok(n)
    }

    pub fn readlink(&mut self, fid: Fid) -> Result<Vec<u8>, ClientError> {
        match self.rpc("readlink", &Tmsg::Readlink { fid: fid.0 })? {
            Rmsg::Readlink { target } => Ok(target.to_vec()),
            r => Err(unexpected("Treadlink", &r)),
        }
    }

    /// Releases `fid`. The fid is gone afterwards even if the server complains.
    pub fn clunk(&mut self, fid: Fid) -> Result<(), ClientError> {
        // A second clunk could hit a newer fid that reused the number.
        if !self.fids.is_live(fid) {
            return Err(ClientError::StaleFid(fid.0));
        }
        let r = match self.rpc("clunk", &Tmsg::Clunk { fid: fid.0 }) {
            Ok(Rmsg::Clunk) => Ok(()),
            Ok(r) => Err(unexpected("Tclunk", &r)),
            Err(e) => Err(e),
        };
        self.fids.give(fid);
        r
    }

    /// Lists a whole directory through a private open fid, refusing to gather more
    /// than `max_entries` (a server whose offsets never end would loop forever).
    pub fn list(&mut self, dir: Fid, max_entries: usize) -> Result<Vec<Entry>, ClientError> {
        let fid = self.walk(dir, &[])?;
        let r = self.list_open(fid, max_entries);
        let c = self.clunk(fid);
        let v = r?;
        c?;
        Ok(v)
    }

    fn list_open(&mut self, fid: Fid, max_entries: usize) -> Result<Vec<Entry>, ClientError> {
        self.lopen(fid, 0)?;
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let batch = self.readdir(fid, offset)?;
            let Some(last) = batch.last() else {
                return Ok(all);
            };
            // A cookie names the entry after it, so one equal to the offset we asked
            // from would return the same batch forever.
            if last.offset == offset {
                return Err(ClientError::Protocol(
                    "readdir offset did not advance".into(),
                ));
            }
            offset = last.offset;
            if all.len() + batch.len() > max_entries {
                return Err(ClientError::Protocol(format!(
                    "directory has more than {max_entries} entries"
                )));
            }
            all.extend(batch);
        }
    }
}
