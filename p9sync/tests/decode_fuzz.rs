//! Fuzz target for the decoders: arbitrary bytes never panic and never make the
//! client allocate more than a fixed bound, whatever sizes the bytes claim.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use p9sync::msg::{decode_reply, decode_request, Rmsg};
use p9sync::{dirent, StreamTransport, Transport};
use proptest::prelude::*;

/// Records the largest single allocation made by the current thread.
struct Peak;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
}

unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Peak = Peak;

fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    PEAK.with(|p| p.set(0));
    let r = f();
    (r, PEAK.with(|p| p.get()))
}

/// Decoding borrows payloads from the frame: only an Rwalk/Twalk vector (at most
/// 16 entries) is ever allocated.
const DECODE_BOUND: usize = 1024;

fn framed(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut b = ((body.len() + 7) as u32).to_le_bytes().to_vec();
    b.push(kind);
    b.extend_from_slice(&[1, 0]);
    b.extend_from_slice(body);
    b
}

const KINDS: [u8; 21] = [
    7, 12, 13, 22, 23, 24, 25, 40, 41, 100, 101, 104, 105, 108, 109, 110, 111, 116, 117, 120, 121,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (_, peak) = peak_during(|| {
            let _ = decode_reply(&bytes);
            let _ = decode_request(&bytes);
            dirent::parse(&bytes).take(1000).for_each(drop);
        });
        prop_assert!(peak <= DECODE_BOUND, "allocated {peak} bytes");
    }

    /// Well-framed but random bodies reach deep into every decoder; whatever
    /// decodes re-encodes to the same bytes (no silent reinterpretation).
    #[test]
    fn framed_random_bodies_decode_canonically(
        kind in proptest::sample::select(KINDS.to_vec()),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let frame = framed(kind, &body);
        let (decoded, peak) = peak_during(|| decode_reply(&frame).map(|(tag, m)| (tag, format!("{m:?}"))));
        prop_assert!(peak <= DECODE_BOUND, "allocated {peak} bytes");
        if let Ok((tag, m)) = decode_reply(&frame) {
            let mut again = Vec::new();
            m.encode(tag, &mut again).unwrap();
            prop_assert_eq!(&again, &frame);
            if let Rmsg::Readdir { data } = m {
                for e in dirent::parse(data) { let _ = e; }
            }
            prop_assert!(decoded.is_ok());
        }
        if let Ok((tag, m)) = decode_request(&frame) {
            let mut again = Vec::new();
            m.encode(tag, &mut again).unwrap();
            prop_assert_eq!(&again, &frame);
        }
    }

    /// The transport refuses an oversized frame from its size field alone.
    #[test]
    fn stream_receive_never_allocates_past_the_limit(
        size in any::<u32>(),
        rest in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(&size.to_le_bytes()).unwrap();
        b.write_all(&rest).unwrap();
        drop(b);
        let mut t = StreamTransport::from_unix(a, Duration::from_secs(2));
        let mut buf = Vec::new();
        let limit = 8192;
        let (r, peak) = peak_during(|| t.recv(&mut buf, limit));
        prop_assert!(peak <= limit as usize, "allocated {peak} bytes for a {size}-byte claim");
        if r.is_ok() {
            prop_assert_eq!(buf.len(), size as usize);
        }
    }
}
