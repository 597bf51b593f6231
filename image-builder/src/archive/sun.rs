//! illumos tar's extended headers for the tar crate, which knows the POSIX spelling only.
//!
//! illumos tar (illumos-gate `usr/src/cmd/tar/tar.c`) writes its extended header with
//! typeflag `X` where POSIX pax writes `x`; the records are the same (`get_xdata` parses
//! `"%d %s=%s\n"`). When the entry also has an ACL, the ancillary `A` member sits between
//! the `X` and the entry it describes (`build_dblock` writes the `X`, then
//! `put_extra_attributes` the `A`); `wantit` applies the `X` to the entry after the `A`.
//! This reader hands the stream on with each `X` turned into `x` and moved past such an `A`,
//! so the tar crate applies it (path, link target, size, owner) to the right entry. Sizes
//! follow the crate's own rule: a `size` record overrides the next entry's header field.

use std::io::{self, Read};

const BLOCK: usize = 512;
/// Extended headers larger than this are refused rather than held in memory.
const MAX_EXTENDED: u64 = 1 << 20;

pub(crate) struct SunHeaders<R> {
    inner: R,
    out: Vec<u8>,
    pos: usize,
    /// Data bytes of the current member, passed through as they are.
    data_left: u64,
    /// GNU sparse extension blocks follow the header just passed.
    sparse_ext: bool,
    /// A converted `X` member waiting for the member it describes.
    held: Option<Vec<u8>>,
    /// The size an extended header gave for the next member.
    next_size: Option<u64>,
    /// Past the end of the archive, or at a header this reader does not follow: the rest
    /// passes through untouched and the tar crate reports what is wrong with it.
    raw: bool,
}

impl<R: Read> SunHeaders<R> {
    pub(crate) fn new(inner: R) -> Self {
        SunHeaders {
            inner,
            out: Vec::new(),
            pos: 0,
            data_left: 0,
            sparse_ext: false,
            held: None,
            next_size: None,
            raw: false,
        }
    }

    fn emit_held(&mut self) {
        if let Some(h) = self.held.take() {
            self.out.extend_from_slice(&h);
        }
    }

    /// Reads what follows one header block and queues the blocks to hand out.
    fn step(&mut self, mut block: [u8; BLOCK]) -> io::Result<()> {
        let header = tar::Header::from_byte_slice(&block);
        let size = if block.iter().all(|b| *b == 0) || !checksum_ok(&block) {
            None
        } else {
            header.entry_size().ok()
        };
        let Some(size) = size else {
            self.emit_held();
            self.out.extend_from_slice(&block);
            self.raw = true;
            return Ok(());
        };
        let kind = block[156];
        match kind {
            b'X' | b'x' => {
                if size > MAX_EXTENDED {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("extended header of {size} bytes is too large"),
                    ));
                }
                let mut data = vec![0u8; padded(size) as usize];
                let got = read_full(&mut self.inner, &mut data)?;
                if got < data.len() {
                    self.emit_held();
                    self.out.extend_from_slice(&block);
                    self.out.extend_from_slice(&data[..got]);
                    self.raw = true;
                    return Ok(());
                }
                if let Some(s) = record_value(&data[..size as usize], b"size") {
                    self.next_size = Some(s);
                }
                self.emit_held();
                let mut member = Vec::with_capacity(BLOCK + data.len());
                if kind == b'X' {
                    block[156] = b'x';
                    set_checksum(&mut block);
                    member.extend_from_slice(&block);
                    member.extend_from_slice(&data);
                    self.held = Some(member);
                } else {
                    self.out.extend_from_slice(&block);
                    self.out.extend_from_slice(&data);
                }
            }
            b'A' if self.held.is_some() => {
                self.out.extend_from_slice(&block);
                self.data_left = padded(size);
            }
            _ => {
                self.emit_held();
                self.out.extend_from_slice(&block);
                // GNU long names and global headers are not described by the extended
                // header before them; the crate skips them in the same way.
                let size = match kind {
                    b'L' | b'K' | b'g' => size,
                    _ => self.next_size.take().unwrap_or(size),
                };
                self.data_left = padded(size);
                self.sparse_ext = kind == b'S' && block[482] != 0;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for SunHeaders<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            self.out.clear();
            self.pos = 0;
            if self.raw {
                return self.inner.read(buf);
            }
            let mut block = [0u8; BLOCK];
            if self.sparse_ext {
                let got = read_full(&mut self.inner, &mut block)?;
                self.out.extend_from_slice(&block[..got]);
                self.sparse_ext = got == BLOCK && block[504] != 0;
                self.raw = got < BLOCK;
                continue;
            }
            if self.data_left > 0 {
                let want = buf
                    .len()
                    .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    self.raw = true;
                }
                self.data_left -= n as u64;
                return Ok(n);
            }
            let got = read_full(&mut self.inner, &mut block)?;
            if got < BLOCK {
                self.emit_held();
                self.out.extend_from_slice(&block[..got]);
                self.raw = true;
                if self.out.is_empty() {
                    return Ok(0);
                }
                continue;
            }
            self.step(block)?;
        }
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The header checksum as every tar computes it: the bytes summed, the checksum field
/// counted as spaces.
fn sum(block: &[u8; BLOCK]) -> u32 {
    block[..148]
        .iter()
        .chain(&block[156..])
        .map(|b| u32::from(*b))
        .sum::<u32>()
        + 8 * 32
}

fn checksum_ok(block: &[u8; BLOCK]) -> bool {
    tar::Header::from_byte_slice(block)
        .cksum()
        .is_ok_and(|c| c == sum(block))
}

fn set_checksum(block: &mut [u8; BLOCK]) {
    let s = format!("{:06o}\0 ", sum(block));
    block[148..156].copy_from_slice(s.as_bytes());
}

/// The value of `key` in `"%d %s=%s\n"` records, as a number.
fn record_value(mut data: &[u8], key: &[u8]) -> Option<u64> {
    let mut found = None;
    while !data.is_empty() {
        let space = data.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
        if len <= space + 1 || len > data.len() {
            return found;
        }
        let rec = &data[space + 1..len - 1];
        if let Some(eq) = rec.iter().position(|b| *b == b'=') {
            if &rec[..eq] == key {
                found = std::str::from_utf8(&rec[eq + 1..]).ok()?.parse().ok();
            }
        }
        data = &data[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let r = b"30 mtime=1600000000.000000000\n19 size=8589934592\n";
        assert_eq!(record_value(r, b"size"), Some(8_589_934_592));
        assert_eq!(record_value(r, b"uid"), None);
        assert_eq!(record_value(b"99 size=1\n", b"size"), None);
    }
}
