//! The 9P2000.L messages this client sends and understands, encoded and decoded
//! from complete frames (`size[4] type[1] tag[2] body`).
//!
//! Both directions are implemented so that test servers and the fuzz target can use
//! the same codec; decoding never allocates more than a fixed bound per message.

use crate::error::CodecError;
use crate::wire::{Qid, Reader, Writer};

pub const RLERROR: u8 = 7;
pub const TLOPEN: u8 = 12;
pub const RLOPEN: u8 = 13;
pub const TREADLINK: u8 = 22;
pub const RREADLINK: u8 = 23;
pub const TGETATTR: u8 = 24;
pub const RGETATTR: u8 = 25;
pub const TREADDIR: u8 = 40;
pub const RREADDIR: u8 = 41;
pub const TVERSION: u8 = 100;
pub const RVERSION: u8 = 101;
pub const TATTACH: u8 = 104;
pub const RATTACH: u8 = 105;
pub const TFLUSH: u8 = 108;
pub const RFLUSH: u8 = 109;
pub const TWALK: u8 = 110;
pub const RWALK: u8 = 111;
pub const TREAD: u8 = 116;
pub const RREAD: u8 = 117;
pub const TCLUNK: u8 = 120;
pub const RCLUNK: u8 = 121;

/// Tag reserved for Tversion.
pub const NOTAG: u16 = 0xffff;
/// "No fid" (afid of an unauthenticated attach).
pub const NOFID: u32 = 0xffff_ffff;
/// The most names one Twalk may carry (MAXWELEM).
pub const MAXWELEM: usize = 16;
/// `size[4] type[1] tag[2]`.
pub const HEADER_LEN: usize = 7;

/// Getattr mask bits a mirror needs: mode, size, mtime (plus the rest of BASIC).
pub const GETATTR_MODE: u64 = 0x1;
pub const GETATTR_MTIME: u64 = 0x40;
pub const GETATTR_SIZE: u64 = 0x200;
pub const GETATTR_BASIC: u64 = 0x7ff;

/// Rgetattr: what stat(2) would say about a remote file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attr {
    pub valid: u64,
    pub qid: Qid,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u64,
    pub blocks: u64,
    pub atime: (u64, u64),
    pub mtime: (u64, u64),
    pub ctime: (u64, u64),
    pub btime: (u64, u64),
    pub gen: u64,
    pub data_version: u64,
}

/// A request (T-message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tmsg<'a> {
    Version {
        msize: u32,
        version: &'a [u8],
    },
    Attach {
        fid: u32,
        afid: u32,
        uname: &'a [u8],
        aname: &'a [u8],
        n_uname: u32,
    },
    Walk {
        fid: u32,
        newfid: u32,
        names: Vec<&'a [u8]>,
    },
    Getattr {
        fid: u32,
        mask: u64,
    },
    Lopen {
        fid: u32,
        flags: u32,
    },
    Readdir {
        fid: u32,
        offset: u64,
        count: u32,
    },
    Read {
        fid: u32,
        offset: u64,
        count: u32,
    },
    Readlink {
        fid: u32,
    },
    Clunk {
        fid: u32,
    },
    Flush {
        oldtag: u16,
    },
}

