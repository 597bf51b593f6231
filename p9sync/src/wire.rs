//! Little-endian primitives of the 9P wire format, with every read bounds-checked.
//!
//! Nothing here allocates more than the input it was given: lengths read from the
//! wire are checked against the bytes actually present before anything is sliced.

use crate::error::CodecError;

/// A file's identity on the server: `type[1] version[4] path[8]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Qid {
    pub kind: u8,
    pub version: u32,
    pub path: u64,
}

/// Bytes a qid takes on the wire.
pub const QID_LEN: usize = 13;

/// `QTDIR`, `QTSYMLINK`: the qid type bits a client needs to tell files apart.
pub const QT_DIR: u8 = 0x80;
pub const QT_SYMLINK: u8 = 0x02;

/// Cursor over one received message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.remaining() {
            return Err(CodecError::Truncated {
                wanted: n,
                left: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A `len[2] bytes[len]` string, returned raw: 9P names need not be UTF-8.
    pub fn string(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }

    pub fn qid(&mut self) -> Result<Qid, CodecError> {
        Ok(Qid {
            kind: self.u8()?,
            version: self.u32()?,
            path: self.u64()?,
        })
    }

    /// Rejects trailing garbage so a confused server is noticed, not papered over.
    pub fn finish(&self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(CodecError::Trailing(n)),
        }
    }
}

/// Appends wire fields to a buffer.
pub struct Writer<'a> {
    pub buf: &'a mut Vec<u8>,
}

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn string(&mut self, s: &[u8]) -> Result<(), CodecError> {
        let n = u16::try_from(s.len()).map_err(|_| CodecError::StringTooLong(s.len()))?;
        self.u16(n);
        self.buf.extend_from_slice(s);
        Ok(())
    }

    pub fn qid(&mut self, q: &Qid) {
        self.u8(q.kind);
        self.u32(q.version);
        self.u64(q.path);
    }
}
