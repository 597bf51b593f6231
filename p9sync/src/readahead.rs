//! Reading a whole file with several Treads in flight.
//!
//! One request at a time leaves the channel idle for a full round trip per chunk;
//! on a virtio device that round trip is a VM exit. Keeping a few reads
//! outstanding hides it. Replies may come back in any order (diod answers from a
//! thread pool), so they are matched by tag and delivered to the sink in file
//! order; at most `depth` chunks are ever buffered.

use std::collections::{BTreeMap, VecDeque};

use crate::client::{Client, Fid};
use crate::error::ClientError;
use crate::msg::{Rmsg, Tmsg};
use crate::transport::Transport;

/// Most reads kept in flight; vio9p has 16 request slots in all.
pub const MAX_DEPTH: usize = 8;

impl<T: Transport> Client<T> {
    /// Reads `[0, size)` of the open `fid`, handing bytes to `sink` in order, and
    /// returns how many were delivered (fewer if the file shrank).
    pub fn read_to<E: From<ClientError>>(
        &mut self,
        fid: Fid,
        size: u64,
        iounit: u32,
        depth: usize,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut chunk = self.io_size();
        if iounit != 0 {
            chunk = chunk.min(iounit);
        }
        let depth = depth.clamp(1, MAX_DEPTH);
        let mut inflight: VecDeque<(u16, u64, u32)> = VecDeque::new();
        let mut parked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let (mut next, mut done, mut short) = (0u64, 0u64, false);
        let mut failure: Option<E> = None;
        loop {
            while failure.is_none() && !short && inflight.len() < depth && next < size {
                let count = (size - next).min(chunk as u64) as u32;
                match self.submit(&Tmsg::Read {
                    fid: fid.raw(),
                    offset: next,
                    count,
                }) {
                    Ok(tag) => inflight.push_back((tag, next, count)),
                    Err(e) => failure = Some(e.into()),
                }
                next += count as u64;
            }
            if inflight.is_empty() {
                break;
            }
            // After a failure the remaining replies are still read, so the next
            // request does not receive a stale answer.
            let (tag, reply) = self.receive()?;
            let Some(i) = inflight.iter().position(|r| r.0 == tag) else {
                self.poison();
                return Err(ClientError::Protocol(format!("reply for unknown tag {tag}")).into());
            };
            let (_, off, count) = inflight.remove(i).unwrap_or_default();
            let data = match reply {
                Rmsg::Read { data } if data.len() <= count as usize => data,
                Rmsg::Lerror { ecode } => {
                    failure.get_or_insert(
                        ClientError::Remote {
                            op: "read",
                            errno: ecode,
                        }
                        .into(),
                    );
                    continue;
                }
                other => {
                    let e =
                        ClientError::Protocol(format!("Tread of {count} answered with {other:?}"));
                    failure.get_or_insert(e.into());
                    continue;
                }
            };
            short |= data.len() < count as usize;
            if failure.is_some() {
                continue;
            }
            if off != done {
                parked.insert(off, data.to_vec());
                continue;
            }
            let n = data.len();
            if let Err(e) = sink(data) {
                failure = Some(e);
                continue;
            }
            done += n as u64;
            while let Some(buf) = parked.remove(&done) {
                if let Err(e) = sink(&buf) {
                    failure = Some(e);
                    break;
                }
                done += buf.len() as u64;
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        self.count_data(done as usize);
        // A short reply in the middle leaves a gap; finish one request at a time.
        let mut buf = vec![0u8; if done < size { chunk as usize } else { 0 }];
        while done < size {
            let want = (size - done).min(buf.len() as u64) as usize;
            let n = self.read(fid, done, iounit, &mut buf[..want])?;
            if n == 0 {
                break;
            }
            sink(&buf[..n])?;
            done += n as u64;
        }
        Ok(done)
    }
}