/// A reply (R-message). Data payloads borrow from the received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rmsg<'a> {
    Lerror { ecode: u32 },
    Version { msize: u32, version: &'a [u8] },
    Attach { qid: Qid },
    Walk { qids: Vec<Qid> },
    Getattr(Attr),
    Lopen { qid: Qid, iounit: u32 },
    Readdir { data: &'a [u8] },
    Read { data: &'a [u8] },
    Readlink { target: &'a [u8] },
    Clunk,
    Flush,
}

fn frame(
    out: &mut Vec<u8>,
    kind: u8,
    tag: u16,
    body: impl FnOnce(&mut Writer) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    out.clear();
    let mut w = Writer { buf: out };
    w.u32(0);
    w.u8(kind);
    w.u16(tag);
    body(&mut w)?;
    let len = u32::try_from(out.len()).map_err(|_| CodecError::StringTooLong(out.len()))?;
    out[..4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Splits a frame into type, tag and a reader over the body, checking the size field.
fn unframe(buf: &[u8]) -> Result<(u8, u16, Reader<'_>), CodecError> {
    let mut r = Reader::new(buf);
    let size = r.u32()?;
    if size as usize != buf.len() {
        return Err(CodecError::SizeMismatch {
            field: size,
            actual: buf.len(),
        });
    }
    let kind = r.u8()?;
    let tag = r.u16()?;
    Ok((kind, tag, r))
}

impl Tmsg<'_> {
    fn kind(&self) -> u8 {
        match self {
            Tmsg::Version { .. } => TVERSION,
            Tmsg::Attach { .. } => TATTACH,
            Tmsg::Walk { .. } => TWALK,
            Tmsg::Getattr { .. } => TGETATTR,
            Tmsg::Lopen { .. } => TLOPEN,
            Tmsg::Readdir { .. } => TREADDIR,
            Tmsg::Read { .. } => TREAD,
            Tmsg::Readlink { .. } => TREADLINK,
            Tmsg::Clunk { .. } => TCLUNK,
            Tmsg::Flush { .. } => TFLUSH,
        }
    }

    /// Encodes this request as one frame into `out` (replacing its contents).
    pub fn encode(&self, tag: u16, out: &mut Vec<u8>) -> Result<(), CodecError> {
        frame(out, self.kind(), tag, |w| {
            match self {
                Tmsg::Version { msize, version } => {
                    w.u32(*msize);
                    w.string(version)?;
                }
                Tmsg::Attach {
                    fid,
                    afid,
                    uname,
                    aname,
                    n_uname,
                } => {
                    w.u32(*fid);
                    w.u32(*afid);
                    w.string(uname)?;
                    w.string(aname)?;
                    w.u32(*n_uname);
                }
                Tmsg::Walk { fid, newfid, names } => {
                    if names.len() > MAXWELEM {
                        return Err(CodecError::TooManyWalkNames(names.len()));
                    }
                    w.u32(*fid);
                    w.u32(*newfid);
                    w.u16(names.len() as u16);
                    for n in names {
                        w.string(n)?;
                    }
                }
                Tmsg::Getattr { fid, mask } => {
                    w.u32(*fid);
                    w.u64(*mask);
                }
                Tmsg::Lopen { fid, flags } => {
                    w.u32(*fid);
                    w.u32(*flags);
                }
                Tmsg::Readdir { fid, offset, count } | Tmsg::Read { fid, offset, count } => {
                    w.u32(*fid);
                    w.u64(*offset);
                    w.u32(*count);
                }
                Tmsg::Readlink { fid } | Tmsg::Clunk { fid } => w.u32(*fid),
                Tmsg::Flush { oldtag } => w.u16(*oldtag),
            }
            Ok(())
        })
    }
}

/// Decodes one request frame: the server side of the codec.
pub fn decode_request(buf: &[u8]) -> Result<(u16, Tmsg<'_>), CodecError> {
    let (kind, tag, mut r) = unframe(buf)?;
    let msg = match kind {
        TVERSION => Tmsg::Version {
            msize: r.u32()?,
            version: r.string()?,
        },
        TATTACH => Tmsg::Attach {
            fid: r.u32()?,
            afid: r.u32()?,
            uname: r.string()?,
            aname: r.string()?,
            n_uname: r.u32()?,
        },
        TWALK => {
            let fid = r.u32()?;
            let newfid = r.u32()?;
            let n = r.u16()? as usize;
            if n > MAXWELEM {
                return Err(CodecError::TooManyWalkNames(n));
            }
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.string()?);
            }
            Tmsg::Walk { fid, newfid, names }
        }
        TGETATTR => Tmsg::Getattr {
            fid: r.u32()?,
            mask: r.u64()?,
        },
        TLOPEN => Tmsg::Lopen {
            fid: r.u32()?,
            flags: r.u32()?,
        },
        TREADDIR => Tmsg::Readdir {
            fid: r.u32()?,
            offset: r.u64()?,
            count: r.u32()?,
        },
        TREAD => Tmsg::Read {
            fid: r.u32()?,
            offset: r.u64()?,
            count: r.u32()?,
        },
        TREADLINK => Tmsg::Readlink { fid: r.u32()? },
        TCLUNK => Tmsg::Clunk { fid: r.u32()? },
        TFLUSH => Tmsg::Flush { oldtag: r.u16()? },
        other => return Err(CodecError::UnknownType(other)),
    };
    r.finish()?;
    Ok((tag, msg))
}

impl Rmsg<'_> {
    fn kind(&self) -> u8 {
        match self {
            Rmsg::Lerror { .. } => RLERROR,
            Rmsg::Version { .. } => RVERSION,
            Rmsg::Attach { .. } => RATTACH,
            Rmsg::Walk { .. } => RWALK,
            Rmsg::Getattr(_) => RGETATTR,
            Rmsg::Lopen { .. } => RLOPEN,
            Rmsg::Readdir { .. } => RREADDIR,
            Rmsg::Read { .. } => RREAD,
            Rmsg::Readlink { .. } => RREADLINK,
            Rmsg::Clunk => RCLUNK,
            Rmsg::Flush => RFLUSH,
        }
    }

    /// Encodes this reply as one frame into `out` (replacing its contents).
    pub fn encode(&self, tag: u16, out: &mut Vec<u8>) -> Result<(), CodecError> {
        frame(out, self.kind(), tag, |w| {
            match self {
                Rmsg::Lerror { ecode } => w.u32(*ecode),
                Rmsg::Version { msize, version } => {
                    w.u32(*msize);
                    w.string(version)?;
                }
                Rmsg::Attach { qid } => w.qid(qid),
                Rmsg::Walk { qids } => {
                    if qids.len() > MAXWELEM {
                        return Err(CodecError::TooManyWalkNames(qids.len()));
                    }
                    w.u16(qids.len() as u16);
                    qids.iter().for_each(|q| w.qid(q));
                }
                Rmsg::Getattr(a) => encode_attr(w, a),
                Rmsg::Lopen { qid, iounit } => {
                    w.qid(qid);
                    w.u32(*iounit);
                }
                Rmsg::Readdir { data } | Rmsg::Read { data } => {
                    let n = u32::try_from(data.len())
                        .map_err(|_| CodecError::StringTooLong(data.len()))?;
                    w.u32(n);
                    w.buf.extend_from_slice(data);
                }
                Rmsg::Readlink { target } => w.string(target)?,
                Rmsg::Clunk | Rmsg::Flush => {}
            }
            Ok(())
        })
    }
}

fn encode_attr(w: &mut Writer, a: &Attr) {
    w.u64(a.valid);
    w.qid(&a.qid);
    w.u32(a.mode);
    w.u32(a.uid);
    w.u32(a.gid);
    for v in [a.nlink, a.rdev, a.size, a.blksize, a.blocks] {
        w.u64(v);
    }
    for (s, ns) in [a.atime, a.mtime, a.ctime, a.btime] {
        w.u64(s);
        w.u64(ns);
    }
    w.u64(a.gen);
    w.u64(a.data_version);
}

fn decode_attr(r: &mut Reader) -> Result<Attr, CodecError> {
    let mut a = Attr {
        valid: r.u64()?,
        qid: r.qid()?,
        mode: r.u32()?,
        uid: r.u32()?,
        gid: r.u32()?,
        ..Attr::default()
    };
    a.nlink = r.u64()?;
    a.rdev = r.u64()?;
    a.size = r.u64()?;
    a.blksize = r.u64()?;
    a.blocks = r.u64()?;
    a.atime = (r.u64()?, r.u64()?);
    a.mtime = (r.u64()?, r.u64()?);
    a.ctime = (r.u64()?, r.u64()?);
    a.btime = (r.u64()?, r.u64()?);
    a.gen = r.u64()?;
    a.data_version = r.u64()?;
    Ok(a)
}

/// Decodes one reply frame. The caller has already bounded `buf` by msize.
pub fn decode_reply(buf: &[u8]) -> Result<(u16, Rmsg<'_>), CodecError> {
    let (kind, tag, mut r) = unframe(buf)?;
    let msg = match kind {
        RLERROR => Rmsg::Lerror { ecode: r.u32()? },
        RVERSION => Rmsg::Version {
            msize: r.u32()?,
            version: r.string()?,
        },
        RATTACH => Rmsg::Attach { qid: r.qid()? },
        RWALK => {
            let n = r.u16()? as usize;
            if n > MAXWELEM {
                return Err(CodecError::TooManyWalkNames(n));
            }
            let mut qids = Vec::with_capacity(n);
            for _ in 0..n {
                qids.push(r.qid()?);
            }
            Rmsg::Walk { qids }
        }
        RGETATTR => Rmsg::Getattr(decode_attr(&mut r)?),
        RLOPEN => Rmsg::Lopen {
            qid: r.qid()?,
            iounit: r.u32()?,
        },
        RREADDIR | RREAD => {
            let n = r.u32()? as usize;
            let data = r.bytes(n)?;
            if kind == RREAD {
                Rmsg::Read { data }
            } else {
                Rmsg::Readdir { data }
            }
        }
        RREADLINK => Rmsg::Readlink {
            target: r.string()?,
        },
        RCLUNK => Rmsg::Clunk,
        RFLUSH => Rmsg::Flush,
        other => return Err(CodecError::UnknownType(other)),
    };
    r.finish()?;
    Ok((tag, msg))
}
