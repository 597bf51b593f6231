//! Rreaddir payloads: a packed run of `qid[13] offset[8] type[1] name[s]` records.

use crate::error::CodecError;
use crate::wire::{Qid, Reader, Writer};

/// One directory entry as the server sent it. `name` is raw and untrusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry<'a> {
    pub qid: Qid,
    /// Cookie to pass as the offset of the next Treaddir.
    pub offset: u64,
    /// d_type as in Linux dirent (DT_DIR = 4, DT_REG = 8, DT_LNK = 10).
    pub dtype: u8,
    pub name: &'a [u8],
}

/// Iterates over the entries of one Rreaddir payload, stopping at the first
/// malformed record.
pub struct DirEntries<'a> {
    r: Reader<'a>,
    failed: bool,
}

pub fn parse(data: &[u8]) -> DirEntries<'_> {
    DirEntries {
        r: Reader::new(data),
        failed: false,
    }
}

impl<'a> Iterator for DirEntries<'a> {
    type Item = Result<DirEntry<'a>, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.remaining() == 0 {
            return None;
        }
        let entry = (|| {
            Ok(DirEntry {
                qid: self.r.qid()?,
                offset: self.r.u64()?,
                dtype: self.r.u8()?,
                name: self.r.string()?,
            })
        })();
        self.failed = entry.is_err();
        Some(entry)
    }
}

/// Appends one entry to a payload (used by test servers).
pub fn encode(out: &mut Vec<u8>, e: &DirEntry) -> Result<(), CodecError> {
    let mut w = Writer { buf: out };
    w.qid(&e.qid);
    w.u64(e.offset);
    w.u8(e.dtype);
    w.string(e.name)
}
