//! A gzip writer that compresses on every core and still produces one ordinary gzip member.
//!
//! Input is cut into blocks; worker threads deflate each block on its own, primed with the
//! last 32 KiB of the block before it as a preset dictionary (so matches across the cut are
//! not lost), and end every block but the last with a sync flush, which leaves the bit
//! stream byte-aligned. Concatenated in order, the blocks form one valid deflate stream
//! (the approach pigz takes). The CRC-32 and length for the gzip trailer are computed over
//! the input here, which is far cheaper than deflating it.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

const BLOCK: usize = 1 << 20;
const WINDOW: usize = 32 * 1024;

/// Magic, deflate, no flags, no mtime (so output depends on input only), no extra flags,
/// OS "Unix".
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

struct Job {
    seq: u64,
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
}

type Done = (u64, io::Result<Vec<u8>>);

pub struct ParGzEncoder<W: Write> {
    inner: Option<W>,
    block: Vec<u8>,
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
    next_seq: u64,
    next_write: u64,
    max_in_flight: u64,
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Done>,
    ready: BTreeMap<u64, Vec<u8>>,
    workers: Vec<JoinHandle<()>>,
}

impl<W: Write> ParGzEncoder<W> {
    /// `threads` workers (at least one) compressing at `level` (0-9, like `gzip -N`).
    pub fn new(mut inner: W, level: u32, threads: usize) -> io::Result<Self> {
        inner.write_all(&HEADER)?;
        let threads = threads.max(1);
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let level = Compression::new(level.min(9));
        let workers = (0..threads)
            .map(|i| {
                let rx = Arc::clone(&job_rx);
                let tx = done_tx.clone();
                std::thread::Builder::new()
                    .name(format!("gzip-{i}"))
                    .spawn(move || worker(rx, tx, level))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(ParGzEncoder {
            inner: Some(inner),
            block: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            len: 0,
            next_seq: 0,
            next_write: 0,
            max_in_flight: (threads * 3) as u64,
            jobs: Some(job_tx),
            results: done_rx,
            ready: BTreeMap::new(),
            workers,
        })
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(
            &mut self.block,
            Vec::with_capacity(if last { 0 } else { BLOCK }),
        );
        let dict = std::mem::take(&mut self.dict);
        if !last {
            self.dict = data[data.len().saturating_sub(WINDOW)..].to_vec();
        }
        while self.next_seq - self.next_write >= self.max_in_flight {
            self.collect_one()?;
        }
        let job = Job {
            seq: self.next_seq,
            data,
            dict,
            last,
        };
        self.next_seq += 1;
        self.jobs
            .as_ref()
            .ok_or_else(closed)?
            .send(job)
            .map_err(|_| closed())
    }

    /// Waits for one finished block and writes out whatever is now in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, out) = self.results.recv().map_err(|_| closed())?;
        self.ready.insert(seq, out?);
        let inner = self.inner.as_mut().ok_or_else(closed)?;
        while let Some(out) = self.ready.remove(&self.next_write) {
            inner.write_all(&out)?;
            self.next_write += 1;
        }
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while self.next_write < self.next_seq {
            self.collect_one()?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        let mut inner = self.inner.take().ok_or_else(closed)?;
        inner.write_all(&crc.to_le_bytes())?;
        // ISIZE is the length modulo 2^32 (RFC 1952).
        inner.write_all(&(self.len as u32).to_le_bytes())?;
        inner.flush()?;
        Ok(inner)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        if self.block.len() == BLOCK {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    /// Blocks are only compressed once full; flushing passes on what is already done.
    fn flush(&mut self) -> io::Result<()> {
        match self.inner.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl<W: Write> Drop for ParGzEncoder<W> {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn closed() -> io::Error {
    io::Error::other("parallel gzip workers stopped")
}

fn worker(jobs: Arc<Mutex<Receiver<Job>>>, done: mpsc::Sender<Done>, level: Compression) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let out = deflate_block(&job, level);
        if done.send((job.seq, out)).is_err() {
            return;
        }
    }
}

fn deflate_block(job: &Job, level: Compression) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(level, false);
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out: Vec<u8> = Vec::with_capacity(job.data.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        if status == Status::StreamEnd {
            return Ok(out);
        }
        // A sync flush is complete once all input is in and deflate left output room.
        if !job.last && c.total_in() as usize == job.data.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: words with a counter, so blocks differ.
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(format!("line {i} of some text {}\n", i % 97).as_bytes());
            i += 1;
        }
        v.truncate(len);
        v
    }

    fn round_trip(len: usize, threads: usize) {
        let data = sample(len);
        let mut enc = ParGzEncoder::new(Vec::new(), 6, threads).unwrap();
        for chunk in data.chunks(70_001) {
            enc.write_all(chunk).unwrap();
        }
        let gz = enc.finish().unwrap();
        // A single member: the plain (not multi-member) decoder must read it all.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "content differs for len {len}");
    }

    #[test]
    fn round_trips_at_block_edges() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
            round_trip(len, 3);
        }
        round_trip(2 * BLOCK + 7, 1);
    }

    #[test]
    fn output_does_not_depend_on_thread_count() {
        let data = sample(5 * BLOCK / 2);
        let pack = |threads| {
            let mut enc = ParGzEncoder::new(Vec::new(), 6, threads).unwrap();
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        assert_eq!(pack(1), pack(4));
    }
}
