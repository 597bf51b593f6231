//! Pipelined reads deliver the file in order whatever order replies arrive in.

use crate::fake;

use std::time::Duration;

use fake::{dir, spawn, Node, Quirks};
use p9sync::{Client, ClientError, StreamTransport};

fn body() -> Vec<u8> {
    (0..300_001u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn read_whole(q: Quirks, depth: usize) -> (Vec<u8>, u64) {
    let tree = dir(vec![(b"big", Node::File(body(), 0o755))]);
    let t = StreamTransport::from_unix(spawn(tree, q), Duration::from_secs(5));
    let mut c = Client::connect(t, 8192).unwrap();
    let root = c.attach("root", "", 0).unwrap();
    let f = c.walk(root, &[b"big"]).unwrap();
    let (_, iounit) = c.lopen(f, 0).unwrap();
    let mut got = Vec::new();
    let n = c
        .read_to(f, 300_001, iounit, depth, |d| -> Result<(), ClientError> {
            got.extend_from_slice(d);
            Ok(())
        })
        .unwrap();
    // The session is still in step: a further request gets its own answer.
    c.clunk(f).unwrap();
    (got, n)
}

#[test]
fn replies_arriving_newest_first_are_put_back_in_order() {
    let (got, n) = read_whole(
        Quirks {
            reorder_reads: true,
            ..Quirks::default()
        },
        8,
    );
    assert_eq!(n, 300_001);
    assert!(got == body(), "content differs");
}

#[test]
fn short_replies_in_the_middle_are_filled_in() {
    let (got, n) = read_whole(
        Quirks {
            short_reads: true,
            ..Quirks::default()
        },
        4,
    );
    assert_eq!(n, 300_001);
    assert!(got == body(), "content differs");
}

#[test]
fn one_in_flight_is_the_plain_sequential_read() {
    let (got, _) = read_whole(Quirks::default(), 1);
    assert!(got == body(), "content differs");
}
