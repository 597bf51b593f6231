//! A userland 9P2000.L client, and a mirror ("sync") built on it.
//!
//! illumos exposes virtio 9P shares as message devices (`/dev/9p/<tag>`, driver
//! `vio9p`) but has no kernel 9P file system, so a guest reads a share by speaking
//! the protocol itself. The same client works over TCP or a Unix socket.

pub mod client;
pub mod dirent;
pub mod error;
pub mod local;
pub mod msg;
pub mod names;
pub mod readahead;
pub mod sync;
pub mod transport;
pub mod wire;

pub use client::{Client, Entry, Fid, Stats};
pub use error::{ClientError, CodecError, SyncError, TransportError};
pub use sync::{sync, Options, Report};
pub use transport::{DeviceTransport, StreamTransport, Transport};
