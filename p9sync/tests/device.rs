//! The message-device transport (vio9p semantics) over a datagram socketpair.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use p9sync::{Client, ClientError, DeviceTransport, Transport, TransportError};

fn device(timeout: Duration) -> (DeviceTransport, UnixDatagram) {
    let (dev, host) = UnixDatagram::pair().unwrap();
    dev.set_nonblocking(true).unwrap();
    (
        DeviceTransport::from_file(File::from(OwnedFd::from(dev)), timeout),
        host,
    )
}

#[test]
fn a_device_that_never_answers_times_out() {
    let (t, host) = device(Duration::from_millis(200));
    let e = Client::connect(t, 8192).err().unwrap();
    assert!(
        matches!(e, ClientError::Transport(TransportError::Timeout(_))),
        "{e}"
    );
    let mut req = [0u8; 64];
    let n = host.recv(&mut req).unwrap();
    assert_eq!(
        &req[4..7],
        &[100, 0xff, 0xff],
        "a Tversion with NOTAG went out"
    );
    assert_eq!(u32::from_le_bytes(req[7..11].try_into().unwrap()), 8192);
    assert_eq!(n, 21);
}

#[test]
fn frames_over_8192_bytes_are_never_written_to_the_device() {
    let (mut t, _host) = device(Duration::from_secs(1));
    assert_eq!(t.max_message(), 8192);
    let e = t.send(&[0u8; 8193]).unwrap_err();
    assert!(
        matches!(
            e,
            TransportError::Oversize {
                size: 8193,
                max: 8192
            }
        ),
        "{e}"
    );
}

#[test]
fn a_reply_whose_size_field_disagrees_with_the_read_is_refused() {
    let (mut t, host) = device(Duration::from_secs(1));
    // Claims 9000 bytes in a 11-byte message: over the limit, refused.
    host.send(&[0x28, 0x23, 0, 0, 7, 1, 0, 2, 0, 0, 0]).unwrap();
    let mut buf = Vec::new();
    let e = t.recv(&mut buf, 8192).unwrap_err();
    assert!(
        matches!(
            e,
            TransportError::Oversize {
                size: 9000,
                max: 8192
            }
        ),
        "{e}"
    );
}
