//! A scripted 9P2000.L server over a socketpair that can lie: hostile names,
//! oversized frames, wrong tags, endless directories, silence.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use p9sync::dirent::{self, DirEntry};
use p9sync::msg::{decode_request, Attr, Rmsg, Tmsg, GETATTR_BASIC};
use p9sync::wire::{Qid, QT_DIR, QT_SYMLINK};

pub enum Node {
    Dir(Vec<(Vec<u8>, Node)>),
    File(Vec<u8>, u32),
    Link(Vec<u8>),
}

pub fn dir(entries: Vec<(&[u8], Node)>) -> Node {
    Node::Dir(entries.into_iter().map(|(n, c)| (n.to_vec(), c)).collect())
}

pub fn file(body: &[u8]) -> Node {
    Node::File(body.to_vec(), 0o644)
}

#[derive(Clone, Default)]
pub struct Quirks {
    pub version: Option<&'static [u8]>,
    pub msize_reply: Option<u32>,
    pub giant_frame_on_getattr: bool,
    pub read_returns_extra: bool,
    pub readdir_never_advances: bool,
    pub wrong_tag_on_walk: bool,
    pub silent_on_attach: bool,
    /// Answer pipelined reads newest first.
    pub reorder_reads: bool,
    /// Return about half of what each read asks for.
    pub short_reads: bool,
}

struct Server {
    tree: Node,
    q: Quirks,
    fids: HashMap<u32, Vec<usize>>,
}

impl Server {
    fn node(&self, path: &[usize]) -> &Node {
        path.iter().fold(&self.tree, |n, &i| match n {
            Node::Dir(v) => &v[i].1,
            _ => n,
        })
    }

    fn qid(&self, path: &[usize]) -> Qid {
        let kind = match self.node(path) {
            Node::Dir(_) => QT_DIR,
            Node::Link(_) => QT_SYMLINK,
            Node::File(..) => 0,
        };
        let id = path.iter().fold(1u64, |h, &i| h * 131 + i as u64);
        Qid {
            kind,
            version: 0,
            path: id,
        }
    }

    fn reply(&mut self, m: Tmsg) -> Option<Rmsg<'static>> {
        Some(match m {
            Tmsg::Version { msize, .. } => Rmsg::Version {
                msize: self.q.msize_reply.unwrap_or(msize.min(65536)),
                version: self.q.version.unwrap_or(b"9P2000.L"),
            },
            Tmsg::Attach { fid, .. } => {
                if self.q.silent_on_attach {
                    return None;
                }
                self.fids.insert(fid, vec![]);
                Rmsg::Attach { qid: self.qid(&[]) }
            }
            Tmsg::Walk { fid, newfid, names } => {
                let mut path = self.fids.get(&fid)?.clone();
                let mut qids = vec![];
                for n in &names {
                    let Node::Dir(v) = self.node(&path) else {
                        break;
                    };
                    let Some(i) = v.iter().position(|(name, _)| name == n) else {
                        break;
                    };
                    path.push(i);
                    qids.push(self.qid(&path));
                }
                if qids.is_empty() && !names.is_empty() {
                    return Some(Rmsg::Lerror { ecode: 2 });
                }
                if qids.len() == names.len() {
                    self.fids.insert(newfid, path);
                }
                Rmsg::Walk { qids }
            }
            Tmsg::Getattr { fid, .. } => {
                let path = self.fids.get(&fid)?.clone();
                let (mode, size) = match self.node(&path) {
                    Node::Dir(_) => (0o040755, 0),
                    Node::File(b, m) => (0o100000 | m, b.len() as u64),
                    Node::Link(t) => (0o120777, t.len() as u64),
                };
                Rmsg::Getattr(Attr {
                    valid: GETATTR_BASIC,
                    qid: self.qid(&path),
                    mode,
                    size,
                    mtime: (1_700_000_000, 5),
                    atime: (1_700_000_000, 5),
                    ..Attr::default()
                })
            }
            Tmsg::Lopen { fid, .. } => Rmsg::Lopen {
                qid: self.qid(self.fids.get(&fid)?),
                iounit: 0,
            },
            Tmsg::Readdir { fid, offset, count } => {
                let path = self.fids.get(&fid)?.clone();
                let Node::Dir(v) = self.node(&path) else {
                    return Some(Rmsg::Lerror { ecode: 20 });
                };
                let mut data = Vec::new();
                let start = if self.q.readdir_never_advances {
                    0
                } else {
                    offset as usize
                };
                for (i, (name, _)) in v.iter().enumerate().skip(start) {
                    let mut one = Vec::new();
                    let mut p = path.clone();
                    p.push(i);
                    let off = if self.q.readdir_never_advances {
                        1
                    } else {
                        i as u64 + 1
                    };
                    let e = DirEntry {
                        qid: self.qid(&p),
                        offset: off,
                        dtype: 0,
                        name,
                    };
                    dirent::encode(&mut one, &e).unwrap();
                    if data.len() + one.len() > count as usize {
                        break;
                    }
                    data.extend(one);
                }
                return Some(Rmsg::Readdir { data: data.leak() });
            }
            Tmsg::Read { fid, offset, count } => {
                let Node::File(b, _) = self.node(self.fids.get(&fid)?) else {
                    return None;
                };
                let start = (offset as usize).min(b.len());
                let end = (start + count as usize).min(b.len());
                let end = if self.q.short_reads {
                    start + (end - start).div_ceil(2)
                } else {
                    end
                };
                let mut data = b[start..end].to_vec();
                if self.q.read_returns_extra {
                    data.resize(count as usize + 100, b'X');
                }
                Rmsg::Read { data: data.leak() }
            }
            Tmsg::Readlink { fid } => match self.node(self.fids.get(&fid)?) {
                Node::Link(t) => Rmsg::Readlink {
                    target: t.clone().leak(),
                },
                _ => Rmsg::Lerror { ecode: 22 },
            },
            Tmsg::Clunk { fid } => {
                self.fids.remove(&fid);
                Rmsg::Clunk
            }
            Tmsg::Flush { .. } => Rmsg::Flush,
        })
    }
}

