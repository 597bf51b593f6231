//! Decompression on its own thread, so inflating the archive and writing files overlap
//! (what `tar xzf` gets from running `gzip -d` as a separate process).

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver};

const CHUNK: usize = 1 << 20;

pub(crate) struct ReadAhead {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl ReadAhead {
    pub(crate) fn spawn(mut src: Box<dyn Read + Send>) -> io::Result<ReadAhead> {
        let (tx, rx) = mpsc::sync_channel(4);
        std::thread::Builder::new()
            .name("decompress".into())
            .spawn(move || loop {
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                let result = loop {
                    match src.read(&mut buf[filled..]) {
                        Ok(0) => break Ok(true),
                        Ok(n) => {
                            filled += n;
                            if filled == buf.len() {
                                break Ok(false);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                buf.truncate(filled);
                let (msg, stop) = match result {
                    Ok(eof) => (Ok(buf), eof),
                    Err(e) => (Err(e), true),
                };
                // The reader went away (unpacking failed): nothing more to do.
                if tx.send(msg).is_err() || stop {
                    return;
                }
            })?;
        Ok(ReadAhead {
            rx,
            cur: Vec::new(),
            pos: 0,
            eof: false,
        })
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.eof {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(buf)) => {
                    self.eof = buf.len() < CHUNK;
                    self.cur = buf;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.eof = true;
                    return Err(e);
                }
                Err(_) => {
                    self.eof = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_everything_through_in_order() {
        let data: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        let mut r = ReadAhead::spawn(Box::new(io::Cursor::new(data.clone()))).unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert!(back == data);
    }

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt input"))
        }
    }

    #[test]
    fn reports_the_source_error() {
        let mut r = ReadAhead::spawn(Box::new(Failing)).unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "corrupt input");
    }
}