/// Serves `tree` on one end of a socketpair; returns the client end.
pub fn spawn(tree: Node, q: Quirks) -> UnixStream {
    let (client, mut s) = UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let reorder = q.reorder_reads;
        let mut srv = Server {
            tree,
            q,
            fids: HashMap::new(),
        };
        let mut held: Vec<Vec<u8>> = Vec::new();
        // While holding replies, a quiet pause means the client waits for them.
        let flush = |s: &mut UnixStream, held: &mut Vec<Vec<u8>>| {
            while let Some(f) = held.pop() {
                if s.write_all(&f).is_err() {
                    return false;
                }
            }
            true
        };
        loop {
            let pause = (reorder && !held.is_empty()).then(|| std::time::Duration::from_millis(30));
            s.set_read_timeout(pause).unwrap();
            let mut size = [0u8; 4];
            match s.read_exact(&mut size) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !flush(&mut s, &mut held) {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            }
            s.set_read_timeout(None).unwrap();
            let mut buf = size.to_vec();
            buf.resize(u32::from_le_bytes(size) as usize, 0);
            if s.read_exact(&mut buf[4..]).is_err() {
                return;
            }
            let (tag, m) = decode_request(&buf).unwrap();
            let is_walk = matches!(m, Tmsg::Walk { .. });
            let is_read = matches!(m, Tmsg::Read { .. });
            if srv.q.giant_frame_on_getattr && matches!(m, Tmsg::Getattr { .. }) {
                let _ = s.write_all(&[0xf0, 0xff, 0xff, 0xff, 25]);
                std::thread::sleep(std::time::Duration::from_secs(5));
                return;
            }
            let Some(r) = srv.reply(m) else {
                std::thread::sleep(std::time::Duration::from_secs(5));
                return;
            };
            let tag = if srv.q.wrong_tag_on_walk && is_walk {
                tag.wrapping_add(1)
            } else {
                tag
            };
            let mut out = Vec::new();
            r.encode(tag, &mut out).unwrap();
            if reorder && is_read {
                held.push(out);
                continue;
            }
            if !flush(&mut s, &mut held) || s.write_all(&out).is_err() {
                return;
            }
        }
    });
    client
}
